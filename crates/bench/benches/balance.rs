//! Per-call cost of the load balancer with 8 ready endpoints: tower-prism's P2C peak-EWMA
//! beside tower's `balance::p2c::Balance` over `PeakEwmaDiscover`, in the same run. And the
//! cost of endpoint churn: one endpoint replaced in a balancer of 1,000, then the next call
//! (which copies the new set: linear in the endpoints).
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};
use tower_prism_balance::{Balance, BalanceConfig, Strategy};
use tower_prism_bench::Noop;
use tower_service::Service;

const ENDPOINTS: usize = 8;

/// One poll_ready + call + poll of the response future, as a caller does.
fn one_call<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, i: u64) {
    assert!(matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))));
    let fut = pin!(svc.call(i));
    assert!(black_box(fut.poll(cx)).is_ready());
}

fn bench(c: &mut Criterion) {
    let rt = tower_prism_bench::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("balance_8_ready_endpoints");

    let mut prism: Balance<usize, Noop, u64> = Balance::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::P2cPeakEwma)
                .build()
                .unwrap(),
        )
        .endpoints((0..ENDPOINTS).map(|i| (i, Noop)))
        .build()
        .expect("valid config");
    let mut i = 0u64;
    group.bench_function("tower_prism_p2c_peak_ewma", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut prism, &mut cx, i)
        })
    });

    let discover = PeakEwmaDiscover::new::<u64>(
        ServiceList::new::<u64>(vec![Noop; ENDPOINTS]),
        Duration::from_millis(30),
        Duration::from_secs(10),
        CompleteOnResponse::default(),
    );
    let mut tower_p2c = tower::balance::p2c::Balance::new(discover);
    group.bench_function("tower_p2c_peak_ewma", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut tower_p2c, &mut cx, i)
        })
    });

    let mut rr: Balance<usize, Noop, u64> = Balance::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::RoundRobin)
                .build()
                .unwrap(),
        )
        .endpoints((0..ENDPOINTS).map(|i| (i, Noop)))
        .build()
        .expect("valid config");
    group.bench_function("tower_prism_round_robin", |b| {
        b.iter(|| {
            i += 1;
            one_call(&mut rr, &mut cx, i)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("balance_churn_1000_endpoints");
    let mut big: Balance<usize, Noop, u64> = Balance::builder()
        .config(
            BalanceConfig::builder()
                .strategy(Strategy::P2cPeakEwma)
                .build()
                .unwrap(),
        )
        .endpoints((0..CHURN_ENDPOINTS).map(|i| (i, Noop)))
        .build()
        .expect("valid config");
    let handle = big.handle().clone();
    let mut next = CHURN_ENDPOINTS;
    group.bench_function("tower_prism_remove_add_then_call", |b| {
        b.iter(|| {
            // the oldest endpoint leaves, a new one joins (and takes its metrics slot)
            handle.remove(&(next - CHURN_ENDPOINTS));
            handle.add(next, Noop).expect("below the endpoint cap");
            next += 1;
            one_call(&mut big, &mut cx, next as u64)
        })
    });
    group.finish();
}

const CHURN_ENDPOINTS: usize = 1_000;

criterion_group!(benches, bench);
criterion_main!(benches);
