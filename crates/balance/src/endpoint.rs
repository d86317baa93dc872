//! State shared by every clone of a balancer: the policy (strategy and ejection settings as
//! atomics) and each endpoint's counters, latency estimate and health.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize as StdAtomicUsize};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use metrics::Gauge;
use tower_prism_core::internal::{lock, mix64, nanos, GAMMA};
use tower_prism_core::metrics::{balance as m, LABEL_NAME};
use tower_prism_core::sync::{AtomicBool, AtomicUsize, Ordering};
use tower_prism_core::{Clock, HealthSignal, Moment, Outcome, TimeSource};

use crate::config::{BalanceConfig, Strategy};
use crate::endpoint_metrics::EndpointMetrics;
use crate::ewma::PeakEwma;
use crate::gate::CallGate;
use crate::health_check::HealthCheck;
use crate::outlier::{self, Outlier};
use crate::peers::{self, Peers, Review};
use crate::rotation::OutOfRotation;

/// The most wakers parked in `poll_ready` that a balancer keeps (see [`Policy::register`]).
pub(crate) const MAX_PARKED_WAKERS: usize = 256;

/// Settings and counters shared by all endpoints of one balancer.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) name: Arc<str>,
    /// Where latencies and ages are read ([`Clock::Auto`]: the CPU's counter, or tokio's
    /// clock when it is paused at the first reading).
    time: TimeSource,
    strategy: AtomicU8,
    ticket: StdAtomicUsize,
    /// Where the next clone's stream of random numbers starts (see [`Draws`]).
    streams: AtomicU64,
    /// `active_request_bias`, as f64 bits.
    active_request_bias: AtomicU64,
    decay_ms: AtomicU64,
    default_rtt_ns: AtomicU64,
    consecutive_failures: AtomicU32,
    success_rate_ppm: AtomicU32,
    min_requests: AtomicU32,
    interval_ms: AtomicU64,
    base_ejection_ms: AtomicU64,
    max_ejection_ms: AtomicU64,
    max_ejection_percent: AtomicU32,
    always_eject_one_host: AtomicBool,
    /// A passing health check ends an ejection.
    uneject_on_passing_check: AtomicBool,
    /// The statistical success-rate rule: its factor in thousandths (0: off), and its
    /// minimum endpoints and request volume.
    stdev_factor_milli: AtomicU32,
    stdev_minimum_hosts: AtomicU32,
    stdev_request_volume: AtomicU32,
    /// Endpoints currently ejected (the ejection budget).
    pub(crate) ejected: AtomicUsize,
    /// What the outlier rules compare an endpoint with (see `peers`).
    pub(crate) peers: Peers,
    /// Endpoints out of rotation: failing active health checks or ejected (each once; see
    /// [`OutOfRotation`]).
    pub(crate) out: AtomicUsize,
    /// Endpoints awaiting their first probe (each once): out of rotation, but counted
    /// neither way for panic mode.
    awaiting_probe: AtomicUsize,
    /// `healthy_panic_threshold`, in percent; 0: never.
    panic_threshold: AtomicU32,
    /// Fewer endpoints than the threshold are in rotation: picks ignore health.
    panicking: AtomicBool,
    pub(crate) endpoints: StdAtomicUsize,
    pub(crate) health_signal: Option<HealthSignal>,
    /// Health checks run: new endpoints wait for their first probe.
    pub(crate) probed: bool,
    endpoints_gauge: Gauge,
    healthy_gauge: Gauge,
    wakers: Mutex<Vec<Waker>>,
}

impl Policy {
    pub(crate) fn new(
        name: Arc<str>,
        config: &BalanceConfig,
        signal: Option<HealthSignal>,
        probed: bool,
    ) -> Self {
        let label = name.to_string();
        let p = Policy {
            endpoints_gauge: metrics::gauge!(m::ENDPOINTS, LABEL_NAME => label.clone()),
            healthy_gauge: metrics::gauge!(m::ENDPOINTS_HEALTHY, LABEL_NAME => label),
            name,
            time: TimeSource::new(Clock::Auto),
            strategy: AtomicU8::new(0),
            ticket: StdAtomicUsize::new(0),
            streams: AtomicU64::new(FIRST_STREAM),
            active_request_bias: AtomicU64::new(1.0f64.to_bits()),
            decay_ms: AtomicU64::new(0),
            default_rtt_ns: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            success_rate_ppm: AtomicU32::new(0),
            min_requests: AtomicU32::new(0),
            interval_ms: AtomicU64::new(1),
            base_ejection_ms: AtomicU64::new(1),
            max_ejection_ms: AtomicU64::new(1),
            max_ejection_percent: AtomicU32::new(0),
            always_eject_one_host: AtomicBool::new(false),
            uneject_on_passing_check: AtomicBool::new(true),
            stdev_factor_milli: AtomicU32::new(0),
            stdev_minimum_hosts: AtomicU32::new(0),
            stdev_request_volume: AtomicU32::new(0),
            ejected: AtomicUsize::new(0),
            peers: Peers::default(),
            out: AtomicUsize::new(0),
            awaiting_probe: AtomicUsize::new(0),
            panic_threshold: AtomicU32::new(0),
            panicking: AtomicBool::new(false),
            endpoints: StdAtomicUsize::new(0),
            health_signal: signal,
            probed,
            wakers: Mutex::new(Vec::new()),
        };
        p.apply(config);
        p
    }

    /// Stores a (validated) config's strategy, latency and ejection settings.
    pub(crate) fn apply(&self, config: &BalanceConfig) {
        let r = Ordering::Relaxed;
        self.strategy.store(config.strategy.to_u8(), r);
        let bias = config.active_request_bias.to_bits();
        self.active_request_bias.store(bias, r);
        let decay = config.ewma_decay.as_secs_f64() * 1000.0;
        self.decay_ms.store(decay.max(1.0).to_bits(), r);
        let rtt = nanos(config.default_rtt);
        self.default_rtt_ns.store(rtt, r);
        let s = config.outlier.settings();
        self.consecutive_failures.store(s.consecutive_failures, r);
        self.success_rate_ppm.store(s.success_rate_ppm, r);
        self.min_requests.store(s.min_requests, r);
        self.interval_ms.store(s.interval_ms, r);
        self.base_ejection_ms.store(s.base_ejection_ms, r);
        self.max_ejection_ms.store(s.max_ejection_ms, r);
        self.max_ejection_percent.store(s.max_ejection_percent, r);
        self.always_eject_one_host.store(s.always_eject_one_host, r);
        let uneject = config.outlier.successful_active_health_check_uneject_host;
        self.uneject_on_passing_check.store(uneject, r);
        let stdev = match (
            config.outlier.enabled,
            config.outlier.success_rate_stdev_factor,
        ) {
            // In thousandths, Envoy's unit; at least 1, as 0 turns the rule off.
            (true, Some(factor)) => ((factor * 1000.0).round() as u32).max(1),
            _ => 0,
        };
        self.stdev_factor_milli.store(stdev, r);
        self.stdev_minimum_hosts
            .store(config.outlier.success_rate_minimum_hosts, r);
        self.stdev_request_volume
            .store(config.outlier.success_rate_request_volume, r);
        self.panic_threshold
            .store(config.healthy_panic_threshold, r);
        self.update_gauges();
    }

    pub(crate) fn strategy(&self) -> Strategy {
        Strategy::from_u8(self.strategy.load(Ordering::Relaxed))
    }

    fn settings(&self) -> outlier::Settings {
        let r = Ordering::Relaxed;
        outlier::Settings {
            consecutive_failures: self.consecutive_failures.load(r),
            success_rate_ppm: self.success_rate_ppm.load(r),
            min_requests: self.min_requests.load(r),
            interval_ms: self.interval_ms.load(r),
            base_ejection_ms: self.base_ejection_ms.load(r),
            max_ejection_ms: self.max_ejection_ms.load(r),
            max_ejection_percent: self.max_ejection_percent.load(r),
            always_eject_one_host: self.always_eject_one_host.load(r),
        }
    }

    /// The statistical success-rate rule, when the config has one.
    fn stdev_rule(&self) -> Option<peers::StdevRule> {
        let r = Ordering::Relaxed;
        let factor_milli = self.stdev_factor_milli.load(r);
        (factor_milli != 0).then(|| peers::StdevRule {
            factor: f64::from(factor_milli) / 1000.0,
            minimum_hosts: self.stdev_minimum_hosts.load(r),
            request_volume: u64::from(self.stdev_request_volume.load(r)),
        })
    }

    /// A ticket for round-robin style strategies.
    pub(crate) fn ticket(&self) -> usize {
        self.ticket.fetch_add(1, Ordering::Relaxed)
    }

    /// Where a new clone's stream of random numbers starts: one atomic add per clone
    /// that picks, none per pick (see [`Draws`]).
    fn stream(&self) -> u64 {
        self.streams.fetch_add(STREAM_SPACING, Ordering::Relaxed)
    }

    pub(crate) fn active_request_bias(&self) -> f64 {
        f64::from_bits(self.active_request_bias.load(Ordering::Relaxed))
    }

    pub(crate) fn decay_ms(&self) -> f64 {
        f64::from_bits(self.decay_ms.load(Ordering::Relaxed))
    }

    /// Now, on the balancer's clock.
    #[inline]
    pub(crate) fn now(&self) -> Moment {
        self.time.moment()
    }

    /// Milliseconds since the balancer was made, at `at`.
    #[inline]
    pub(crate) fn ms_of(&self, at: Moment) -> u64 {
        self.time.nanos_of(at) / 1_000_000
    }

    /// Milliseconds since the balancer was made, now.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.time.now() / 1_000_000
    }

    /// Parks a waker until the endpoint set or health changes. A task that gave up waiting
    /// (its caller timed out) leaves its waker here until the next change, so the list is
    /// capped: at [`MAX_PARKED_WAKERS`] every parked task is woken (each one still waiting
    /// polls again and parks anew) and the list starts over.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut wakers = lock(&self.wakers);
        if wakers.iter().any(|w| w.will_wake(waker)) {
            return;
        }
        if wakers.len() < MAX_PARKED_WAKERS {
            wakers.push(waker.clone());
            return;
        }
        let full = std::mem::replace(&mut *wakers, vec![waker.clone()]);
        drop(wakers);
        for w in full {
            w.wake();
        }
    }

    /// Wakes every balancer clone parked in `poll_ready`.
    pub(crate) fn wake_all(&self) {
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for w in wakers {
            w.wake();
        }
    }

    /// Endpoints known, and endpoints in rotation; enters or leaves panic mode.
    pub(crate) fn update_gauges(&self) {
        let total = self.endpoints.load(Ordering::Relaxed);
        let in_rotation = total.saturating_sub(self.out.load(Ordering::Relaxed));
        self.endpoints_gauge.set(total as f64);
        self.healthy_gauge.set(in_rotation as f64);
        let threshold = self.panic_threshold.load(Ordering::Relaxed) as usize;
        // Endpoints awaiting their first probe count neither way (Envoy's
        // `ignore_new_hosts_until_first_hc`): a scale-out from one endpoint to three is not
        // two thirds of the upstream failing.
        let judged = total.saturating_sub(self.awaiting_probe.load(Ordering::Relaxed));
        let panic = in_rotation * 100 < threshold * judged;
        if self.panicking.swap(panic, Ordering::Relaxed) != panic {
            if panic {
                tracing::warn!(balancer = %self.name, in_rotation, endpoints = total, "too few endpoints in rotation: panic mode, picking among all of them");
            } else {
                tracing::info!(balancer = %self.name, in_rotation, endpoints = total, "enough endpoints in rotation again: panic mode over");
            }
            self.wake_all();
        }
    }

    /// Whether picks ignore health: fewer endpoints are in rotation than
    /// `healthy_panic_threshold` says.
    #[inline]
    pub(crate) fn panicking(&self) -> bool {
        self.panicking.load(Ordering::Relaxed)
    }

    /// Whether an endpoint awaits its first probe.
    pub(crate) fn awaiting_probe(&self) -> bool {
        self.awaiting_probe.load(Ordering::Relaxed) != 0
    }
}

/// Where a balancer's first clone starts drawing. A balancer used through one clone draws
/// the same sequence as when every clone drew from one shared counter starting here.
const FIRST_STREAM: u64 = 0x853c_49e6_748f_ea9b;

/// Between the starts of two clones' streams: 2^32 steps. `GAMMA` is odd, so two streams
/// fewer than 2^32 clones apart never share a value within their first 2^32 draws.
const STREAM_SPACING: u64 = GAMMA.wrapping_mul(1 << 32);

/// One balancer clone's random numbers (P2C's pairs, weighted least requests' draws):
/// splitmix64 on a counter of its own, so a pick takes no atomic operation. Each clone
/// draws from its own stream, taken from the balancer on its first draw: clones copied
/// for every call (per request, as axum does) do not all draw the same first pair, and
/// no two clones repeat each other's picks. Deterministic: the streams follow from the
/// order in which the balancer's clones first draw, not from threads or the time.
#[derive(Debug, Default)]
pub(crate) struct Draws {
    /// The counter; `None` until the first draw takes a stream.
    next: Option<u64>,
}

impl Draws {
    /// The next random number.
    #[inline]
    pub(crate) fn next(&mut self, policy: &Policy) -> u64 {
        let at = match self.next {
            Some(at) => at,
            None => policy.stream(),
        };
        self.next = Some(at.wrapping_add(GAMMA));
        mix64(at)
    }
}

/// One endpoint's shared state. Every balancer clone and every in-flight response future
/// holds an `Arc` of it, so a removed endpoint's in-flight requests still complete and count.
#[derive(Debug)]
pub(crate) struct EndpointState {
    /// The key as text, cut to [`MAX_LABEL_CHARS`](crate::handle::MAX_LABEL_CHARS), for
    /// events.
    pub(crate) label: Arc<str>,
    /// The metrics slot: the `endpoint` label of its series, reused after it leaves.
    pub(crate) slot: u32,
    pub(crate) id_hash: u64,
    pub(crate) weight: AtomicU32,
    /// Calls in flight, and the gate every metric write passes (see [`CallGate`]).
    pub(crate) calls: CallGate,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ewma: PeakEwma,
    pub(crate) outlier: Outlier,
    pub(crate) health: HealthCheck,
    pub(crate) policy: Arc<Policy>,
    metrics: EndpointMetrics,
    /// The current ejection, judged against the other endpoints.
    review: Review,
    /// Its place in the policy's count of endpoints out of rotation.
    rotation: OutOfRotation,
    /// Its place in the policy's count of endpoints awaiting their first probe.
    awaiting: OutOfRotation,
}

impl EndpointState {
    pub(crate) fn new(
        label: String,
        id_hash: u64,
        weight: u32,
        slot: u32,
        policy: Arc<Policy>,
    ) -> Self {
        let now = policy.now_ms();
        let rtt = policy.default_rtt_ns.load(Ordering::Relaxed) as f64;
        let metrics = EndpointMetrics::register(&policy.name, slot, rtt / 1e9);
        if policy.probed {
            // out of rotation until its first probe passes
            metrics.series.healthy.set(0.0);
        }
        EndpointState {
            label: label.into(),
            slot,
            id_hash,
            weight: AtomicU32::new(weight),
            calls: CallGate::new(metrics.live),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ewma: PeakEwma::new(rtt, now),
            outlier: Outlier::new(now),
            health: if policy.probed {
                HealthCheck::pending()
            } else {
                HealthCheck::default()
            },
            policy,
            metrics,
            review: Review::default(),
            rotation: OutOfRotation::default(),
            awaiting: OutOfRotation::default(),
        }
    }

    /// Whether the endpoint may take requests: passing health checks and not ejected. An
    /// ejection whose time is up, one made during a shared outage that has ended, or one
    /// whose failures turned out to be everyone's, is ended here (no clock read unless the
    /// endpoint is ejected).
    #[inline]
    pub(crate) fn available(&self) -> bool {
        if !self.health.is_healthy() {
            return false;
        }
        let Some(until) = self.outlier.ejected_until() else {
            return true;
        };
        let now = self.policy.now_ms();
        let over = now >= until && self.outlier.try_restore(now, &self.policy.ejected)
            || (self
                .outlier
                .provisional_since()
                .is_some_and(|since| self.policy.peers.succeeded_since(since))
                || self
                    .review
                    .failures_are_widespread(&self.policy.peers, self, now))
                && self.outlier.end_early(&self.policy.ejected);
        if over {
            self.restored("endpoint restored after ejection");
        }
        self.outlier.ejected_until().is_none()
    }

    /// Back in rotation after an ejection `why` ended: its gauges, the counts of endpoints
    /// out of rotation, and the callers waiting for an endpoint.
    #[cold]
    fn restored(&self, why: &'static str) {
        tracing::info!(balancer = %self.policy.name, slot = self.slot, endpoint = %self.label, "{why}");
        self.calls.pass(|| self.metrics.series.healthy.set(1.0));
        self.reassess();
        self.policy.update_gauges();
        self.policy.wake_all();
    }

    /// Whether a pick may choose the endpoint: [`available`](Self::available) (which also
    /// ends an ejection that is over), or the balancer is in panic mode and the endpoint
    /// has been probed (one awaiting its first probe may be dead: it never gets a call).
    #[inline]
    pub(crate) fn usable(&self) -> bool {
        self.available() || (self.policy.panicking() && !self.health.is_pending())
    }

    /// Settles the endpoint's place in the counts of endpoints out of rotation and
    /// awaiting their first probe; call after its health or ejection changed, before
    /// [`Policy::update_gauges`].
    pub(crate) fn reassess(&self) {
        let is_out = || {
            !self.outlier.is_removed()
                && (!self.health.is_healthy() || self.outlier.ejected_until().is_some())
        };
        self.rotation.settle(is_out, &self.policy.out);
        let awaits = || !self.outlier.is_removed() && self.health.is_pending();
        self.awaiting.settle(awaits, &self.policy.awaiting_probe);
    }

    /// The weighted least requests' effective weight (see `least_requests`).
    #[inline]
    pub(crate) fn effective_weight(&self, bias: f64) -> f64 {
        let weight = self.weight.load(Ordering::Relaxed);
        crate::least_requests::effective_weight(weight, self.calls.in_flight(), bias)
    }

    /// The P2C load at `now_ms`.
    #[inline]
    pub(crate) fn load(&self, now_ms: u64, decay_ms: f64) -> f64 {
        crate::p2c::load(self.ewma.estimate(now_ms, decay_ms), self.calls.in_flight())
    }

    #[inline]
    pub(crate) fn start(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let s = &self.metrics.series;
        self.calls.start(|| {
            s.requests.increment(1);
            s.in_flight.increment(1.0);
        });
    }

    /// Ends a call that never reached the endpoint (its readiness failed).
    #[inline]
    pub(crate) fn finish(&self) {
        let s = &self.metrics.series;
        self.calls.end(|| s.in_flight.decrement(1.0));
    }

    /// Ends a call dropped before it completed (its caller's deadline, a hedge that lost
    /// the race, a panic) that started at `started`. As in tower's `PeakEwma`, the time it
    /// spent counts as a latency sample, a lower bound on the real one: an endpoint that
    /// never answers, its calls all cut short, stops looking idle to P2C. Nothing else is
    /// recorded: a cancelled call is not the endpoint's failure.
    pub(crate) fn abandon(&self, started: Moment) {
        let now = self.policy.now();
        let latency_ns = started.nanos_to(now);
        self.ewma.observe(
            latency_ns as f64,
            self.policy.ms_of(now),
            self.policy.decay_ms(),
        );
        let s = &self.metrics.series;
        self.calls.end(|| {
            s.in_flight.decrement(1.0);
            s.ewma.set(self.ewma.raw() / 1e9);
        });
    }

    /// Ends a completed call: it leaves the in-flight count, and its latency, outcome,
    /// outlier rules and health signal are recorded.
    #[inline]
    pub(crate) fn complete(&self, outcome: Outcome, started: Moment) {
        let now = self.policy.now();
        // In nanoseconds as a u64: a `Duration`'s 128-bit nanoseconds cost a software
        // conversion to f64, and its milliseconds a 128-bit division.
        let latency_ns = started.nanos_to(now);
        let now_ms = self.policy.ms_of(now);
        let decay = self.policy.decay_ms();
        self.ewma.observe(latency_ns as f64, now_ms, decay);
        let failure = outcome.is_failure();
        if failure {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        // the count goes down (and the gauges are written) in one pass through the gate;
        // nothing before it can panic, so the call cannot stay counted
        let s = &self.metrics.series;
        self.calls.end(|| {
            s.in_flight.decrement(1.0);
            s.ewma.set(self.ewma.raw() / 1e9);
            if failure {
                s.failures.increment(1);
            }
        });
        if let Some(signal) = &self.policy.health_signal {
            signal.record(outcome, Duration::from_nanos(latency_ns));
        }
        // derived from the latency already measured: a second `Instant` subtraction per
        // call would cost as much as the clock reading
        let started_ms = now_ms.saturating_sub(latency_ns / 1_000_000);
        if !failure {
            self.policy.peers.note_success(started_ms);
        }
        let settings = self.policy.settings();
        let recorded = self.outlier.record(failure, now_ms, &settings);
        if failure {
            self.outlier.note_failure_start(started_ms);
        }
        self.after_record(recorded, now_ms, &settings);
    }

    /// What a result's record calls for: an ejection by a rule it tripped, and, when it
    /// ended the endpoint's interval, the statistical rule's sweep if one is due (where
    /// the endpoint counts unless the trip ejected it).
    #[inline]
    fn after_record(&self, recorded: outlier::Recorded, now_ms: u64, settings: &outlier::Settings) {
        if recorded.trip {
            self.try_eject(now_ms, settings, false);
        }
        if let Some(ended) = recorded.ended {
            self.judge_interval(ended, now_ms, settings);
        }
    }

    /// Envoy's statistical success-rate rule, when this endpoint's interval has ended with
    /// `ended` (failures, calls) in it: the first interval to end once a sweep is due ends
    /// every endpoint's and judges them all on one mean and deviation (see
    /// [`peers::outliers`]). Once per interval, however many endpoints.
    #[cold]
    fn judge_interval(&self, ended: (u64, u64), now_ms: u64, settings: &outlier::Settings) {
        let Some(rule) = self.policy.stdev_rule() else {
            return;
        };
        let peers = &self.policy.peers;
        let Some(cut_ms) = peers.sweeps.begin(now_ms, settings.interval_ms) else {
            return;
        };
        for outlier in peers::outliers(peers, self, ended, now_ms, cut_ms, rule) {
            outlier.try_eject(now_ms, settings, true);
        }
    }

    /// A `poll_ready` error: counts as a failure for the outlier rules.
    pub(crate) fn record_broken(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.calls
            .pass(|| self.metrics.series.failures.increment(1));
        let now_ms = self.policy.now_ms();
        let settings = self.policy.settings();
        let recorded = self.outlier.record(true, now_ms, &settings);
        self.outlier.note_failure_start(now_ms);
        self.after_record(recorded, now_ms, &settings);
    }

    /// Ejects this endpoint if the budget allows. `against_the_others`: the rule that
    /// tripped already compared it with the other endpoints (the statistical one), so the
    /// check that it does not fail like them is not made again.
    #[cold]
    fn try_eject(&self, now_ms: u64, settings: &outlier::Settings, against_the_others: bool) {
        if !against_the_others && peers::fails_like_its_peers(&self.policy.peers, self) {
            tracing::debug!(balancer = %self.policy.name, slot = self.slot, endpoint = %self.label, "outlier rule tripped, not ejected: the other endpoints fail as often");
            return;
        }
        let total = self.policy.endpoints.load(Ordering::Relaxed);
        // Ejected while every endpoint fails alike (a shared outage), the ejection ends as
        // soon as a call started after this endpoint began failing succeeds elsewhere.
        // Alike means the others failed too: an endpoint failing at once (a refused
        // connection) ends its streak before the others' calls started with it have
        // answered, and nothing succeeding *yet* is no outage of theirs.
        let since = self.outlier.streak_started_ms();
        let shared = !self.policy.peers.succeeded_since(since)
            && self.policy.peers.others_failed_since(self, since);
        match self
            .outlier
            .try_eject(now_ms, settings, &self.policy.ejected, total)
        {
            Some(ms) => {
                if shared {
                    self.outlier.mark_provisional(since);
                }
                self.review.start(&self.policy.peers, self, now_ms);
                tracing::warn!(
                    balancer = %self.policy.name,
                    slot = self.slot,
                    endpoint = %self.label,
                    ejected_for = ?Duration::from_millis(ms),
                    ejections = self.outlier.ejections(),
                    "endpoint ejected as an outlier"
                );
                let s = &self.metrics.series;
                self.calls.pass(|| {
                    s.ejections.increment(1);
                    s.healthy.set(0.0);
                });
                self.reassess();
                self.policy.update_gauges();
                // A call waiting in its response future for this endpoint's readiness
                // gives up now rather than wait on an endpoint out of rotation.
                self.policy.wake_all();
            }
            None => {
                if self.outlier.ejected_until().is_none() {
                    tracing::debug!(balancer = %self.policy.name, slot = self.slot, endpoint = %self.label, "outlier not ejected: max_ejection_percent reached");
                }
            }
        }
    }

    /// Records one active health probe.
    pub(crate) fn record_probe(&self, passed: bool, healthy: u32, unhealthy: u32) {
        if self.outlier.is_removed() {
            return;
        }
        let changed = self.health.record(passed, healthy, unhealthy);
        // As Envoy's `successful_active_health_check_uneject_host`: the probe says the
        // endpoint is back, so it does not sit out the rest of an outlier ejection.
        if passed
            && self.health.is_healthy()
            && self.outlier.ejected_until().is_some()
            && self.policy.uneject_on_passing_check.load(Ordering::Relaxed)
            && self
                .outlier
                .uneject(self.policy.now_ms(), &self.policy.ejected)
        {
            self.restored("endpoint restored after ejection: it passes its health check");
        }
        match changed {
            Some(true) => {
                tracing::info!(balancer = %self.policy.name, slot = self.slot, endpoint = %self.label, "endpoint passes health checks again");
                let in_rotation = self.outlier.ejected_until().is_none();
                let healthy = &self.metrics.series.healthy;
                self.calls
                    .pass(|| healthy.set(if in_rotation { 1.0 } else { 0.0 }));
                self.reassess();
                self.policy.update_gauges();
                self.policy.wake_all();
            }
            Some(false) => {
                tracing::warn!(balancer = %self.policy.name, slot = self.slot, endpoint = %self.label, "endpoint fails health checks");
                self.calls.pass(|| self.metrics.series.healthy.set(0.0));
                self.reassess();
                self.policy.update_gauges();
                // callers waiting for a first probe's verdict (or, now, for panic mode)
                self.policy.wake_all();
            }
            None => {}
        }
    }

    /// Takes the endpoint out of the counts when it leaves the balancer, and hands its
    /// metrics slot over: after this its requests still in flight write no series, and the
    /// slot's gauges read as empty until the next endpoint takes it. Call it before the slot
    /// is given back.
    pub(crate) fn remove(&self) {
        self.outlier.remove(&self.policy.ejected);
        self.reassess();
        if self.calls.close() {
            self.metrics.reset_departed();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::config::OutlierConfig;

    const INTERVAL_MS: u64 = 10_000;

    /// Six endpoints of one balancer whose outlier rules are the statistical one (1.9
    /// standard deviations, 5 endpoints of 100 calls) and a streak of 5 failures.
    fn endpoints() -> (Arc<Policy>, Vec<Arc<EndpointState>>) {
        let outlier = OutlierConfig::builder()
            .consecutive_failures(5)
            .success_rate_stdev_factor(Some(1.9))
            .success_rate_minimum_hosts(5)
            .success_rate_request_volume(100)
            .interval(Duration::from_millis(INTERVAL_MS))
            .max_ejection_percent(50)
            .build()
            .unwrap();
        balancer(6, outlier)
    }

    /// `n` endpoints of one balancer with these outlier rules.
    fn balancer(n: usize, outlier: OutlierConfig) -> (Arc<Policy>, Vec<Arc<EndpointState>>) {
        let config = BalanceConfig::builder().outlier(outlier).build().unwrap();
        let policy = Arc::new(Policy::new("judged".into(), &config, None, false));
        let all: Vec<_> = (0..n as u64)
            .map(|i| {
                Arc::new(EndpointState::new(
                    format!("e{i}"),
                    i,
                    1,
                    i as u32,
                    policy.clone(),
                ))
            })
            .collect();
        policy.endpoints.store(all.len(), Ordering::Relaxed);
        policy.peers.set(all.iter().map(Arc::downgrade));
        (policy, all)
    }

    /// An endpoint whose gate only counts (its metric handles are no-ops) counts its calls
    /// as one whose gate guards live handles: started, ended every way, and after it left.
    #[test]
    fn calls_count_the_same_with_or_without_the_gates_guard() {
        for guarded in [true, false] {
            let policy = Arc::new(Policy::new(
                "counts".into(),
                &BalanceConfig::default(),
                None,
                false,
            ));
            let mut e = EndpointState::new("e".into(), 0, 1, 0, policy.clone());
            e.calls = CallGate::new(guarded);
            for _ in 0..4 {
                e.start();
            }
            e.complete(Outcome::Success, policy.now());
            e.finish();
            e.abandon(policy.now());
            assert_eq!(
                (e.requests.load(Ordering::Relaxed), e.calls.in_flight()),
                (4, 1),
                "{guarded}"
            );
            e.remove();
            e.start();
            e.complete(Outcome::Failure { retryable: true }, policy.now());
            assert_eq!(
                (e.requests.load(Ordering::Relaxed), e.calls.in_flight()),
                (5, 1),
                "{guarded}"
            );
            assert_eq!(e.failures.load(Ordering::Relaxed), 1);
        }
    }

    #[test]
    fn a_tripping_record_that_ends_the_interval_is_judged_on_it() {
        // The case needs a record made by another call between the interval's end and
        // this call's own record (the tripping call is then not alone in its new window),
        // so it is set up here by hand: the others' intervals ended with 1 failure in
        // 100 calls, and each of their new windows holds 1 in 20; the endpoint's new
        // window holds 1 in 10, failing like them, so a trip alone ejects nothing.
        let (policy, all) = endpoints();
        let settings = policy.settings();
        let t0 = policy.now_ms();
        for peer in &all[1..] {
            for i in 0..100 {
                peer.outlier.record(i == 0, t0 + 1, &settings);
            }
            for i in 0..20 {
                peer.outlier.record(i == 1, t0 + INTERVAL_MS + 1, &settings);
            }
            assert_eq!(peer.outlier.window_counts(), (1, 20));
        }
        let judged = &all[0];
        for i in 0..10 {
            judged.outlier.record(i == 0, t0 + 1, &settings);
        }
        let now = t0 + INTERVAL_MS + 2;

        let tripped = outlier::Recorded {
            trip: true,
            ended: None,
        };
        judged.after_record(tripped, now, &settings);
        assert!(
            judged.outlier.ejected_until().is_none(),
            "failing like the others, a trip alone ejects nothing"
        );

        // The same trip by a record that also ended an interval of 60 failures in 100
        // calls: far below the others, the statistical rule ejects the endpoint.
        let tripped_at_the_end = outlier::Recorded {
            trip: true,
            ended: Some((60, 100)),
        };
        judged.after_record(tripped_at_the_end, now, &settings);
        assert!(
            judged.outlier.ejected_until().is_some(),
            "the interval the tripping record ended was not judged"
        );
    }

    /// Only the statistical rule (Envoy's defaults: 1.9 standard deviations, 5 endpoints
    /// of 100 calls) over `n` endpoints, ejecting for an hour, at most `max_percent` of
    /// them at once.
    fn statistical(n: usize, max_percent: u32) -> (Arc<Policy>, Vec<Arc<EndpointState>>) {
        let hour = Duration::from_secs(60 * 60);
        let outlier = OutlierConfig::builder()
            .consecutive_failures(0)
            .success_rate_stdev_factor(Some(1.9))
            .success_rate_minimum_hosts(5)
            .success_rate_request_volume(100)
            .interval(Duration::from_millis(INTERVAL_MS))
            .base_ejection_time(hour)
            .max_ejection_time(hour)
            .max_ejection_percent(max_percent)
            .build()
            .unwrap();
        balancer(n, outlier)
    }

    /// Records a completed call's result at `now_ms`, as `complete` does.
    fn result(e: &EndpointState, failure: bool, now_ms: u64) {
        let settings = e.policy.settings();
        if !failure {
            e.policy.peers.note_success(now_ms);
        }
        let recorded = e.outlier.record(failure, now_ms, &settings);
        if failure {
            e.outlier.note_failure_start(now_ms);
        }
        e.after_record(recorded, now_ms, &settings);
    }

    /// Runs `intervals` intervals in which each endpoint in rotation, one after the
    /// other, takes the calls `traffic(interval, endpoint)` says (failures, calls; the
    /// failures spread evenly), and returns the endpoints ejected at the end. Each
    /// interval's first calls end the one before: the last interval is not judged.
    fn run(
        all: &[Arc<EndpointState>],
        intervals: u64,
        traffic: impl Fn(u64, usize) -> (u64, u64),
    ) -> Vec<usize> {
        let t0 = all[0].policy.now_ms();
        for k in 0..intervals {
            for (i, e) in all.iter().enumerate() {
                if e.outlier.ejected_until().is_some() {
                    continue;
                }
                let (failures, calls) = traffic(k, i);
                let now = t0 + k * INTERVAL_MS + 1 + i as u64;
                for c in 0..calls {
                    result(e, (c + 1) * failures / calls > c * failures / calls, now);
                }
            }
        }
        (0..all.len())
            .filter(|&i| all[i].outlier.ejected_until().is_some())
            .collect()
    }

    /// Ten endpoints: six at 98.5-100 %, one at 50 % (ejected), one at 98 % (kept: within
    /// 1.9 standard deviations of the others once that one is out), one at 0 % with 99
    /// calls (under the request volume: neither judged nor counted) and one at 100 %.
    const TEN: [(u64, u64); 10] = [
        (0, 200),
        (2, 200),
        (1, 200),
        (3, 200),
        (0, 200),
        (2, 200),
        (100, 200),
        (99, 99),
        (4, 200),
        (0, 200),
    ];

    /// Pins the statistical rule's decisions on fixed endpoints: who is ejected, the
    /// request volume and minimum hosts rules, and the ejection cap.
    #[test]
    fn the_statistical_rule_ejects_the_same_endpoints() {
        let (_, all) = statistical(10, 50);
        assert_eq!(run(&all, 4, |_, i| TEN[i]), [6]);

        // Three endpoints of twenty failing every call, at most 10 % ejected: the first
        // two go, the third is over the cap.
        let (_, all) = statistical(20, 10);
        let failing = |i| (10..13).contains(&i);
        let traffic = |_, i| if failing(i) { (200, 200) } else { (0, 200) };
        assert_eq!(run(&all, 4, traffic), [10, 11]);

        // One endpoint failing every call among six, two of them under the request
        // volume: four endpoints count, five are needed.
        let (_, all) = statistical(6, 50);
        let six = [(0, 200), (0, 200), (0, 200), (200, 200), (0, 99), (0, 99)];
        assert_eq!(run(&all, 4, |_, i| six[i]), Vec::<usize>::new());
        // one of them with 100 calls makes five: 0 % is below 80 % - 1.9 x 40 %
        let (_, all) = statistical(6, 50);
        let six = [(0, 200), (0, 200), (0, 200), (200, 200), (0, 100), (0, 99)];
        assert_eq!(run(&all, 4, |_, i| six[i]), [3]);
    }

    /// As Envoy's sweep, the statistics are computed once per interval over every
    /// endpoint, then the outliers ejected. Each endpoint's interval end computed them
    /// over all the others: n walks of n endpoints per interval, under the peers' lock,
    /// felt at thousands of endpoints.
    #[test]
    fn the_statistics_are_computed_once_per_interval() {
        let (policy, all) = statistical(50, 50);
        run(&all, 4, |_, _| (1, 200));
        assert_eq!(
            policy.peers.statistics_computed(),
            3,
            "three intervals judged"
        );
    }

    /// As Envoy's: one threshold per interval, from every endpoint's success rate over it,
    /// judges them all. An endpoint at 96 % is within it while another at 50 % pulls the
    /// mean and the deviation, and goes the next interval, judged without the one ejected.
    /// Each endpoint was judged at its own interval's end against the endpoints still in
    /// rotation, so the 50 % one ejected first moved the threshold for the others in the
    /// same interval, and the 96 % one went with it.
    #[test]
    fn one_threshold_judges_every_endpoint_of_an_interval() {
        let mut ten = TEN;
        ten[8] = (8, 200);
        let (_, all) = statistical(10, 50);
        assert_eq!(run(&all, 2, |_, i| ten[i]), [6], "one interval judged");
        let (_, all) = statistical(10, 50);
        assert_eq!(run(&all, 3, |_, i| ten[i]), [6, 8], "two intervals judged");
    }

    /// As Envoy's: every endpoint is judged on each interval, whether or not it takes a
    /// call after it. An endpoint was judged only when a call of its own ended its
    /// interval, so one failing every call of an interval and taking no more (its
    /// callers gone, or a hash sending them elsewhere) was never judged.
    #[test]
    fn an_endpoint_is_judged_without_a_call_after_its_interval() {
        let (_, all) = statistical(6, 50);
        let traffic = |k, i| match (k, i) {
            (0, 5) => (200, 200),
            (_, 5) => (0, 0),
            _ => (0, 200),
        };
        assert_eq!(run(&all, 2, traffic), [5]);
    }
}
