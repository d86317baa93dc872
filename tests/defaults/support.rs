//! The simulated upstream, the open-loop load and the figures the tests assert on.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_prism::retry::ReplayBody;
use tower_prism::{Http, ReliabilityConfig, ReliabilityLayer};
use tower_prism_testkit::Rng;

/// A GET with a replayable (empty) body, so the HTTP profile may retry it.
pub type Request = http::Request<ReplayBody<String>>;
/// The upstream's answer: a status, and `Retry-After` when it sheds.
pub type Response = http::Response<()>;
/// A stack under test, as the load sees it.
pub type Client = BoxCloneService<Request, Response, BoxError>;

/// Service slots of the upstream.
pub const SLOTS: usize = 8;
/// Service time of every call.
pub const SERVICE: Duration = Duration::from_millis(20);
/// The upstream's capacity: 8 slots x 20 ms.
pub const CAPACITY: f64 = 400.0;
/// The client's deadline: a success later than this is not goodput.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// The policy of the issue: three stages, every setting at its default.
pub const DEFAULTS: &str = r#"
[policy.x.concurrency_limit]

[policy.x.circuit_breaker]

[policy.x.retry]
"#;

/// [`DEFAULTS`] for a caller whose deadline the stack knows: the retry stage's
/// `max_elapsed` is the client's 1 s deadline, every other setting at its default.
pub const DEFAULTS_WITH_DEADLINE: &str = r#"
[policy.x.concurrency_limit]

[policy.x.circuit_breaker]

[policy.x.retry]
max_elapsed = "1s"
"#;

/// What the upstream does with calls between `from` and `until` (from the start).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Every call is refused at once (a connection error).
    Down,
    /// This share of calls get a 500 after their service time.
    FailRandom(f64),
    /// Every call gets a 503 with `Retry-After` of this many seconds, at once.
    Shed(u64),
}

/// One endpoint: `SLOTS` slots, a FIFO queue, `SERVICE` per call, one fault window.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    slots: Arc<Semaphore>,
    fault: Option<(Duration, Duration, Fault)>,
    rng: Mutex<Rng>,
    /// Calls that reached the upstream, by time since the start.
    attempts: Mutex<Vec<f64>>,
}

#[derive(Debug)]
struct Refused;

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

impl Upstream {
    /// A healthy upstream, or one with `fault` from `from` to `until` seconds.
    pub fn new(fault: Option<(u64, u64, Fault)>) -> Self {
        Upstream {
            inner: Arc::new(Inner {
                start: Instant::now(),
                slots: Arc::new(Semaphore::new(SLOTS)),
                fault: fault.map(|(a, b, f)| (Duration::from_secs(a), Duration::from_secs(b), f)),
                rng: Mutex::new(Rng::new(15)),
                attempts: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Calls that reached the upstream between `from` and `until` seconds.
    pub fn attempts_between(&self, from: f64, until: f64) -> usize {
        let attempts = self.inner.attempts.lock().unwrap();
        attempts.iter().filter(|&&t| t >= from && t < until).count()
    }
}

impl Service<Request> for Upstream {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request) -> Self::Future {
        let inner = self.inner.clone();
        let at = inner.start.elapsed();
        inner.attempts.lock().unwrap().push(at.as_secs_f64());
        let fault = inner
            .fault
            .filter(|(from, until, _)| *from <= at && at < *until)
            .map(|(_, _, f)| f);
        let code = match fault {
            Some(Fault::Down) => return Box::pin(async { Err(Refused.into()) }),
            Some(Fault::Shed(after)) => {
                let mut response = status(503);
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(after));
                return Box::pin(async move { Ok(response) });
            }
            Some(Fault::FailRandom(p)) if inner.rng.lock().unwrap().unit() < p => 500,
            _ => 200,
        };
        // The work runs whether or not the caller still waits for it, as on a real server.
        let work = tokio::spawn(async move {
            let _permit = inner.slots.acquire().await.expect("never closed");
            tokio::time::sleep(SERVICE).await;
            status(code)
        });
        Box::pin(async move { work.await.map_err(Into::into) })
    }
}

/// The stack of `policy` (policy `x`, HTTP profile) over `upstream`, and its layer.
pub fn prism(policy: &str, upstream: Upstream) -> (Client, ReliabilityLayer<Http>) {
    let config = ReliabilityConfig::from_toml(policy).expect("a valid policy");
    let layer = ReliabilityLayer::from_config_as(&config, "x", Http).expect("a valid policy");
    (BoxCloneService::new(layer.layer(upstream)), layer)
}

/// No protection: the upstream itself.
pub fn plain(upstream: Upstream) -> Client {
    BoxCloneService::new(upstream)
}

/// How one client request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx within the deadline.
    Ok,
    /// An error or a non-2xx within the deadline, with its reason: the status, or the
    /// stack's [`ErrorKind`](tower_prism::ErrorKind) (`concurrency_limited`...).
    Failed(&'static str),
    /// Nothing within the deadline.
    TimedOut,
}

/// One finished client request: when it was sent and how long it took, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Seconds since the start.
    pub sent: f64,
    /// Seconds it took (the deadline for a timeout).
    pub latency: f64,
    /// How it ended.
    pub outcome: Outcome,
}

/// What the load saw.
#[derive(Debug)]
pub struct Run {
    /// Every request, finished.
    pub records: Vec<Record>,
    /// The run's length in seconds.
    pub seconds: f64,
    /// The offered rate.
    pub rate: f64,
}

/// Sends `rate` requests/s (evenly spaced) through `client` for `seconds`, each with the
/// client's deadline, and waits for every one to finish.
pub async fn drive(client: Client, rate: f64, seconds: u64) -> Run {
    let records = Arc::new(Mutex::new(Vec::new()));
    let finished = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let total = (rate * seconds as f64) as u64;
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let call = client.clone().oneshot(request());
        let (records, finished) = (records.clone(), finished.clone());
        tokio::spawn(async move {
            let began = Instant::now();
            let outcome = match tokio::time::timeout(DEADLINE, call).await {
                Ok(Ok(response)) if response.status().is_success() => Outcome::Ok,
                Ok(Ok(response)) if response.status() == 503 => Outcome::Failed("503"),
                Ok(Ok(_)) => Outcome::Failed("5xx"),
                Ok(Err(e)) => Outcome::Failed(tower_prism::Error::from_box(e).kind().as_str()),
                Err(_) => Outcome::TimedOut,
            };
            records.lock().unwrap().push(Record {
                sent: (began - start).as_secs_f64(),
                latency: began.elapsed().as_secs_f64(),
                outcome,
            });
            finished.fetch_add(1, Ordering::Relaxed);
        });
    }
    while finished.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let records = std::mem::take(&mut *records.lock().unwrap());
    Run {
        records,
        seconds: seconds as f64,
        rate,
    }
}

fn request() -> Request {
    http::Request::get("http://upstream/")
        .body(ReplayBody::new(String::new(), 1024))
        .expect("a valid request")
}

impl Run {
    fn successes(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|r| r.outcome == Outcome::Ok)
    }

    /// Successes within the deadline per second, over the run.
    pub fn goodput(&self) -> f64 {
        self.successes().count() as f64 / self.seconds
    }

    /// Requests that did not succeed (failed or timed out).
    pub fn failures(&self) -> usize {
        self.records.len() - self.successes().count()
    }

    /// Requests sent between `from` and `until` seconds.
    pub fn sent_between(&self, from: f64, until: f64) -> usize {
        let sent = |r: &&Record| r.sent >= from && r.sent < until;
        self.records.iter().filter(sent).count()
    }

    /// The `q` quantile of the successes' latency, in seconds.
    pub fn latency(&self, q: f64) -> f64 {
        let mut l: Vec<f64> = self.successes().map(|r| r.latency).collect();
        l.sort_by(f64::total_cmp);
        assert!(!l.is_empty(), "no success to measure");
        let rank = ((l.len() as f64) * q).ceil() as usize;
        l[rank.clamp(1, l.len()) - 1]
    }

    /// Seconds from `end` until the successes completed over the next second reach 90 % of
    /// the offered rate; `None` if they never do within the run.
    pub fn recovery_after(&self, end: f64) -> Option<f64> {
        let done: Vec<f64> = self.successes().map(|r| r.sent + r.latency).collect();
        let mut t = end;
        while t + 1.0 <= self.seconds {
            let n = done.iter().filter(|&&d| d >= t && d < t + 1.0).count() as f64;
            if n >= 0.9 * self.rate {
                return Some(t - end);
            }
            t += 0.1;
        }
        None
    }
}
