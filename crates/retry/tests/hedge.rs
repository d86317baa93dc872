//! Hedging under paused time: when a hedge is sent, which answer wins, what is cancelled,
//! and what stops hedges (`max_hedged`, the budget, a request that cannot be replayed).

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{no_budget, run, Log, MS};
use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_prism_core::Outcome;
use tower_prism_retry::{BudgetConfig, HedgeConfig, RetryConfig, RetryLayer};

/// What one attempt does: answer after `delay`, with `Ok(value)` or a retryable error.
#[derive(Clone, Copy)]
struct Step {
    delay: Duration,
    answer: Result<u32, &'static str>,
}

fn ok_after(ms: u64, value: u32) -> Step {
    Step {
        delay: MS * ms as u32,
        answer: Ok(value),
    }
}

fn err_after(ms: u64) -> Step {
    Step {
        delay: MS * ms as u32,
        answer: Err("refused"),
    }
}

/// An upstream that plays a script of attempts (then never answers), and counts the
/// attempt futures in flight and those dropped before they answered.
#[derive(Clone, Default)]
struct Upstream {
    script: Arc<Mutex<VecDeque<Step>>>,
    log: Log,
    in_flight: Arc<AtomicI64>,
    dropped: Arc<AtomicUsize>,
}

struct Guard {
    in_flight: Arc<AtomicI64>,
    dropped: Arc<AtomicUsize>,
    answered: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.answered {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Upstream {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        let u = Upstream::default();
        u.script.lock().unwrap().extend(steps);
        u
    }

    fn service(&self) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
        let u = self.clone();
        service_fn(move |_: u32| {
            u.log.push();
            let step = u.script.lock().unwrap().pop_front().unwrap_or(Step {
                delay: Duration::from_secs(3600),
                answer: Ok(0),
            });
            u.in_flight.fetch_add(1, Ordering::SeqCst);
            let guard = Guard {
                in_flight: u.in_flight.clone(),
                dropped: u.dropped.clone(),
                answered: false,
            };
            async move {
                let mut guard = guard; // the whole guard, not just its field
                tokio::time::sleep(step.delay).await;
                guard.answered = true;
                step.answer.map_err(BoxError::from)
            }
        })
    }

    fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn hedging(hedge: HedgeConfig, attempts: u32) -> RetryLayer {
    let config = RetryConfig::builder()
        .max_attempts(attempts)
        .backoff(tower_prism_retry::Backoff::fixed(MS * 10))
        .budget(no_budget())
        .hedge(hedge)
        .build()
        .unwrap();
    RetryLayer::builder(config).name("hedge").build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_hedge_goes_at_the_delay_and_the_first_answer_wins() {
    let up = Upstream::new([ok_after(1000, 1), ok_after(20, 2)]);
    let layer = hedging(HedgeConfig::fixed(MS * 50), 1);
    let mut svc = layer.layer(up.service());
    let start = Instant::now();
    assert_eq!(
        run(&mut svc, 0).await.unwrap(),
        2,
        "the hedge answered first"
    );
    assert_eq!(start.elapsed(), MS * 70);
    assert_eq!(up.log.offsets(), vec![0, 50], "sent exactly at the delay");
    assert_eq!(up.dropped(), 1, "the slow attempt was dropped");
    assert_eq!(up.in_flight(), 0, "nothing left in flight");
    let s = layer.handle().snapshot();
    assert_eq!(
        (s.hedges_sent, s.hedges_won, s.cancelled_attempts),
        (1, 1, 1)
    );
    assert_eq!(s.retries, 0, "a hedge is not a retry");
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_first_attempt_answers_in_time() {
    let up = Upstream::new([ok_after(49, 1)]);
    let layer = hedging(HedgeConfig::fixed(MS * 50), 3);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 1);
    tokio::time::sleep(MS * 100).await;
    assert_eq!(up.log.count(), 1);
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges_sent, s.cancelled_attempts), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_original_can_still_win() {
    let up = Upstream::new([ok_after(60, 1), ok_after(50, 2)]);
    let layer = hedging(HedgeConfig::fixed(MS * 50), 1);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 1);
    assert_eq!(up.log.offsets(), vec![0, 50]);
    assert_eq!((up.dropped(), up.in_flight()), (1, 0));
    let s = layer.handle().snapshot();
    assert_eq!(
        (s.hedges_sent, s.hedges_won, s.cancelled_attempts),
        (1, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn max_hedged_bounds_the_copies_in_flight() {
    let up = Upstream::new([]);
    let layer = hedging(HedgeConfig::fixed(MS * 50).max_hedged(2), 5);
    let mut svc = layer.layer(up.service());
    let call = tokio::spawn(async move { run(&mut svc, 0).await });
    tokio::time::sleep(MS * 1000).await;
    assert_eq!(
        up.log.offsets(),
        vec![0, 50, 100],
        "two hedges, one per delay"
    );
    assert_eq!(up.in_flight(), 3);
    call.abort();
    let _ = call.await;
    assert_eq!(up.in_flight(), 0, "dropping the call drops every attempt");
    assert_eq!(
        layer.handle().snapshot().cancelled_attempts,
        0,
        "not a race lost"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_waits_for_the_other_attempts() {
    // the hedge fails first: the original's answer is still awaited
    let up = Upstream::new([ok_after(100, 1), err_after(10)]);
    let layer = hedging(HedgeConfig::fixed(MS * 50), 1);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 1);
    // the original fails first: the hedge's answer is awaited
    let up = Upstream::new([err_after(80), ok_after(100, 2)]);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 2);
    assert_eq!(up.log.offsets(), vec![0, 50]);
    assert_eq!(up.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_failed_the_retry_logic_takes_over() {
    let up = Upstream::new([err_after(70), err_after(30), ok_after(5, 3)]);
    let layer = hedging(HedgeConfig::fixed(MS * 50), 2);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 3);
    // original at 0 fails at 70, hedge at 50 fails at 80, backoff 10 ms: retry at 90
    assert_eq!(up.log.offsets(), vec![0, 50, 90]);
    let s = layer.handle().snapshot();
    assert_eq!((s.retries, s.hedges_sent), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_failure_wins_too() {
    let up = Upstream::new([ok_after(1000, 1), err_after(10)]);
    let config = RetryConfig::builder()
        .budget(no_budget())
        .hedge(HedgeConfig::fixed(MS * 50))
        .build()
        .unwrap();
    let layer = RetryLayer::builder(config)
        .classify(|r: Result<&u32, &BoxError>| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure { retryable: false },
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(up.service());
    let err = run(&mut svc, 0).await.unwrap_err();
    assert_eq!(err.to_string(), "refused");
    assert_eq!((up.dropped(), up.in_flight()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_hedges() {
    let up = Upstream::new([ok_after(200, 1)]);
    let empty = BudgetConfig::builder()
        .ratio(0.0)
        .success_ratio(0.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .budget(empty)
        .hedge(HedgeConfig::fixed(MS * 50))
        .build()
        .unwrap();
    let layer = RetryLayer::from_config(&config).unwrap();
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 1);
    assert_eq!(up.log.count(), 1);
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges_sent, s.hedges_no_budget), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_from_the_budget() {
    // a floor of 1 retry per second over a 1 s window: one hedge, then none
    let one = BudgetConfig::builder()
        .success_ratio(0.0)
        .min_per_second(1)
        .window(Duration::from_secs(1))
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .budget(one)
        .hedge(HedgeConfig::fixed(MS * 50))
        .build()
        .unwrap();
    let layer = RetryLayer::from_config(&config).unwrap();
    let up = Upstream::new([ok_after(100, 1), ok_after(100, 2), ok_after(100, 3)]);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 1);
    assert_eq!(run(&mut svc, 0).await.unwrap(), 3);
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges_sent, s.hedges_no_budget), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_replayed_is_never_hedged() {
    let up = Upstream::new([ok_after(200, 1)]);
    let config = RetryConfig::builder()
        .budget(no_budget())
        .hedge(HedgeConfig::fixed(MS * 50))
        .build()
        .unwrap();
    let layer = RetryLayer::builder(config)
        .clone_request(|_: &u32| None)
        .build()
        .unwrap();
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 1);
    assert_eq!(up.log.count(), 1);
    assert_eq!(layer.handle().snapshot().hedges_sent, 0);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_turns_hedging_on_and_off() {
    let layer = hedging(HedgeConfig::fixed(MS * 50), 1);
    let off = RetryConfig::builder().budget(no_budget()).build().unwrap();
    layer.handle().reconfigure(&off).unwrap();
    assert_eq!(layer.handle().snapshot().hedge_delay, None);
    let up = Upstream::new([ok_after(100, 1), ok_after(10, 2)]);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 1);
    assert_eq!(up.log.count(), 1);

    let on = RetryConfig::builder()
        .budget(no_budget())
        .hedge(HedgeConfig::fixed(MS * 30))
        .build()
        .unwrap();
    layer.handle().reconfigure(&on).unwrap();
    assert_eq!(layer.handle().snapshot().hedge_delay, Some(MS * 30));
    let up = Upstream::new([ok_after(100, 1), ok_after(10, 2)]);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 2);
    assert_eq!(up.log.offsets(), vec![0, 30]);
}

#[tokio::test(start_paused = true)]
async fn a_percentile_delay_follows_recorded_latencies() {
    let p50 = HedgeConfig::builder()
        .percentile(0.5)
        .min_samples(20)
        .build()
        .unwrap();
    let layer = hedging(p50, 1);
    assert_eq!(
        layer.handle().snapshot().hedge_delay,
        Some(MS * 100),
        "the fallback delay until 20 latencies are known"
    );
    let up = Upstream::new((0..20).map(|_| ok_after(20, 1)));
    let mut svc = layer.layer(up.service());
    for _ in 0..20 {
        assert_eq!(run(&mut svc, 0).await.unwrap(), 1);
    }
    assert_eq!(layer.handle().snapshot().hedges_sent, 0);
    let delay = layer.handle().snapshot().hedge_delay.unwrap();
    assert!(
        delay >= MS * 20 && delay <= MS * 23,
        "p50 of 20 ms: {delay:?}"
    );
    // now a slow attempt is hedged after that delay, not after the fallback
    let up = Upstream::new([ok_after(1000, 1), ok_after(5, 2)]);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 2);
    let offsets = up.log.offsets();
    assert_eq!(offsets.len(), 2);
    let expected = delay.as_millis();
    assert!(
        offsets[1] == expected || offsets[1] == expected + 1,
        "hedged at {offsets:?}, delay {delay:?}"
    );
}

/// An endpoint of the balancer: answers its id after a delay, counting its calls.
#[derive(Clone)]
struct Endpoint {
    id: usize,
    delay: Duration,
    hits: Arc<AtomicUsize>,
}

impl Service<u32> for Endpoint {
    type Response = usize;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let (id, delay) = (self.id, self.delay);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(id)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn hedges_over_a_balancer_go_to_different_endpoints() {
    use tower_prism_balance::{Balance, BalanceConfig, Strategy};
    for strategy in [
        Strategy::P2cPeakEwma,
        Strategy::RoundRobin,
        Strategy::LeastRequests,
    ] {
        for round in 0..10 {
            let endpoints: Vec<Endpoint> = (0..3)
                .map(|id| Endpoint {
                    id,
                    delay: Duration::from_secs(1),
                    hits: Arc::default(),
                })
                .collect();
            let balance: Balance<usize, Endpoint, u32> = Balance::builder()
                .config(BalanceConfig::builder().strategy(strategy).build().unwrap())
                .endpoints(endpoints.iter().map(|e| (e.id, e.clone())))
                .build()
                .unwrap();
            let layer = hedging(HedgeConfig::fixed(MS * 50).max_hedged(2), 1);
            let mut svc = layer.layer(balance);
            let mut call = Box::pin(svc.ready().await.unwrap().call(round));
            tokio::select! {
                _ = &mut call => panic!("answered before the hedges"),
                () = tokio::time::sleep(MS * 200) => {}
            }
            let hits: Vec<usize> = endpoints
                .iter()
                .map(|e| e.hits.load(Ordering::SeqCst))
                .collect();
            assert_eq!(
                hits,
                vec![1, 1, 1],
                "{strategy:?}: one attempt per endpoint"
            );
            assert!(call.await.unwrap() < 3);
            assert_eq!(layer.handle().snapshot().cancelled_attempts, 2);
        }
    }
}

/// The attempt timeout and the hedge delay share one timer: each fires at its own time,
/// in either order, and the call neither hangs nor fires one for the other.
#[tokio::test(start_paused = true)]
async fn the_hedge_delay_and_the_attempt_timeout_each_fire_on_time() {
    let layer = |hedge_ms: u32, timeout_ms: u32| {
        let config = RetryConfig::builder()
            .max_attempts(2)
            .backoff(tower_prism_retry::Backoff::fixed(MS * 10))
            .budget(no_budget())
            .attempt_timeout(MS * timeout_ms)
            .hedge(HedgeConfig::fixed(MS * hedge_ms))
            .build()
            .unwrap();
        RetryLayer::builder(config).name("hedge").build().unwrap()
    };
    // The hedge first (20 ms), then each copy's timeout (50 ms after it was sent): the
    // round fails at 70 ms, and the retry goes after its 10 ms backoff.
    let up = Upstream::new([ok_after(1000, 1), ok_after(1000, 2), ok_after(10, 3)]);
    let mut svc = layer(20, 50).layer(up.service());
    let start = Instant::now();
    assert_eq!(run(&mut svc, 0).await.unwrap(), 3);
    assert_eq!(up.log.offsets(), vec![0, 20, 80]);
    assert_eq!(start.elapsed(), MS * 90);
    // The timeout first (30 ms, the hedge would go at 60 ms): a timed-out attempt failed,
    // so the hedge goes at once, at 30 ms; it times out at 60 ms, and the retry goes after
    // its 10 ms backoff and times out in turn.
    let up = Upstream::new([ok_after(1000, 1), ok_after(1000, 2), ok_after(1000, 3)]);
    let mut svc = layer(60, 30).layer(up.service());
    let start = Instant::now();
    let result = run(&mut svc, 0).await;
    assert!(result.is_err(), "every attempt times out: {result:?}");
    assert_eq!(
        up.log.offsets(),
        vec![0, 30, 70],
        "the hedge at the first timeout, not at its delay"
    );
    assert_eq!(start.elapsed(), MS * 100);
    assert_eq!(up.in_flight(), 0);
}

/// The bound `RetryConfig` documents for a hedged round, reached: every hedge has its own
/// attempt timeout from when it was sent, and each timeout sends the next hedge at once, so
/// a round of `1 + max_hedged` attempts that never answer lasts `(1 + max_hedged)` attempt
/// timeouts (not one, as the bound once said).
#[tokio::test(start_paused = true)]
async fn a_hedged_round_lasts_at_most_one_attempt_timeout_per_attempt() {
    let config = RetryConfig::builder()
        .max_attempts(1)
        .budget(no_budget())
        .attempt_timeout(MS * 50)
        .hedge(HedgeConfig::fixed(Duration::from_secs(1)).max_hedged(3))
        .build()
        .unwrap();
    let layer = RetryLayer::builder(config).name("hedge").build().unwrap();
    let up = Upstream::new([ok_after(1000, 1); 4]);
    let mut svc = layer.layer(up.service());
    let start = Instant::now();
    assert!(run(&mut svc, 0).await.is_err(), "every attempt timed out");
    assert_eq!(
        up.log.offsets(),
        vec![0, 50, 100, 150],
        "a hedge at each timeout"
    );
    assert_eq!(
        start.elapsed(),
        MS * 200,
        "(1 + max_hedged) attempt timeouts"
    );
    assert_eq!(up.in_flight(), 0);
}

/// Polly's hedging: the delay is the longest wait before the next hedge. An attempt that
/// fails (retryably) before it sends the next hedge at once, whether or not retries are
/// on: the hedge comes before a retry and its backoff.
#[tokio::test(start_paused = true)]
async fn a_failure_before_the_delay_sends_the_hedge_at_once() {
    for attempts in [1, 3] {
        let up = Upstream::new([err_after(10), ok_after(10, 2)]);
        let layer = hedging(HedgeConfig::fixed(Duration::from_secs(1)), attempts);
        let mut svc = layer.layer(up.service());
        let start = Instant::now();
        assert_eq!(run(&mut svc, 0).await.unwrap(), 2, "{attempts} attempts");
        assert_eq!(start.elapsed(), MS * 20, "{attempts} attempts");
        assert_eq!(up.log.offsets(), vec![0, 10], "the hedge at the failure");
        let s = layer.handle().snapshot();
        assert_eq!((s.hedges_sent, s.hedges_won, s.retries), (1, 1, 0));
        assert_eq!(up.in_flight(), 0);
    }
}

/// A hedge that fails while the original runs sends the next hedge at once too, and the
/// original's failure does not end the call while a hedge may still answer.
#[tokio::test(start_paused = true)]
async fn a_failure_while_others_run_sends_the_next_hedge_at_once() {
    // the hedge sent at 50 fails at 60: the second goes then, and wins at 65
    let up = Upstream::new([ok_after(1000, 1), err_after(10), ok_after(5, 3)]);
    let layer = hedging(HedgeConfig::fixed(MS * 50).max_hedged(2), 1);
    let mut svc = layer.layer(up.service());
    let start = Instant::now();
    assert_eq!(run(&mut svc, 0).await.unwrap(), 3);
    assert_eq!(start.elapsed(), MS * 65);
    assert_eq!(up.log.offsets(), vec![0, 50, 60]);
    assert_eq!(
        (up.dropped(), up.in_flight()),
        (1, 0),
        "the original dropped"
    );
    // the original fails at 70 while the hedge sent at 50 runs: the second hedge goes at
    // 70, not at 100, and the first hedge still wins at 90
    let up = Upstream::new([err_after(70), ok_after(40, 2), ok_after(1000, 3)]);
    let mut svc = layer.layer(up.service());
    let start = Instant::now();
    assert_eq!(run(&mut svc, 0).await.unwrap(), 2);
    assert_eq!(start.elapsed(), MS * 90);
    assert_eq!(up.log.offsets(), vec![0, 50, 70]);
    assert_eq!(
        (up.dropped(), up.in_flight()),
        (1, 0),
        "the last hedge dropped"
    );
}

/// The call fails only when every attempt failed and no hedge (nor retry) remains; then
/// the retry rules decide, as before.
#[tokio::test(start_paused = true)]
async fn the_call_fails_once_every_hedge_failed() {
    let up = Upstream::new([err_after(10), err_after(10), err_after(10)]);
    let layer = hedging(HedgeConfig::fixed(MS * 50).max_hedged(2), 1);
    let mut svc = layer.layer(up.service());
    let start = Instant::now();
    let err = run(&mut svc, 0).await.unwrap_err();
    assert_eq!(err.to_string(), "refused");
    assert_eq!(
        up.log.offsets(),
        vec![0, 10, 20],
        "one hedge after each failure"
    );
    assert_eq!(start.elapsed(), MS * 30);
    // with a retry left: the hedges first, then the retry after its 10 ms backoff
    let up = Upstream::new([err_after(10), err_after(10), ok_after(10, 3)]);
    let layer = hedging(HedgeConfig::fixed(MS * 50), 2);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 3);
    assert_eq!(up.log.offsets(), vec![0, 10, 30]);
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges_sent, s.retries), (1, 1));
}

/// A hedge sent at a failure draws from the budget like any other: an empty budget sends
/// none and the failure is the call's answer.
#[tokio::test(start_paused = true)]
async fn a_hedge_at_a_failure_needs_the_budget() {
    let empty = BudgetConfig::builder()
        .ratio(0.0)
        .success_ratio(0.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .max_attempts(1)
        .budget(empty)
        .hedge(HedgeConfig::fixed(MS * 50))
        .build()
        .unwrap();
    let layer = RetryLayer::from_config(&config).unwrap();
    let up = Upstream::new([err_after(10), ok_after(10, 2)]);
    let mut svc = layer.layer(up.service());
    let start = Instant::now();
    assert_eq!(run(&mut svc, 0).await.unwrap_err().to_string(), "refused");
    assert_eq!(start.elapsed(), MS * 10);
    assert_eq!(up.log.count(), 1);
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges_sent, s.hedges_no_budget), (0, 1));
}

/// Ready for the first call; after it, as the gate says: `Some(true)` ready, `Some(false)`
/// an error, `None` not yet (until [`open`] wakes it).
#[derive(Clone)]
struct Gated<S> {
    inner: S,
    gate: Gate,
    calls: Arc<AtomicUsize>,
}

type Gate = Arc<Mutex<(Option<bool>, Option<std::task::Waker>)>>;

fn open(gate: &Gate) {
    let mut g = gate.lock().unwrap();
    g.0 = Some(true);
    if let Some(w) = g.1.take() {
        w.wake();
    }
}

impl<S: Service<u32, Error = BoxError>> Service<u32> for Gated<S> {
    type Response = S::Response;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        if self.calls.load(Ordering::SeqCst) == 0 {
            return self.inner.poll_ready(cx);
        }
        let mut g = self.gate.lock().unwrap();
        match g.0 {
            Some(true) => self.inner.poll_ready(cx),
            Some(false) => std::task::Poll::Ready(Err("not ready".into())),
            None => {
                g.1 = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }

    fn call(&mut self, n: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.call(n)
    }
}

/// A hedge due at a failure waits for the service to be ready, without the original's
/// failure ending the call; if readiness fails, that failure is the answer.
#[tokio::test(start_paused = true)]
async fn a_hedge_at_a_failure_waits_for_readiness() {
    let layer = hedging(HedgeConfig::fixed(Duration::from_secs(1)), 1);
    let gate: Gate = Arc::default();
    let up = Upstream::new([err_after(10), ok_after(10, 2)]);
    let svc = Gated {
        inner: up.service(),
        gate: gate.clone(),
        calls: Arc::default(),
    };
    let mut svc = layer.layer(svc);
    let call = tokio::spawn(async move { run(&mut svc, 0).await });
    tokio::time::sleep(MS * 30).await;
    assert!(!call.is_finished(), "the hedge is still on its way");
    open(&gate);
    assert_eq!(call.await.unwrap().unwrap(), 2);
    assert_eq!(up.log.offsets(), vec![0, 30]);
    // readiness fails: the original's failure answers, at once
    let gate: Gate = Arc::new(Mutex::new((Some(false), None)));
    let up = Upstream::new([err_after(10), ok_after(10, 2)]);
    let svc = Gated {
        inner: up.service(),
        gate,
        calls: Arc::default(),
    };
    let mut svc = layer.layer(svc);
    let start = Instant::now();
    assert_eq!(run(&mut svc, 0).await.unwrap_err().to_string(), "refused");
    assert_eq!(start.elapsed(), MS * 10);
    assert_eq!(up.log.count(), 1);
}

/// Polly's parallel mode: a zero delay sends every hedge at once (still at most
/// `max_hedged`), and the first answer wins.
#[tokio::test(start_paused = true)]
async fn a_zero_delay_sends_every_hedge_at_once() {
    let hedge: HedgeConfig = toml::from_str("delay = \"0s\"\nmax_hedged = 2").unwrap();
    let up = Upstream::new([ok_after(100, 1), ok_after(30, 2), ok_after(50, 3)]);
    let layer = hedging(hedge, 1);
    let mut svc = layer.layer(up.service());
    let start = Instant::now();
    assert_eq!(run(&mut svc, 0).await.unwrap(), 2);
    assert_eq!(start.elapsed(), MS * 30);
    assert_eq!(up.log.offsets(), vec![0, 0, 0], "all three at once");
    assert_eq!((up.dropped(), up.in_flight()), (2, 0));
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges_sent, s.hedges_won), (2, 1));
    assert_eq!(s.hedge_delay, Some(Duration::ZERO));
}

/// Parallel mode keeps the budget's bound: a floor of one retry per second sends one
/// hedge, not two.
#[tokio::test(start_paused = true)]
async fn a_zero_delay_still_draws_from_the_budget() {
    let one = BudgetConfig::builder()
        .success_ratio(0.0)
        .min_per_second(1)
        .window(Duration::from_secs(1))
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .max_attempts(1)
        .budget(one)
        .hedge(HedgeConfig::fixed(Duration::ZERO).max_hedged(2))
        .build()
        .unwrap();
    let layer = RetryLayer::from_config(&config).unwrap();
    let up = Upstream::new([ok_after(100, 1), ok_after(30, 2), ok_after(50, 3)]);
    let mut svc = layer.layer(up.service());
    assert_eq!(run(&mut svc, 0).await.unwrap(), 2);
    assert_eq!(up.log.offsets(), vec![0, 0]);
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges_sent, s.hedges_no_budget), (1, 1));
}
