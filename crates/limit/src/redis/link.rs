//! The connection to Redis and its health, as a small circuit breaker.
//!
//! - `Connecting`: no connection made yet. A call waits for the first attempt, at most its
//!   timeout.
//! - `Up`: calls use the connection. A call that times out or finds the connection broken
//!   (an I/O error) turns the link `Down` and drops that connection; but a connection that
//!   had answered and is found closed (Redis' idle `timeout`, a proxy's, `CLIENT KILL`) is
//!   made again at once, calls waiting for it as for the first one, and the call that
//!   found it is asked again within its timeout: a server closing idle connections is no
//!   outage. If the new connection cannot be made in time, the link goes `Down`.
//! - `Down`: calls fail at once (the failure policy decides) instead of each paying the
//!   timeout, while one background task reconnects: the first attempt at once, then after
//!   `reconnect_backoff`, doubling up to `reconnect_backoff_max` (each wait less a random
//!   part of up to half, so instances do not reconnect in step). Each attempt is bounded by
//!   `connect_timeout` and ends with a `SCRIPT LOAD` round trip, so `Up` means Redis answers
//!   (and has the script) rather than merely that a TCP connection was accepted.
//! - `Probing`: a server that answered the reconnection but then let a call time out (too
//!   slow for `timeout`, or paused as a failover pauses writes), or answered `READONLY` (a
//!   replica behind the address), is a strike. After a reconnection following a strike one
//!   call at a time goes to Redis, the others fail at once, until one is answered (`Up`);
//!   another strike makes the link `Down` again, and each strike in a row doubles the wait
//!   before the next reconnection. So such a server costs one call's timeout per
//!   reconnection, not every call's.
//! - A call waiting for the first connection that runs out of time marks the link `Down`:
//!   the calls after it fail at once instead of each waiting its timeout while the first
//!   attempt runs (up to `connect_timeout`).
//!
//! In Cluster mode the cluster client reconnects to single nodes by itself, so one call's
//! failure says little: a dead node fails the keys it serves while the others answer. The
//! link goes `Down` when the whole cluster is gone: [`CLUSTER_DOWN_AFTER`] calls in a row
//! found no node (a connection failure, a timeout, `CLUSTERDOWN`, no connection to the
//! key's node) with no call answered in between, over at least the call timeout. Until
//! then, calls to a dead node fail within the timeout (at once, once the client knows the
//! node is gone); after, every call fails at once instead of each making the client try
//! every dead node again, and the background task remakes the cluster connection as it
//! remakes a single server's (no probation: a call on a node still dead says nothing of
//! the others).

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError as ClientError, Script};
use tokio::sync::watch;
use tokio::time::Instant;

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
    /// Reconnected after Redis let a call time out (or answered `READONLY`): one call at a
    /// time goes to Redis, the others take the failure policy at once, until one is
    /// answered.
    Probing,
}

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;
const PROBING: u8 = 3;

/// The most strikes counted: the wait before a reconnection stops doubling long before.
const MAX_STRIKES: u32 = 32;

/// Cluster mode: calls in a row that found no node, none answered in between, that take
/// the link down (when they span at least the call timeout). Not one: with one node of
/// three dead, a third of the calls fail while the cluster serves the rest.
const CLUSTER_DOWN_AFTER: u32 = 5;

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
    /// Calls in a row that Redis let time out or answered `READONLY` on a fresh connection
    /// (see the module docs); 0 once a call is answered.
    strikes: AtomicU32,
    /// Set while `Probing` and a call is out to Redis.
    probe_out: AtomicBool,
    /// A call was answered on the connection in use (cleared when one is installed).
    answered_here: AtomicBool,
    /// Cluster mode: calls in a row that found no node; 0 once a call is answered.
    cluster_failures: AtomicU32,
    /// Cluster mode: when the first of those failed, in nanoseconds since `epoch` plus one
    /// (0 while none has).
    cluster_failing_since: AtomicU64,
    /// The origin of `cluster_failing_since` (tokio's clock, so paused time drives it).
    epoch: Instant,
    generation: AtomicU64,
    /// Times the link went down.
    downs: AtomicU64,
    timings: LinkTimings,
    /// The script's source, for `SCRIPT LOAD`, and its digest, for `EVALSHA`.
    source: &'static str,
    script: Script,
    secrets: Secrets,
    name: String,
}

impl Link {
    /// A link to `target` running the Lua script `source` (nothing is connected until the
    /// first call).
    pub(crate) fn new(
        target: Target,
        timings: LinkTimings,
        source: &'static str,
        secrets: Secrets,
        name: String,
    ) -> Link {
        Link {
            target,
            conn: RwLock::new(None),
            state: AtomicU8::new(CONNECTING),
            changed: watch::Sender::new(CONNECTING),
            reconnecting: AtomicBool::new(false),
            strikes: AtomicU32::new(0),
            probe_out: AtomicBool::new(false),
            answered_here: AtomicBool::new(false),
            cluster_failures: AtomicU32::new(0),
            cluster_failing_since: AtomicU64::new(0),
            epoch: Instant::now(),
            generation: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            timings,
            source,
            script: Script::new(source),
            secrets,
            name,
        }
    }

    /// The link's state now.
    pub(crate) fn state(&self) -> LinkState {
        match self.state.load(Relaxed) {
            UP => LinkState::Up,
            DOWN => LinkState::Down,
            PROBING => LinkState::Probing,
            _ => LinkState::Connecting,
        }
    }

    /// How many times the link went down.
    pub(crate) fn downs(&self) -> u64 {
        self.downs.load(Relaxed)
    }

    /// Runs the GCRA script on `key` with `args`, bounded by the timeout (the wait for a
    /// first connection included): the script's `(admitted, retry_after_us)`, or why Redis
    /// gave no answer.
    pub(crate) async fn run_script(
        self: &Arc<Self>,
        key: &str,
        args: [u64; 3],
    ) -> Result<(i64, i64), CallError> {
        if tokio::runtime::Handle::try_current().is_err() {
            // The timeouts below need tokio's timer; without a runtime they would panic.
            return Err(CallError::Failed(
                "the redis rate limiter needs a tokio runtime (with time enabled)".to_owned(),
            ));
        }
        let deadline = Instant::now() + self.timings.timeout;
        let mut reopened = false;
        let (generation, result, probed) = loop {
            let (generation, conn, probe) = self.current(deadline).await?;
            // Whether this connection had answered a call before this one.
            let proven = self.answered_here.load(Relaxed);
            let call = async {
                match conn {
                    Conn::Single(mut c) => self.eval(&mut c, key, args).await,
                    Conn::Cluster(mut c) => self.eval(&mut c, key, args).await,
                }
            };
            let result = tokio::time::timeout_at(deadline, call).await;
            // The probe slot goes back whatever the outcome (and if this call is dropped).
            let probed = probe.is_some();
            drop(probe);
            match &result {
                // A connection that had answered, found closed (Redis' idle `timeout`, a
                // proxy's, `CLIENT KILL`): no outage, the request never left. Once per call,
                // made again and asked again within the same timeout, as redis-rs'
                // `ConnectionManager` does; a server really gone fails the reconnection.
                Ok(Err(e)) if proven && !probed && !reopened && self.is_stale(e) => {
                    reopened = true;
                    self.reopen(generation);
                }
                _ => break (generation, result, probed),
            }
        };
        match result {
            Ok(Ok(answer)) => {
                self.answered(probed);
                check_answer(answer, args[2])
            }
            Ok(Err(e)) => {
                if e.kind() == ErrorKind::ReadOnly {
                    self.went_down(generation, &e.to_string(), true);
                } else if is_connection_failure(&e)
                    || (matches!(self.target, Target::Cluster(_)) && is_no_node(&e))
                {
                    self.went_down(generation, &e.to_string(), false);
                } else {
                    // An error answer from a working server.
                    self.answered(probed);
                }
                Err(CallError::Failed(self.secrets.scrub(&e.to_string())))
            }
            Err(_) => {
                self.went_down(generation, "call timed out", true);
                Err(CallError::Timeout)
            }
        }
    }

    /// `EVALSHA` of the script, loaded again on `NOSCRIPT` (a restarted or flushed server).
    async fn eval(
        &self,
        conn: &mut impl ::redis::aio::ConnectionLike,
        key: &str,
        args: [u64; 3],
    ) -> Result<(i64, i64), ClientError> {
        let mut evalsha = ::redis::cmd("EVALSHA");
        evalsha
            .arg(self.script.get_hash())
            .arg(1)
            .arg(key)
            .arg(&args[..]);
        match evalsha.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                self.load(conn).await?;
                evalsha.query_async(conn).await
            }
            answer => answer,
        }
    }

    /// `SCRIPT LOAD`, checking the digest the server gives back (redis-rs' own load only
    /// asserts it in debug builds, panicking on a server that answers another).
    async fn load(&self, conn: &mut impl ::redis::aio::ConnectionLike) -> Result<(), ClientError> {
        let digest: String = ::redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.source)
            .query_async(conn)
            .await?;
        if digest.eq_ignore_ascii_case(self.script.get_hash()) {
            Ok(())
        } else {
            Err(ClientError::from((
                ErrorKind::ResponseError,
                "SCRIPT LOAD answered another digest than the script's",
                format!("{digest} instead of {}", self.script.get_hash()),
            )))
        }
    }

    /// A call was answered (a decision or an error answer): the strikes end, and a probe
    /// (`probed`) that was answered makes the link `Up`.
    fn answered(&self, probed: bool) {
        if self.strikes.load(Relaxed) != 0 {
            self.strikes.store(0, Relaxed);
        }
        if !self.answered_here.load(Relaxed) {
            self.answered_here.store(true, Relaxed);
        }
        if self.cluster_failures.load(Relaxed) != 0 {
            self.cluster_failures.store(0, Relaxed);
            self.cluster_failing_since.store(0, Relaxed);
        }
        if probed
            && self
                .state
                .compare_exchange(PROBING, UP, AcqRel, Acquire)
                .is_ok()
        {
            self.changed.send_replace(UP);
            tracing::info!(name = %self.name, "redis rate limiter: answering again");
        }
    }

    /// The connection to use, or `Down` at once when there is none; before the first
    /// connection, waits for it until `deadline` (and marks the link down if it is not
    /// made by then). While `Probing`, one call at a time gets the connection, with the
    /// probe slot it must give back.
    async fn current(
        self: &Arc<Self>,
        deadline: Instant,
    ) -> Result<(u64, Conn, Option<ProbeOut>), CallError> {
        loop {
            match self.state.load(Acquire) {
                UP => {
                    let (generation, conn) = self.installed()?;
                    return Ok((generation, conn, None));
                }
                PROBING => {
                    if self.probe_out.swap(true, AcqRel) {
                        return Err(CallError::Down);
                    }
                    let probe = ProbeOut(self.clone());
                    let (generation, conn) = self.installed()?;
                    return Ok((generation, conn, Some(probe)));
                }
                DOWN => {
                    self.start_reconnecting();
                    return Err(CallError::Down);
                }
                _ => {
                    let mut changes = self.changed.subscribe();
                    self.start_reconnecting();
                    let first = changes.wait_for(|s| *s != CONNECTING);
                    let settled =
                        matches!(tokio::time::timeout_at(deadline, first).await, Ok(Ok(_)));
                    if !settled {
                        self.first_connection_late();
                        return Err(CallError::Down);
                    }
                }
            }
        }
    }

    /// The installed connection and its generation; `Down` if it went between two reads.
    fn installed(&self) -> Result<(u64, Conn), CallError> {
        let guard = self.conn.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some((generation, conn)) => Ok((*generation, conn.clone())),
            None => Err(CallError::Down),
        }
    }

    /// Tells the calls waiting for a first connection, and the snapshot's count, that the
    /// link just went down (the caller has set the state).
    fn announce_down(&self) {
        self.changed.send_replace(DOWN);
        self.downs.fetch_add(1, Relaxed);
    }

    /// A call's wait for the first connection ran out: the calls after it fail at once
    /// until the attempt ends (it goes on in the background).
    fn first_connection_late(&self) {
        if self
            .state
            .compare_exchange(CONNECTING, DOWN, AcqRel, Acquire)
            .is_ok()
        {
            self.announce_down();
            tracing::warn!(
                name = %self.name,
                "redis rate limiter: no connection within the call's timeout; failing fast while connecting"
            );
        }
    }

    /// Whether `e` says a single server's connection was closed under the call (not a
    /// timeout: a server too slow is no closed connection).
    fn is_stale(&self, e: &ClientError) -> bool {
        matches!(self.target, Target::Single(_))
            && !e.is_timeout()
            && (e.is_connection_dropped() || e.is_io_error())
    }

    /// Drops connection `generation`, found closed, and makes a new one: calls wait for it
    /// (as for the first connection, within their timeout) rather than take the failure
    /// policy, and a failed attempt takes the link down as any would. Nothing is counted as
    /// an outage.
    fn reopen(self: &Arc<Self>, generation: u64) {
        {
            let mut guard = self.conn.write().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some((g, _)) if *g == generation => *guard = None,
                // replaced already, or another call reopened it
                _ => return,
            }
            self.state.store(CONNECTING, Relaxed);
        }
        self.changed.send_replace(CONNECTING);
        tracing::debug!(name = %self.name, "redis rate limiter: connection closed by the server; reconnecting");
        self.start_reconnecting();
    }

    /// Marks the link down after connection `generation` failed (unless a newer one is
    /// already in use) and starts reconnecting; `strike`: Redis answered the connection
    /// but not the call in time, or answered `READONLY`. In Cluster mode single nodes are
    /// the cluster client's to reconnect: the link goes down only when the whole cluster
    /// seems gone (see [`cluster_call_failed`](Self::cluster_call_failed)).
    fn went_down(self: &Arc<Self>, generation: u64, why: &str, strike: bool) {
        if matches!(self.target, Target::Cluster(_)) {
            if self.cluster_call_failed(generation) {
                self.take_down(generation, why, false);
            }
            return;
        }
        self.take_down(generation, why, strike);
    }

    /// Counts a Cluster-mode call on connection `generation` that found no node: whether
    /// the link should go down, [`CLUSTER_DOWN_AFTER`] such calls in a row, with no call
    /// answered in between, spanning at least the call timeout (see the module docs).
    fn cluster_call_failed(&self, generation: u64) -> bool {
        if self.generation.load(Relaxed) != generation {
            return false; // a late failure of a connection already replaced
        }
        let now = u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let failures = self
            .cluster_failures
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)))
            .map_or(u32::MAX, |n| n.saturating_add(1));
        if failures == 1 {
            self.cluster_failing_since.store(now, Relaxed);
            return false;
        }
        // 0: the first failure of this run has not stamped its time yet.
        let since = self.cluster_failing_since.load(Relaxed);
        let timeout = u64::try_from(self.timings.timeout.as_nanos()).unwrap_or(u64::MAX);
        failures >= CLUSTER_DOWN_AFTER && since != 0 && now.saturating_sub(since) >= timeout
    }

    /// Takes the link down after connection `generation` failed (unless a newer one is
    /// already in use) and starts reconnecting. A connection lost before it answered a
    /// single call is a strike too: a server whose every answer breaks the connection (a
    /// garbled reply) would otherwise be reconnected to for every call, with no backoff.
    fn take_down(self: &Arc<Self>, generation: u64, why: &str, strike: bool) {
        let strike = strike || !self.answered_here.load(Relaxed);
        {
            let mut guard = self.conn.write().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some((g, _)) if *g == generation => *guard = None,
                _ => return,
            }
            if strike {
                let _ = self.strikes.fetch_update(Relaxed, Relaxed, |n| {
                    Some(n.saturating_add(1).min(MAX_STRIKES))
                });
            } else {
                self.strikes.store(0, Relaxed);
            }
            self.state.store(DOWN, Relaxed);
        }
        self.announce_down();
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
                    self.load(&mut conn).await?;
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

    /// Installs a new connection and marks the link up, or probing after a strike.
    fn install(&self, conn: Conn) {
        let generation = self.generation.fetch_add(1, Relaxed) + 1;
        let state = if self.strikes.load(Relaxed) == 0 {
            UP
        } else {
            PROBING
        };
        {
            let mut guard = self.conn.write().unwrap_or_else(|e| e.into_inner());
            *guard = Some((generation, conn));
            self.answered_here.store(false, Relaxed);
            self.cluster_failures.store(0, Relaxed);
            self.cluster_failing_since.store(0, Relaxed);
            self.probe_out.store(false, Release);
            self.state.store(state, Release);
        }
        self.changed.send_replace(state);
    }
}

/// The reconnection task: attempts until one succeeds or the limiter is dropped, waiting
/// `backoff`, then twice that, up to `backoff_max`, between attempts. Holds the link only
/// during an attempt.
async fn reconnect(link: Weak<Link>) {
    // Clears the flag however the task ends, including dropped with its runtime (a later
    // call on another runtime then starts a new task instead of waiting for a dead one).
    let _running = Running(link.clone());
    // At once, unless Redis keeps striking: then the wait doubles with each strike in a row.
    let mut wait = match link.upgrade() {
        Some(link) => after_strikes(link.strikes.load(Relaxed), link.timings),
        None => return,
    };
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
                    link.announce_down();
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

/// The wait before reconnecting after `strikes` strikes in a row: none for the first,
/// then `backoff`, doubling up to `backoff_max`.
fn after_strikes(strikes: u32, t: LinkTimings) -> Duration {
    match strikes {
        0 | 1 => Duration::ZERO,
        n => t
            .backoff
            .saturating_mul(1 << (n - 2).min(20))
            .min(t.backoff_max),
    }
}

/// An answer the script cannot give (more tokens granted than `asked`, fewer than none, a
/// negative wait) is a backend error, so the failure policy decides rather than a made-up
/// decision.
fn check_answer((granted, retry_us): (i64, i64), asked: u64) -> Result<(i64, i64), CallError> {
    if u64::try_from(granted).is_ok_and(|g| g <= asked) && retry_us >= 0 {
        Ok((granted, retry_us))
    } else {
        Err(CallError::Failed(format!(
            "unexpected answer from the rate-limit script: [{granted}, {retry_us}]"
        )))
    }
}

/// The probe slot of a `Probing` link, held by the call out to Redis and given back when
/// dropped: when the call settles, or when it is cancelled (so a dropped probe never leaves
/// the link without one).
struct ProbeOut(Arc<Link>);

impl Drop for ProbeOut {
    fn drop(&mut self) {
        self.0.probe_out.store(false, Release);
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

/// Whether `e`, from the cluster client, means it found no node for the call: no
/// connection to the key's node, or the cluster (or the key's master) answering that it
/// is down.
fn is_no_node(e: &ClientError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ClusterConnectionNotFound | ErrorKind::ClusterDown | ErrorKind::MasterDown
    )
}
