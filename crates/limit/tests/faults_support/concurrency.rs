//! The limiters and checks the concurrency limiter's fault tests share.

use std::time::Duration;

use tower::BoxError;
use tower::{Service, ServiceExt};
use tower_prism_limit::concurrency::{
    AimdConfig, ConcurrencyConfig, ConcurrencyLimiter, GradientConfig, LimitAlgorithm,
};

use super::{Fault, MS};

/// Every kind of limiter under test: fixed, AIMD (with a latency threshold) and gradient,
/// each failing fast and waiting up to 100 ms.
pub fn configs() -> Vec<(String, ConcurrencyConfig)> {
    let adaptive = |algorithm| {
        let mut c = ConcurrencyConfig::default();
        c.initial_limit = 2;
        c.min_limit = 1;
        c.max_limit = 10;
        c.algorithm = algorithm;
        c
    };
    let kinds = [
        ("fixed", ConcurrencyConfig::fixed(2)),
        (
            "aimd",
            adaptive(LimitAlgorithm::Aimd({
                let mut c = AimdConfig::default();
                c.latency_threshold = Some(Duration::from_secs(1));
                c
            })),
        ),
        (
            "gradient",
            adaptive(LimitAlgorithm::Gradient(GradientConfig::default())),
        ),
    ];
    let mut all = Vec::new();
    for (name, cfg) in kinds {
        all.push((format!("{name}, fail fast"), cfg.clone()));
        let waiting = {
            let mut c = cfg;
            c.max_wait = Some(100 * MS);
            c
        };
        all.push((format!("{name}, max_wait 100ms"), waiting));
    }
    all
}

pub async fn call<S>(svc: &mut S, fault: Fault) -> Result<Fault, BoxError>
where
    S: Service<Fault, Response = Fault, Error = BoxError>,
{
    svc.ready().await?.call(fault).await
}

/// Nothing held, nobody waiting, the limit within its bounds, and a healthy call answered.
pub async fn assert_unwedged<S>(limiter: &ConcurrencyLimiter, svc: &mut S, case: &str)
where
    S: Service<Fault, Response = Fault, Error = BoxError>,
{
    let snap = limiter.snapshot();
    assert_eq!((snap.in_flight, snap.waiting), (0, 0), "{case}: {snap:?}");
    assert!(
        snap.min_limit <= snap.limit && snap.limit <= snap.max_limit,
        "{case}: {snap:?}"
    );
    assert_eq!(
        call(svc, Fault::Answer).await.unwrap(),
        Fault::Answer,
        "{case}"
    );
    assert_eq!(limiter.snapshot().in_flight, 0, "{case}");
}
