//! The simulated upstream: N endpoints, each with a fixed number of service slots and a
//! FIFO queue, lognormal service times from a seeded generator, and a fault schedule.
//!
//! An endpoint's work runs in its own task: a client that gives up (its deadline passed)
//! does not free the slot or the queue place its request holds, as with a real server that
//! never learns the client left. That is what makes retry storms and queueing cost.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;
use tower::{BoxError, Service};
use tower_prism::retry::ReplayBody;

use crate::rng::{Draw, Rng};

/// The request body: replayable, so the HTTP profile may retry it.
pub type Body = ReplayBody<String>;
/// A request to the upstream (a GET, so every stack may retry it).
pub type Request = http::Request<Body>;
/// The upstream's answer: a status (and `Retry-After` when it sheds).
pub type Response = http::Response<()>;

/// Any endpoint a stack balances over: a simulated [`Endpoint`] or a real HTTP one.
pub type EndpointService = tower::util::BoxCloneSyncService<Request, Response, BoxError>;

/// The header carrying the client's identity (the key of a per-key limit).
pub const CLIENT_HEADER: &str = "x-client";

/// What goes wrong with an endpoint during a fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// Service times are multiplied by this factor.
    Slow(f64),
    /// Every call gets a 500 after 1 ms, without taking a slot.
    FailEvery,
    /// This share of calls get a 500 after their normal service time.
    FailRandom(f64),
    /// The endpoint refuses connections: every call fails at once.
    Down,
    /// The endpoint sheds politely: every call gets a 503 at once, without taking a slot,
    /// with this `Retry-After` (whole seconds, at least 1).
    Shed(Duration),
}

/// One fault: what, on which endpoints, and when (from the start of the run).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The endpoints it hits (indices).
    pub endpoints: Vec<usize>,
    /// When it starts.
    pub from: Duration,
    /// When it ends.
    pub until: Duration,
    /// What it does.
    pub kind: FaultKind,
}

/// How an endpoint sheds load it cannot queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shedding {
    /// Requests waiting for a slot at which new ones get a 503.
    pub queue_depth: usize,
    /// The `Retry-After` sent with the 503, if any.
    pub retry_after: Option<Duration>,
}

/// The upstream's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// How many endpoints.
    pub endpoints: usize,
    /// Service slots per endpoint (requests served at once).
    pub slots: usize,
    /// Mean service time.
    pub mean_service: Duration,
    /// Shape of the lognormal service time (standard deviation of its log).
    pub sigma: f64,
    /// When an endpoint answers 503 instead of queueing.
    pub shedding: Shedding,
    /// The fault schedule.
    pub faults: Vec<Fault>,
}

impl UpstreamConfig {
    /// Requests per second the healthy upstream completes when every slot is busy.
    pub fn capacity(&self) -> f64 {
        (self.endpoints * self.slots) as f64 / self.mean_service.as_secs_f64()
    }
}

/// The simulated upstream; endpoints are made with [`Upstream::endpoint`].
#[derive(Debug)]
pub struct Upstream {
    config: UpstreamConfig,
    start: Instant,
    slots: Vec<Arc<Semaphore>>,
    waiting: Vec<Arc<AtomicUsize>>,
    rng: Mutex<Rng>,
    /// Attempts that reached the upstream, per 100 ms since the start.
    attempts: Mutex<Vec<u64>>,
}

/// Attempts are counted in buckets of this length.
pub const ATTEMPT_BUCKET: Duration = Duration::from_millis(100);

impl Upstream {
    /// An upstream whose clock starts now.
    pub fn new(config: UpstreamConfig, seed: u64) -> Arc<Self> {
        let slots = (0..config.endpoints)
            .map(|_| Arc::new(Semaphore::new(config.slots)))
            .collect();
        let waiting = (0..config.endpoints)
            .map(|_| Arc::new(AtomicUsize::new(0)))
            .collect();
        Arc::new(Upstream {
            config,
            start: Instant::now(),
            slots,
            waiting,
            rng: Mutex::new(Rng::new(seed)),
            attempts: Mutex::new(Vec::new()),
        })
    }

    /// The service for endpoint `index`.
    pub fn endpoint(self: &Arc<Self>, index: usize) -> Endpoint {
        Endpoint {
            upstream: self.clone(),
            index,
        }
    }

    /// Every endpoint's service, boxed as the stacks take them.
    pub fn endpoints(self: &Arc<Self>) -> Vec<EndpointService> {
        (0..self.config.endpoints)
            .map(|i| EndpointService::new(self.endpoint(i)))
            .collect()
    }

    /// Attempts that reached the upstream, per [`ATTEMPT_BUCKET`] since the start.
    pub fn attempts(&self) -> Vec<u64> {
        self.attempts.lock().unwrap().clone()
    }

    fn record_attempt(&self, at: Duration) {
        let bucket = (at.as_nanos() / ATTEMPT_BUCKET.as_nanos()) as usize;
        let mut attempts = self.attempts.lock().unwrap();
        if attempts.len() <= bucket {
            attempts.resize(bucket + 1, 0);
        }
        attempts[bucket] += 1;
    }

    fn fault_at(&self, index: usize, at: Duration) -> Option<FaultKind> {
        self.config
            .faults
            .iter()
            .find(|f| f.endpoints.contains(&index) && f.from <= at && at < f.until)
            .map(|f| f.kind)
    }

    fn answer(&self, index: usize) -> Answer {
        let at = self.start.elapsed();
        self.record_attempt(at);
        let fault = self.fault_at(index, at);
        let mut rng = self.rng.lock().unwrap();
        match fault {
            Some(FaultKind::Down) => return Answer::Refused,
            Some(FaultKind::FailEvery) => return Answer::Later(Duration::from_millis(1), 500),
            Some(FaultKind::Shed(after)) => return Answer::Shed(Some(after)),
            _ => {}
        }
        let shedding = self.config.shedding;
        if self.waiting[index].load(Ordering::Relaxed) >= shedding.queue_depth {
            return Answer::Shed(shedding.retry_after);
        }
        let mean = self.config.mean_service.as_secs_f64();
        let mut service = rng.lognormal(mean, self.config.sigma);
        if let Some(FaultKind::Slow(factor)) = fault {
            service *= factor;
        }
        let status = match fault {
            Some(FaultKind::FailRandom(p)) if rng.chance(p) => 500,
            _ => 200,
        };
        Answer::Queued(Duration::from_secs_f64(service), status)
    }
}

/// What an endpoint does with one call.
enum Answer {
    Refused,
    Shed(Option<Duration>),
    Later(Duration, u16),
    Queued(Duration, u16),
}

/// One endpoint of the [`Upstream`], a tower service.
#[derive(Debug, Clone)]
pub struct Endpoint {
    upstream: Arc<Upstream>,
    index: usize,
}

/// The error of a refused connection.
#[derive(Debug, Clone, Copy)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused")
    }
}

impl std::error::Error for Refused {}

fn status(code: u16) -> Response {
    let mut response = Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(code).expect("a valid status");
    response
}

impl Service<Request> for Endpoint {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request) -> Self::Future {
        let index = self.index;
        match self.upstream.answer(index) {
            Answer::Refused => Box::pin(async { Err(Refused.into()) }),
            Answer::Shed(retry_after) => {
                let mut response = status(503);
                if let Some(after) = retry_after {
                    let secs = after.as_secs().max(1).to_string();
                    response.headers_mut().insert(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_str(&secs).expect("digits"),
                    );
                }
                Box::pin(async move { Ok(response) })
            }
            Answer::Later(after, code) => Box::pin(async move {
                tokio::time::sleep(after).await;
                Ok(status(code))
            }),
            Answer::Queued(service, code) => {
                let slots = self.upstream.slots[index].clone();
                let waiting = self.upstream.waiting[index].clone();
                waiting.fetch_add(1, Ordering::Relaxed);
                let (done, answer) = oneshot::channel();
                // The work runs whether or not the caller still waits for it.
                tokio::spawn(async move {
                    let permit = slots.acquire_owned().await;
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    tokio::time::sleep(service).await;
                    drop(permit);
                    let _ = done.send(status(code));
                });
                Box::pin(async move { answer.await.map_err(|_| "endpoint task ended".into()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn request() -> Request {
        http::Request::get("http://upstream/")
            .body(ReplayBody::new(String::new(), 16))
            .unwrap()
    }

    fn config(faults: Vec<Fault>, shedding: Shedding) -> UpstreamConfig {
        UpstreamConfig {
            endpoints: 1,
            slots: 1,
            mean_service: Duration::from_millis(10),
            sigma: 0.1,
            shedding,
            faults,
        }
    }

    const NO_SHEDDING: Shedding = Shedding {
        queue_depth: 1000,
        retry_after: None,
    };

    #[tokio::test(start_paused = true)]
    async fn a_down_endpoint_refuses_at_once_and_counts_the_attempt() {
        let down = Fault {
            endpoints: vec![0],
            from: Duration::ZERO,
            until: Duration::from_secs(1),
            kind: FaultKind::Down,
        };
        let upstream = Upstream::new(config(vec![down], NO_SHEDDING), 1);
        let began = Instant::now();
        let error = upstream.endpoint(0).oneshot(request()).await.unwrap_err();
        assert!(error.is::<Refused>());
        assert_eq!(began.elapsed(), Duration::ZERO);
        assert_eq!(upstream.attempts(), vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_slot_serves_requests_one_after_another_in_order() {
        let upstream = Upstream::new(config(Vec::new(), NO_SHEDDING), 1);
        let began = Instant::now();
        let first = tokio::spawn(upstream.endpoint(0).oneshot(request()));
        let second = tokio::spawn(upstream.endpoint(0).oneshot(request()));
        let first = first.await.unwrap().unwrap();
        let first_done = began.elapsed();
        let second = second.await.unwrap().unwrap();
        assert_eq!(
            (first.status().as_u16(), second.status().as_u16()),
            (200, 200)
        );
        assert!(
            began.elapsed() > first_done,
            "the second waited for the slot"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shedding_endpoint_answers_503_with_retry_after_at_once() {
        let shed = Fault {
            endpoints: vec![0],
            from: Duration::ZERO,
            until: Duration::from_secs(1),
            kind: FaultKind::Shed(Duration::from_secs(2)),
        };
        let upstream = Upstream::new(config(vec![shed], NO_SHEDDING), 1);
        let began = Instant::now();
        let response = upstream.endpoint(0).oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "2");
        assert_eq!(began.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_queue_depth_the_endpoint_sheds_with_retry_after() {
        let shedding = Shedding {
            queue_depth: 1,
            retry_after: Some(Duration::from_secs(2)),
        };
        let upstream = Upstream::new(config(Vec::new(), shedding), 1);
        // The first takes the slot, the second waits in the queue, the third is shed.
        let _served = tokio::spawn(upstream.endpoint(0).oneshot(request()));
        tokio::task::yield_now().await;
        let _queued = tokio::spawn(upstream.endpoint(0).oneshot(request()));
        tokio::task::yield_now().await;
        let shed = upstream.endpoint(0).oneshot(request()).await.unwrap();
        assert_eq!(shed.status(), 503);
        assert_eq!(shed.headers()[http::header::RETRY_AFTER], "2");
    }
}
