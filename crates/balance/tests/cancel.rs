//! Response futures dropped at any point (before their first poll, while waiting for an
//! endpoint's readiness, mid-call, after completion), with endpoints added, removed and
//! stalled meanwhile: afterwards every in-flight count, in snapshots and in the exported
//! gauges, is back to zero.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use common::Ep;
use metrics_exporter_prometheus::PrometheusBuilder;
use proptest::prelude::{
    any, prop_assert, prop_oneof, proptest, Just, ProptestConfig, TestCaseError,
};
use proptest::strategy::Strategy as _;
use tower::Service;
use tower_prism_balance::{hash_key, Balance, BalanceConfig, Strategy};

type B = Balance<usize, Ep, u64>;
type Call = Pin<Box<dyn Future<Output = Result<usize, tower::BoxError>>>>;

#[derive(Debug, Clone)]
enum Op {
    /// `poll_ready` then `call` (or `call` alone), keeping the future.
    Call {
        req: u64,
        skip_ready: bool,
    },
    /// Polls every kept future once.
    PollAll,
    /// Drops the kept future at this index (modulo their number).
    Drop(usize),
    /// Lets paused time run.
    Advance(u64),
    Add(usize),
    Remove(usize),
    /// Makes an endpoint (not) ready; a call to a not-ready endpoint waits in its future.
    SetReady(usize, bool),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u64>(), any::<bool>()).prop_map(|(req, skip_ready)| Op::Call { req, skip_ready }),
        2 => Just(Op::PollAll),
        3 => any::<usize>().prop_map(Op::Drop),
        2 => (1u64..40).prop_map(Op::Advance),
        1 => (0usize..6).prop_map(Op::Add),
        1 => (0usize..6).prop_map(Op::Remove),
        1 => ((0usize..6), any::<bool>()).prop_map(|(k, r)| Op::SetReady(k, r)),
    ]
}

fn strategy_of(i: usize) -> Strategy {
    [
        Strategy::P2cPeakEwma,
        Strategy::LeastRequests,
        Strategy::RoundRobin,
        Strategy::ConsistentHash,
    ][i]
}

fn endpoint(key: usize) -> Ep {
    Ep::new(key).with_delay(Duration::from_millis(5 + 7 * key as u64))
}

async fn run(strategy: Strategy, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut eps: Vec<Ep> = (0..6).map(endpoint).collect();
    let mut b: B = Balance::builder()
        .name("cancel")
        .config(BalanceConfig::builder().strategy(strategy).build().unwrap())
        .key_fn(|req: &u64| hash_key(req))
        .endpoints((0..3).map(|k| (k, eps[k].clone())))
        .build()
        .unwrap();
    let handle = b.handle().clone();
    let mut cx = Context::from_waker(Waker::noop());
    let mut held: Vec<Call> = Vec::new();
    for op in ops {
        match op {
            Op::Call { req, skip_ready } => {
                if skip_ready || b.poll_ready(&mut cx).is_ready() {
                    held.push(Box::pin(b.call(req)));
                }
            }
            Op::PollAll => held.retain_mut(|f| f.as_mut().poll(&mut cx).is_pending()),
            Op::Drop(i) if !held.is_empty() => drop(held.remove(i % held.len())),
            Op::Drop(_) => {}
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            Op::Add(k) => {
                // a fresh endpoint each time; the old one's calls may still be in flight
                eps[k] = endpoint(k);
                handle.add(k, eps[k].clone()).unwrap();
            }
            Op::Remove(k) => {
                handle.remove(&k);
            }
            Op::SetReady(k, ready) => eps[k].set_ready(ready),
        }
        let counted: u64 = handle
            .snapshot()
            .endpoints
            .iter()
            .map(|e| e.in_flight)
            .sum();
        prop_assert!(counted <= held.len() as u64, "{counted} > {}", held.len());
    }
    drop(held);
    let snapshot = handle.snapshot();
    prop_assert!(
        snapshot.endpoints.iter().all(|e| e.in_flight == 0),
        "{snapshot:?}"
    );
    // and the balancer still serves
    for e in &eps {
        e.set_ready(true);
    }
    if !snapshot.endpoints.is_empty() {
        let call = std::future::poll_fn(|cx| b.poll_ready(cx));
        call.await.unwrap();
        let answer = b.call(1);
        tokio::time::advance(Duration::from_secs(1)).await;
        prop_assert!(answer.await.is_ok());
    }
    prop_assert!(handle.snapshot().endpoints.iter().all(|e| e.in_flight == 0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn dropped_response_futures_leave_no_in_flight_count(
        strategy in 0usize..4,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let recorder = PrometheusBuilder::new().build_recorder();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(run(strategy_of(strategy), ops))
        })?;
        // every slot's gauge agrees: no late decrement or increment landed anywhere
        let rendered = recorder.handle().render();
        for line in rendered.lines().filter(|l| l.starts_with("prism_balance_in_flight{")) {
            prop_assert!(line.ends_with(" 0"), "{line}");
        }
    }
}
