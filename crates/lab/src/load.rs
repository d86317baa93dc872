//! The open-loop load generator: requests arrive at the scenario's offered rate whatever
//! the stack answers, each with the client's 1 s deadline, and every one is recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceExt};
use tower_prism::retry::ReplayBody;

use crate::rng::{Draw, Rng};
use crate::scenario::{Scenario, DEADLINE};
use crate::stacks::ResilienceRejected;
use crate::upstream::{Refused, Request, Response, CLIENT_HEADER};

/// The service a stack gives the load generator.
pub type Client = BoxCloneService<Request, Response, BoxError>;

/// How one client request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer within the deadline.
    Ok,
    /// An error or a non-2xx answer within the deadline, with its reason (see [`reason`]).
    Failed(&'static str),
    /// No answer within the deadline.
    TimedOut,
}

/// One finished client request.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// When it was sent, in seconds since the start.
    pub sent: f64,
    /// How long it took (the deadline for a timeout), in seconds.
    pub latency: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// The client that sent it (well-behaved clients are below the key flood's count).
    pub client: u32,
}

/// What the generator saw.
#[derive(Debug, Default)]
pub struct Run {
    /// Requests sent.
    pub sent: u64,
    /// The finished ones.
    pub records: Vec<Record>,
}

/// Why a call failed, in a word: the peers' own errors by type, tower-prism's by
/// [`ErrorKind`](tower_prism::ErrorKind), and the upstream's refusal.
pub fn reason(error: BoxError) -> &'static str {
    let mut cursor: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    while let Some(e) = cursor {
        if e.is::<tower::load_shed::error::Overloaded>() {
            return "overloaded (load_shed)";
        }
        if e.is::<tower::timeout::error::Elapsed>() {
            return "timeout";
        }
        if e.is::<Refused>() {
            return "refused";
        }
        if let Some(rejected) = e.downcast_ref::<ResilienceRejected>() {
            return rejected.reason();
        }
        cursor = e.source();
    }
    tower_prism::Error::from_box(error).kind().as_str()
}

/// The most bytes a request body may have and still be replayed.
const REPLAY_LIMIT: usize = 1024;

/// How long after the load stops the generator waits for requests still in flight; the
/// client deadline makes this more than enough, so any left are hung.
const GRACE: Duration = Duration::from_secs(5);

fn request(client: u32) -> Request {
    http::Request::get("http://upstream/")
        .header(CLIENT_HEADER, client)
        .body(ReplayBody::new(String::new(), REPLAY_LIMIT))
        .expect("a valid request")
}

/// Drives `client` with the scenario's load (`capacity` requests/s at 1x) and records
/// every request. Call inside a runtime with a paused clock.
pub async fn drive(scenario: &Scenario, capacity: f64, client: Client) -> Run {
    let records = Arc::new(Mutex::new(Vec::new()));
    let finished = Arc::new(AtomicU64::new(0));
    let mut rng = Rng::new(scenario.seed ^ 0x10AD);
    let start = Instant::now();
    let total = scenario.duration.as_secs_f64();
    let flood = scenario.key_flood;
    let mut next_key = flood.map_or(0, |f| f.clients);
    let mut sent = 0u64;
    let mut at = 0.0f64;
    loop {
        let fraction = at / total;
        let good_rate = capacity * scenario.load.at(fraction);
        let abuse_rate = flood.map_or(0.0, |f| f.abuser * capacity);
        let rate = good_rate + abuse_rate;
        at += rng.exponential(1.0 / rate);
        if at >= total {
            break;
        }
        let client_id = match flood {
            Some(_) if rng.chance(abuse_rate / rate) => {
                next_key += 1;
                next_key
            }
            Some(f) => (rng.unit() * f64::from(f.clients)) as u32,
            None => 0,
        };
        tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
        sent += 1;
        let call = client.clone().oneshot(request(client_id));
        let records = records.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let outcome = match tokio::time::timeout(DEADLINE, call).await {
                Ok(Ok(response)) if response.status().is_success() => Outcome::Ok,
                Ok(Ok(response)) if response.status().as_u16() == 503 => Outcome::Failed("503"),
                Ok(Ok(_)) => Outcome::Failed("5xx"),
                Ok(Err(error)) => Outcome::Failed(reason(error)),
                Err(_) => Outcome::TimedOut,
            };
            let record = Record {
                sent: (began - start).as_secs_f64(),
                latency: began.elapsed().as_secs_f64(),
                outcome,
                client: client_id,
            };
            records.lock().unwrap().push(record);
            finished.fetch_add(1, Ordering::Relaxed);
        });
    }
    let waited = Instant::now();
    while finished.load(Ordering::Relaxed) < sent && waited.elapsed() < GRACE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let records = std::mem::take(&mut *records.lock().unwrap());
    Run { sent, records }
}
