//! Retry: the per-call cost when no retry is needed, and the cost of one immediate retry,
//! tower-prism beside tower's `retry::Retry` with a matching policy (same attempts; with
//! and without a retry budget), in the same run. Every call completes on its first poll.

use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, Retry as TowerRetry};
use tower_layer::Layer;
use tower_prism_bench::Noop;
use tower_prism_retry::{Backoff, BudgetConfig, RetryConfig, RetryLayer};
use tower_service::Service;

/// poll_ready + call + poll once; the call must succeed at once.
#[inline]
fn call_now<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, req: u64) {
    assert!(svc.poll_ready(cx).is_ready());
    let fut = pin!(svc.call(req));
    match fut.poll(cx) {
        Poll::Ready(Ok(_)) => {}
        _ => panic!("call did not succeed at once"),
    }
}

/// The inner error: a zero-sized type, so that boxing it (as tower-prism does to every
/// error) allocates nothing and the benches compare the retry machinery alone.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

/// Fails every other call: each logical call fails once, then succeeds on its retry.
#[derive(Clone, Default)]
struct FailOnce(Arc<AtomicU64>);

impl Service<u64> for FailOnce {
    type Response = u64;
    type Error = Refused;
    type Future = Ready<Result<u64, Refused>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: u64) -> Self::Future {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        ready(if n.is_multiple_of(2) {
            Err(Refused)
        } else {
            Ok(req)
        })
    }
}

/// tower policy: up to `.0` attempts, retrying errors at once.
#[derive(Clone)]
struct Attempts(u32);

impl<E> Policy<u64, u64, E> for Attempts {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Ready<()>> {
        if result.is_err() && self.0 > 1 {
            self.0 -= 1;
            Some(ready(()))
        } else {
            None
        }
    }
    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower policy with a `TpsBudget` (deposit per successful call, withdraw per retry).
#[derive(Clone)]
struct Budgeted {
    attempts: u32,
    budget: Arc<TpsBudget>,
}

impl<E> Policy<u64, u64, E> for Budgeted {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Ready<()>> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.attempts > 1 && self.budget.withdraw() => {
                self.attempts -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }
    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn tps_budget() -> Arc<TpsBudget> {
    Arc::new(TpsBudget::new(Duration::from_secs(10), 1_000_000, 1.0))
}

fn prism(budget: bool) -> RetryLayer {
    let config = RetryConfig::builder()
        .max_attempts(3)
        .backoff(Backoff::none());
    let config = if budget {
        config.budget(
            BudgetConfig::builder()
                .ratio(1.0)
                .min_per_second(1_000_000)
                .build()
                .unwrap(),
        )
    } else {
        config.no_budget()
    };
    RetryLayer::builder(config.build().unwrap())
        .name("bench")
        .build()
        .unwrap()
}

fn bench<S: Service<u64>>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut i = 0u64;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            call_now(&mut svc, &mut cx, std::hint::black_box(i));
        })
    });
}

fn retry(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let mut group = c.benchmark_group("retry/no_retry");
    bench(&mut group, "inner_only", Noop);
    bench(&mut group, "prism_no_budget", prism(false).layer(Noop));
    bench(&mut group, "prism_budget", prism(true).layer(Noop));
    bench(
        &mut group,
        "tower_attempts",
        TowerRetry::new(Attempts(3), Noop),
    );
    bench(
        &mut group,
        "tower_budget",
        TowerRetry::new(
            Budgeted {
                attempts: 3,
                budget: tps_budget(),
            },
            Noop,
        ),
    );
    group.finish();

    let mut group = c.benchmark_group("retry/one_retry");
    bench(
        &mut group,
        "prism_no_budget",
        prism(false).layer(FailOnce::default()),
    );
    bench(
        &mut group,
        "prism_budget",
        prism(true).layer(FailOnce::default()),
    );
    bench(
        &mut group,
        "tower_attempts",
        TowerRetry::new(Attempts(3), FailOnce::default()),
    );
    bench(
        &mut group,
        "tower_budget",
        TowerRetry::new(
            Budgeted {
                attempts: 3,
                budget: tps_budget(),
            },
            FailOnce::default(),
        ),
    );
    group.finish();
}

criterion_group!(benches, retry);
criterion_main!(benches);
