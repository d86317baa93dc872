//! For any sequence of calls (fast or slow, succeeding or failing), pauses, and calls held
//! in flight then finished or dropped (cancelled) at any point, in every state (closed,
//! open, half-open probing), the breaker behind the tower service is in the same state as a
//! plain, sequential reference model, with the same window counts, the same open wait and
//! the same probes admitted: a dropped call records nothing and gives its probe back, so
//! the breaker still closes and opens as the model says.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::task::Poll;
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::oneshot;
use tokio::time::{advance, sleep};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_prism_breaker::{BreakerConfig, CircuitBreakerLayer, Error, State, Window};
use tower_prism_core::Outcome;

const SLOW_CALL: Duration = Duration::from_millis(50);
const SLOW_TAKES_MS: u64 = 80;

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A call: does it fail, is it slow.
    Call { fail: bool, slow: bool },
    /// Time passes (ms).
    Advance(u64),
    /// A call that stays in flight (polled once) until finished or dropped.
    Hold { fail: bool },
    /// The held call at this index (modulo) answers now.
    Finish(usize),
    /// The held call at this index (modulo) is dropped (cancelled) before it answers.
    Drop(usize),
    /// A call whose future is dropped before it is ever polled.
    DropUnpolled,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(fail, slow)| Op::Call { fail, slow }),
        1 => (1u64..1_500).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(|fail| Op::Hold { fail }),
        1 => any::<usize>().prop_map(Op::Finish),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => Just(Op::DropUnpolled),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    let window = prop_oneof![
        (1u32..8).prop_map(|size| Window::Count { size }),
        (100u64..2_000, 1u32..6).prop_map(|(ms, buckets)| Window::Time {
            duration: Duration::from_millis(ms),
            buckets
        }),
    ];
    (
        window,
        1u32..8,
        prop::sample::select(vec![0.25, 0.5, 0.75, 1.0]),
        prop::sample::select(vec![0.5, 1.0]),
        prop::option::of(1u32..5),
        100u64..2_000,
        prop::sample::select(vec![1.0, 1.5, 2.0]),
        1u64..4,
        1u32..4,
    )
        .prop_map(
            |(window, min, rate, slow_rate, consecutive, wait, mult, cap, probes)| {
                let min = match window {
                    Window::Count { size } => min.min(size),
                    _ => min,
                };
                BreakerConfig::builder()
                    .window(window)
                    .minimum_calls(min)
                    .failure_rate_threshold(rate)
                    .slow_call_rate_threshold(slow_rate)
                    .slow_call_duration(SLOW_CALL)
                    .consecutive_failures(consecutive)
                    .wait_duration(Duration::from_millis(wait))
                    .exponential_backoff(mult, Duration::from_millis(wait * cap))
                    .permitted_calls_in_half_open(probes)
                    .build()
                    .unwrap()
            },
        )
}

/// The reference: the breaker's rules, written out plainly for calls made one at a time.
/// Times are nanoseconds since the breaker was built.
#[derive(Debug)]
struct Model {
    config: BreakerConfig,
    state: ModelState,
    /// Closed-state calls: (end time, failure, slow).
    window: VecDeque<(u64, bool, bool)>,
    consecutive: u32,
    reopens: u32,
    /// Bumped on every state change, as the breaker's generation.
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ModelState {
    Closed,
    Open {
        until: u64,
    },
    HalfOpen {
        admitted: u32,
        done: u32,
        failures: u32,
        slow: u32,
    },
}

/// A call the model let through: in which generation, and whether it is a probe.
#[derive(Debug, Clone, Copy)]
struct Admitted {
    generation: u64,
    probe: bool,
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

fn trips(config: &BreakerConfig, calls: u32, failures: u32, slow: u32) -> bool {
    f64::from(failures) >= config.failure_rate_threshold * f64::from(calls)
        || f64::from(slow) >= config.slow_call_rate_threshold * f64::from(calls)
}

impl Model {
    fn new(config: BreakerConfig) -> Self {
        Model {
            config,
            state: ModelState::Closed,
            window: VecDeque::new(),
            consecutive: 0,
            reopens: 0,
            generation: 0,
        }
    }

    /// The closed-state calls inside the window at `now`: (calls, failures, slow).
    fn counts(&self, now: u64) -> (u32, u32, u32) {
        let inside: Vec<_> = match self.config.window {
            Window::Count { size } => self.window.iter().rev().take(size as usize).collect(),
            Window::Time { duration, buckets } => {
                let width = nanos(duration) / u64::from(buckets);
                let slice = now / width;
                self.window
                    .iter()
                    .filter(|(t, _, _)| t / width + u64::from(buckets) > slice)
                    .collect()
            }
            other => unreachable!("the model knows no {other:?}"),
        };
        let failures = inside.iter().filter(|c| c.1).count() as u32;
        let slow = inside.iter().filter(|c| c.2).count() as u32;
        (inside.len() as u32, failures, slow)
    }

    fn open(&mut self, now: u64) {
        let wait = nanos(self.config.wait_duration) as f64
            * self.config.backoff_multiplier.powi(self.reopens as i32);
        let wait = wait.min(nanos(self.config.effective_max_wait()) as f64) as u64;
        self.reopens += 1;
        self.state = ModelState::Open { until: now + wait };
        self.generation += 1;
    }

    fn close(&mut self) {
        self.state = ModelState::Closed;
        self.generation += 1;
        self.window.clear();
        self.consecutive = 0;
        self.reopens = 0;
    }

    /// A call starting at `start` that would take `takes`: `Err(retry_after)` if rejected.
    fn call(&mut self, start: u64, takes: u64, fail: bool, slow: bool) -> Result<(), u64> {
        let admitted = self.admit(start)?;
        self.complete(admitted, start + takes, fail, slow);
        Ok(())
    }

    /// A call asking to start at `start`: `Err(retry_after)` if rejected.
    fn admit(&mut self, start: u64) -> Result<Admitted, u64> {
        if let ModelState::Open { until } = self.state {
            if start < until {
                return Err(until - start);
            }
            self.state = ModelState::HalfOpen {
                admitted: 0,
                done: 0,
                failures: 0,
                slow: 0,
            };
            self.generation += 1;
        }
        let generation = self.generation;
        match &mut self.state {
            ModelState::Open { .. } => unreachable!(),
            ModelState::Closed => Ok(Admitted {
                generation,
                probe: false,
            }),
            ModelState::HalfOpen { admitted, .. } => {
                if *admitted >= self.config.permitted_calls_in_half_open {
                    return Err(nanos(self.config.wait_duration));
                }
                *admitted += 1;
                Ok(Admitted {
                    generation,
                    probe: true,
                })
            }
        }
    }

    /// A call admitted earlier is cancelled: a probe of the current round gives its slot back.
    fn release(&mut self, call: Admitted) {
        if let ModelState::HalfOpen { admitted, done, .. } = &mut self.state {
            if call.probe && call.generation == self.generation && *admitted > *done {
                *admitted -= 1;
            }
        }
    }

    /// A call admitted earlier ends at `end`; it counts only in the state it started in.
    fn complete(&mut self, call: Admitted, end: u64, fail: bool, slow: bool) {
        if call.generation != self.generation {
            return; // the breaker moved on while it ran
        }
        match &mut self.state {
            ModelState::Open { .. } => {}
            ModelState::HalfOpen {
                done,
                failures,
                slow: slow_calls,
                ..
            } => {
                *done += 1;
                *failures += u32::from(fail);
                *slow_calls += u32::from(slow);
                let (done, failures, slow_calls) = (*done, *failures, *slow_calls);
                if done >= self.config.permitted_calls_in_half_open {
                    if trips(&self.config, done, failures, slow_calls) {
                        self.open(end);
                    } else {
                        self.close();
                    }
                }
            }
            ModelState::Closed => {
                self.window.push_back((end, fail, slow));
                self.consecutive = if fail { self.consecutive + 1 } else { 0 };
                let (calls, failures, slow_calls) = self.counts(end);
                let by_run = self
                    .config
                    .consecutive_failures
                    .is_some_and(|n| self.consecutive >= n);
                let by_rate = calls >= self.config.minimum_calls
                    && trips(&self.config, calls, failures, slow_calls);
                if by_run || by_rate {
                    self.open(end);
                }
            }
        }
    }
}

/// A call held in flight: its task, the gate that lets it answer, and the model's view.
struct Held<F: std::future::Future> {
    task: tokio_test::task::Spawn<F>,
    gate: oneshot::Sender<()>,
    admitted: Admitted,
    start: u64,
    fail: bool,
}

fn check(config: BreakerConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        // the upstream answers whether the call failed; the classifier turns that into
        // the outcome
        let layer = CircuitBreakerLayer::builder(config.clone())
            .classify(|r: Result<&bool, &Infallible>| match r {
                Ok(true) => Outcome::RETRYABLE,
                _ => Outcome::Success,
            })
            .build()
            .unwrap();
        let breaker = layer.handle().clone();
        let mut svc = layer.layer(service_fn(
            |(fail, takes, gate): (bool, u64, Option<oneshot::Receiver<()>>)| async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                } else if takes > 0 {
                    sleep(Duration::from_millis(takes)).await;
                }
                Ok::<_, Infallible>(fail)
            },
        ));
        let mut held = Vec::new();
        let start = tokio::time::Instant::now();
        let mut model = Model::new(config);
        for (i, op) in ops.into_iter().enumerate() {
            let now = nanos(tokio::time::Instant::now() - start);
            match op {
                Op::Advance(ms) => advance(Duration::from_millis(ms)).await,
                Op::Call { fail, slow } => {
                    let takes = if slow { SLOW_TAKES_MS } else { 0 };
                    let expected = model.call(now, takes * 1_000_000, fail, slow);
                    let got = svc.ready().await.unwrap().call((fail, takes, None)).await;
                    match (expected, got) {
                        (Ok(()), Ok(_)) => {}
                        (Err(wait), Err(e)) => {
                            let e = e.downcast_ref::<Error>().expect("a breaker error");
                            prop_assert_eq!(
                                e.retry_after(),
                                Some(Duration::from_nanos(wait)),
                                "op {}",
                                i
                            );
                        }
                        (expected, got) => {
                            return Err(TestCaseError::fail(format!(
                                "op {i} {op:?}: model {expected:?}, breaker {:?}",
                                got.map_err(|e| e.to_string())
                            )))
                        }
                    }
                }
                Op::Hold { fail } => {
                    let expected = model.admit(now);
                    let (gate, wait) = oneshot::channel();
                    let call = svc.ready().await.unwrap().call((fail, 0, Some(wait)));
                    let mut task = tokio_test::task::spawn(call);
                    match (expected, task.poll()) {
                        (Ok(admitted), Poll::Pending) => held.push(Held {
                            task,
                            gate,
                            admitted,
                            start: now,
                            fail,
                        }),
                        (Err(wait), Poll::Ready(Err(e))) => {
                            let e = e.downcast_ref::<Error>().expect("a breaker error");
                            prop_assert_eq!(e.retry_after(), Some(Duration::from_nanos(wait)));
                        }
                        (expected, got) => {
                            return Err(TestCaseError::fail(format!(
                                "op {i} {op:?}: model {expected:?}, breaker {:?}",
                                got.map(|r| r.map_err(|e| e.to_string()))
                            )))
                        }
                    }
                }
                Op::Finish(index) if !held.is_empty() => {
                    let mut call = held.remove(index % held.len());
                    call.gate.send(()).unwrap();
                    let answer = call.task.poll();
                    prop_assert!(
                        matches!(answer, Poll::Ready(Ok(f)) if f == call.fail),
                        "op {} {:?}: a held call finished with {:?}",
                        i,
                        op,
                        answer.map(|r| r.map_err(|e| e.to_string()))
                    );
                    let slow = now - call.start > nanos(SLOW_CALL);
                    model.complete(call.admitted, now, call.fail, slow);
                }
                Op::Drop(index) if !held.is_empty() => {
                    let call = held.remove(index % held.len());
                    model.release(call.admitted);
                    drop(call);
                }
                Op::DropUnpolled => {
                    if let Ok(admitted) = model.admit(now) {
                        model.release(admitted);
                    }
                    drop(svc.ready().await.unwrap().call((true, 0, None)));
                }
                Op::Finish(_) | Op::Drop(_) => {} // nothing held
            }
            let now = nanos(tokio::time::Instant::now() - start);
            let snap = breaker.snapshot();
            let expected_state = match model.state {
                ModelState::Closed => State::Closed,
                ModelState::Open { .. } => State::Open,
                ModelState::HalfOpen { .. } => State::HalfOpen,
            };
            prop_assert_eq!(snap.state, expected_state, "after op {} {:?}", i, op);
            match model.state {
                ModelState::Closed => {
                    let (calls, failures, slow) = model.counts(now);
                    prop_assert_eq!(
                        (snap.calls, snap.failures, snap.slow_calls),
                        (calls, failures, slow),
                        "window after op {} {:?}",
                        i,
                        op
                    );
                    prop_assert_eq!(snap.consecutive_failures, model.consecutive);
                }
                ModelState::Open { until } => {
                    prop_assert_eq!(
                        snap.retry_after,
                        Some(Duration::from_nanos(until.saturating_sub(now)))
                    );
                }
                ModelState::HalfOpen {
                    admitted,
                    done,
                    failures,
                    ..
                } => {
                    prop_assert_eq!(
                        (snap.calls, snap.failures, snap.probes_admitted),
                        (done, failures, admitted),
                        "half-open after op {} {:?}",
                        i,
                        op
                    );
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn breaker_matches_the_reference_model(
        config in config(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        check(config, ops)?;
    }
}
