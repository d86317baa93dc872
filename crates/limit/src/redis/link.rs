//! The connection to Redis and its health, as a small circuit breaker.
//!
//! - `Connecting`: no connection made yet. A call waits for the first attempt, at most its
//!   timeout.
//! - `Up`: calls use the connection. A call that times out or finds the connection broken
//!   (an I/O error) turns the link `Down` and drops that connection.
//! - `Down`: calls fail at once (the failure policy decides) instead of each paying the
//!   timeout, while one background task reconnects: the first attempt at once, then after
//!   `reconnect_backoff`, doubling up to `reconnect_backoff_max` (each wait less a random
//!   part of up to half, so instances do not reconnect in step). Each attempt is bounded by
//!   `connect_timeout` and ends with a `SCRIPT LOAD` round trip, so `Up` means Redis answers
//!   (and has the script) rather than merely that a TCP connection was accepted.
//!
//! In Cluster mode the cluster client reconnects to single nodes by itself; the link goes
//! `Down` only while the cluster cannot be reached at all (no seed answers), and calls to a
//! dead node fail within the timeout.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError as ClientError, Script};
use tokio::sync::watch;

use super::redact::Secrets;

/// Where the buckets live: one server, or a cluster (seeded from the URL).
pub(crate) enum Target {
    Single(Client),
    Cluster(ClusterClient),
}

/// A connection to the [`Target`]; both multiplex concurrent calls.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// The health of a Redis limiter's connection, as shown in its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// No connection has been made yet (nothing asked, or the first attempt is running).
    Connecting,
    /// Connected: decisions come from Redis.
    Up,
    /// Redis was found unreachable: calls take the failure policy at once while the
    /// connection is remade in the background.
    Down,
}

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Timeouts and backoff of a [`Link`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkTimings {
    /// Bound of every call (and of a call's wait for the first connection).
    pub(crate) timeout: Duration,
    /// Bound of one connection attempt, handshake and script load included.
    pub(crate) connect_timeout: Duration,
    /// The wait after the first failed attempt; it doubles after each one.
    pub(crate) backoff: Duration,
    /// The longest wait between attempts.
    pub(crate) backoff_max: Duration,
}

/// Why a call got no answer from Redis.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The link is down (or connecting, past the call's timeout): Redis was not asked.
    Down,
    /// Redis did not answer within the timeout.
    Timeout,
    /// Redis or the connection answered with an error (credentials scrubbed).
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Down => f.write_str("redis unreachable; reconnecting in the background"),
            CallError::Timeout => f.write_str("redis call timed out"),
            CallError::Failed(e) => f.write_str(e),
        }
    }
}

/// The connection, its state and its reconnection task.
pub(crate) struct Link {
    target: Target,
    /// The current connection and its generation (so that a late failure of an old
    /// connection cannot take down a new one); `None` unless `Up`.
    conn: RwLock<Option<(u64, Conn)>>,
    state: AtomicU8,
    /// Wakes calls waiting for the first connection.
    changed: watch::Sender<u8>,
    /// Set while a reconnection task runs (at most one runs).
    reconnecting: AtomicBool,
    generation: AtomicU64,
    /// Times the link went down.
    downs: AtomicU64,
    timings: LinkTimings,
    script: Script,
    secrets: Secrets,
    name: String,
}

impl Link {
    /// A link to `target` (nothing is connected until the first call).
    pub(crate) fn new(
        target: Target,
        timings: LinkTimings,
        script: Script,
        secrets: Secrets,
        name: String,
    ) -> Link {
        Link {
            target,
            conn: RwLock::new(None),
            state: AtomicU8::new(CONNECTING),
            changed: watch::Sender::new(CONNECTING),
            reconnecting: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            timings,
            script,
            secrets,
            name,
        }
    }

    /// The link's state now.
    pub(crate) fn state(&self) -> LinkState {
        match self.state.load(Relaxed) {
            UP => LinkState::Up,
            DOWN => LinkState::Down,
            _ => LinkState::Connecting,
        }
    }

    /// How many times the link went down.
    pub(crate) fn downs(&self) -> u64 {
        self.downs.load(Relaxed)
    }

    /// Runs the GCRA script on `key` with `args`, bounded by the timeout: the script's
    /// `(admitted, retry_after_us)`, or why Redis gave no answer.
    pub(crate) async fn run_script(
        self: &Arc<Self>,
        key: &str,
        args: [u64; 3],
    ) -> Result<(i64, i64), CallError> {
        let (generation, conn) = self.current().await?;
        let mut invocation = self.script.key(key);
        invocation.arg(args[0]).arg(args[1]).arg(args[2]);
        let call = async {
            match conn {
                Conn::Single(mut c) => invocation.invoke_async(&mut c).await,
                Conn::Cluster(mut c) => invocation.invoke_async(&mut c).await,
            }
        };
        match tokio::time::timeout(self.timings.timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                if is_connection_failure(&e) {
                    self.went_down(generation, &e.to_string());
                }
                Err(CallError::Failed(self.secrets.scrub(&e.to_string())))
            }
            Err(_) => {
                self.went_down(generation, "call timed out");
                Err(CallError::Timeout)
            }
        }
    }

    /// The connection to use, or `Down` at once when there is none; before the first
    /// connection, waits for it at most the timeout.
    async fn current(self: &Arc<Self>) -> Result<(u64, Conn), CallError> {
        loop {
            match self.state.load(Acquire) {
                UP => {
                    let guard = self.conn.read().unwrap_or_else(|e| e.into_inner());
                    if let Some((generation, conn)) = guard.as_ref() {
                        return Ok((*generation, conn.clone()));
                    }
                    // Went down between the two reads.
                    return Err(CallError::Down);
                }
                DOWN => {
                    self.start_reconnecting();
                    return Err(CallError::Down);
                }
                _ => {
                    let mut changes = self.changed.subscribe();
                    self.start_reconnecting();
                    let first = changes.wait_for(|s| *s != CONNECTING);
                    let settled = matches!(
                        tokio::time::timeout(self.timings.timeout, first).await,
                        Ok(Ok(_))
                    );
                    if !settled {
                        return Err(CallError::Down);
                    }
                }
            }
        }
    }

    /// Marks the link down after connection `generation` failed (unless a newer one is
    /// already in use) and starts reconnecting. In Cluster mode single nodes are the
    /// cluster client's to reconnect, so the link stays up.
    fn went_down(self: &Arc<Self>, generation: u64, why: &str) {
        if matches!(self.target, Target::Cluster(_)) {
            return;
        }
        {
            let mut guard = self.conn.write().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some((g, _)) if *g == generation => *guard = None,
                _ => return,
            }
            self.state.store(DOWN, Relaxed);
        }
        self.changed.send_replace(DOWN);
        self.downs.fetch_add(1, Relaxed);
        tracing::warn!(
            name = %self.name,
            error = %self.secrets.scrub(why),
            "redis rate limiter: connection lost; failing fast and reconnecting"
        );
        self.start_reconnecting();
    }

    /// Starts the reconnection task unless one runs (or there is no runtime to run it on).
    fn start_reconnecting(self: &Arc<Self>) {
        if self.reconnecting.swap(true, AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(reconnect(Arc::downgrade(self)));
            }
            Err(_) => self.reconnecting.store(false, Release),
        }
    }

    /// One connection attempt, bounded by `connect_timeout`, ending with the script loaded.
    async fn connect(&self) -> Result<Conn, String> {
        let attempt = async {
            match &self.target {
                Target::Single(client) => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(self.timings.connect_timeout);
                    let mut conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    self.script.prepare_invoke().load_async(&mut conn).await?;
                    Ok::<_, ClientError>(Conn::Single(conn))
                }
                Target::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
            }
        };
        match tokio::time::timeout(self.timings.connect_timeout, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.secrets.scrub(&e.to_string())),
            Err(_) => Err("connection attempt timed out".to_owned()),
        }
    }

    /// Installs a new connection and marks the link up.
    fn install(&self, conn: Conn) {
        let generation = self.generation.fetch_add(1, Relaxed) + 1;
        {
            let mut guard = self.conn.write().unwrap_or_else(|e| e.into_inner());
            *guard = Some((generation, conn));
            self.state.store(UP, Release);
        }
        self.changed.send_replace(UP);
    }
}

/// The reconnection task: attempts until one succeeds or the limiter is dropped, waiting
/// `backoff`, then twice that, up to `backoff_max`, between attempts. Holds the link only
/// during an attempt.
async fn reconnect(link: Weak<Link>) {
    // Clears the flag however the task ends, including dropped with its runtime (a later
    // call on another runtime then starts a new task instead of waiting for a dead one).
    let _running = Running(link.clone());
    let mut wait = Duration::ZERO;
    loop {
        if !wait.is_zero() {
            tokio::time::sleep(jittered(wait)).await;
        }
        let Some(link) = link.upgrade() else {
            return;
        };
        match link.connect().await {
            Ok(conn) => {
                let was = link.state.load(Relaxed);
                link.install(conn);
                if was == DOWN {
                    tracing::info!(name = %link.name, "redis rate limiter: reconnected");
                }
                drop(_running);
                // A failure reported between the install and the flag's reset found a
                // task still running; make sure one runs now.
                if link.state.load(Acquire) == DOWN {
                    link.start_reconnecting();
                }
                return;
            }
            Err(e) => {
                if link.state.swap(DOWN, AcqRel) != DOWN {
                    link.changed.send_replace(DOWN);
                    link.downs.fetch_add(1, Relaxed);
                    tracing::warn!(name = %link.name, error = %e, "redis rate limiter: cannot connect; failing fast and retrying");
                } else {
                    tracing::debug!(name = %link.name, error = %e, ?wait, "redis rate limiter: reconnection attempt failed");
                }
                let t = link.timings;
                wait = if wait.is_zero() {
                    t.backoff
                } else {
                    wait.saturating_mul(2)
                }
                .min(t.backoff_max);
            }
        }
    }
}

/// `wait` less a random part of up to its half, so that instances that lost Redis at the
/// same moment do not all reconnect in the same millisecond (the wait never grows).
fn jittered(wait: Duration) -> Duration {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    let half = u64::try_from(wait.as_nanos() / 2).unwrap_or(u64::MAX);
    wait - Duration::from_nanos(random % half.max(1))
}

/// Marks the reconnection task as running while it lives.
struct Running(Weak<Link>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(link) = self.0.upgrade() {
            link.reconnecting.store(false, Release);
        }
    }
}

/// Whether `e` means the connection is unusable (rather than an error answer from a
/// working server, such as a script error).
fn is_connection_failure(e: &ClientError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()
}
