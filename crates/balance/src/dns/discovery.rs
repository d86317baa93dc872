//! Starting DNS discovery on a balancer, and the handle that keeps it running.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tower_prism_core::internal::lock;
use tower_prism_core::ConfigError;

use super::config::DnsConfig;
use super::metrics::DnsMetrics;
use super::refresh::{Control, Refresh};
use super::resolve::{Resolve, TokioResolver};
use crate::error::Error;
use crate::BalanceHandle;

/// Endpoints from DNS: resolves [`DnsConfig::host`] every [`DnsConfig::interval`] and makes
/// a balancer's endpoints follow the answers.
///
/// - An address that appears becomes an endpoint, keyed by its [`SocketAddr`] and made by
///   the `make_endpoint` function (a hyper client bound to that address, say).
/// - An address that disappears is removed; requests in flight to it complete, as with
///   [`BalanceHandle::remove`].
/// - A resolution that fails, times out ([`DnsConfig::timeout`]), panics or answers no
///   address at all keeps the last good set (a warning on the first failure of an outage,
///   and the counts in [`DnsSnapshot`]). A name that is really gone for good (a Kubernetes
///   service scaled to zero answers nothing) therefore keeps its last endpoints: outlier
///   ejection takes dead ones out of rotation.
/// - Endpoints added through the handle by other means are left alone: not replaced when
///   DNS answers their address, not removed when it stops.
///
/// [`spawn`](Self::spawn) starts the refresh task on the current tokio runtime and returns a
/// [`DnsHandle`]; the task runs until the balancer or every clone of the handle is dropped
/// (it ends at once). Endpoints it added stay.
///
/// ```
/// use std::convert::Infallible;
/// use std::net::SocketAddr;
/// use std::time::Duration;
/// use tower::{service_fn, Service, ServiceExt};
/// use tower_prism_balance::{Balance, BalanceConfig, DnsConfig, DnsDiscovery};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
/// // an endpoint per address; a real one would be a client connected to `addr`
/// let endpoint = |addr: SocketAddr| service_fn(move |req: u32| async move { Ok::<_, Infallible>((addr, req)) });
/// let mut balance = Balance::new(BalanceConfig::default())?;
/// let dns = DnsDiscovery::new(DnsConfig::new("localhost", 8080), endpoint)
///     .spawn(balance.handle())?;
/// // the first resolution runs at once; wait for it before the first call
/// tokio::time::timeout(Duration::from_secs(5), dns.resolved()).await?;
/// assert!(!dns.snapshot().addresses.is_empty());
///
/// let (addr, _) = balance.ready().await?.call(7).await?;
/// assert!(addr.ip().is_loopback() && addr.port() == 8080);
/// # Ok(()) }
/// ```
pub struct DnsDiscovery<F, R = TokioResolver> {
    config: DnsConfig,
    make_endpoint: F,
    resolver: R,
}

impl<F, R: fmt::Debug> fmt::Debug for DnsDiscovery<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("config", &self.config)
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl<F> DnsDiscovery<F> {
    /// Discovery of `config.host`, with the system resolver ([`TokioResolver`]), making each
    /// endpoint with `make_endpoint(addr)`.
    pub fn new(config: DnsConfig, make_endpoint: F) -> Self {
        DnsDiscovery {
            config,
            make_endpoint,
            resolver: TokioResolver,
        }
    }
}

impl<F, R> DnsDiscovery<F, R> {
    /// Resolves with `resolver` instead of the system resolver: another resolver crate, or
    /// one a test controls.
    pub fn resolver<R2: Resolve>(self, resolver: R2) -> DnsDiscovery<F, R2> {
        DnsDiscovery {
            config: self.config,
            make_endpoint: self.make_endpoint,
            resolver,
        }
    }

    /// Validates the config and starts the refresh task on the current tokio runtime; the
    /// first resolution runs at once. The task stops when the balancer is dropped or when
    /// every clone of the returned handle is.
    pub fn spawn<S>(self, balancer: &BalanceHandle<SocketAddr, S>) -> Result<DnsHandle, Error>
    where
        R: Resolve,
        F: Fn(SocketAddr) -> S + Send + Sync + 'static,
        S: Send + 'static,
    {
        self.config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
            task: "dns discovery",
        })?;
        let control = Arc::new(Control {
            config: Mutex::new(self.config),
            wake: Notify::new(),
        });
        let (status, snapshots) = watch::channel(DnsSnapshot::default());
        let refresh = Refresh {
            balancer: Arc::downgrade(&balancer.shared),
            control: control.clone(),
            resolver: self.resolver,
            make_endpoint: self.make_endpoint,
            status,
            metrics: DnsMetrics::new(balancer.name()),
        };
        let task = runtime.spawn(refresh.run()).abort_handle();
        balancer.shared.tasks.add(task.clone());
        Ok(DnsHandle {
            inner: Arc::new(Inner {
                name: balancer.name().into(),
                control,
                snapshots,
                task,
            }),
        })
    }
}

/// What DNS discovery has done so far: plain data for health endpoints and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsSnapshot {
    /// The endpoints this discovery keeps in the balancer (the last good answer, less any
    /// address refused or held by an endpoint added by other means), sorted.
    pub addresses: Vec<SocketAddr>,
    /// Resolutions that answered at least one address.
    pub resolutions: u64,
    /// Resolutions that failed, timed out, panicked or answered no address.
    pub failures: u64,
    /// Failures since the last good resolution.
    pub consecutive_failures: u32,
    /// Why the last resolution failed; `None` when it succeeded.
    pub last_error: Option<String>,
    /// Addresses of the last good answer left out because the balancer was full: it holds
    /// at most [`MAX_ENDPOINTS`](crate::MAX_ENDPOINTS), endpoints added by other means
    /// included. 0 when every address fits.
    pub over_capacity: usize,
}

/// Keeps a [`DnsDiscovery`] running, and inspects and reconfigures it. Cloneable; the
/// refresh task stops when the last clone is dropped (the endpoints it added stay).
#[derive(Clone)]
#[must_use = "DNS discovery stops when its handle is dropped"]
pub struct DnsHandle {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    control: Arc<Control>,
    snapshots: watch::Receiver<DnsSnapshot>,
    task: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for DnsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsHandle")
            .field("name", &self.inner.name)
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}

impl DnsHandle {
    /// The balancer's name, the `balancer` field of the discovery's events.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// What the discovery has done so far.
    pub fn snapshot(&self) -> DnsSnapshot {
        self.inner.snapshots.borrow().clone()
    }

    /// The config in effect.
    pub fn config(&self) -> DnsConfig {
        lock(&self.inner.control.config).clone()
    }

    /// Applies a new config (a new host, port, interval or timeout) and resolves with it at
    /// once; endpoints the old host had and the new one has not are removed. A config that
    /// [`DnsConfig::validate`] refuses changes nothing.
    pub fn reconfigure(&self, config: &DnsConfig) -> Result<(), ConfigError> {
        config.validate()?;
        *lock(&self.inner.control.config) = config.clone();
        tracing::info!(balancer = %self.inner.name, host = %config.host, port = config.port, "dns discovery reconfigured");
        self.refresh();
        Ok(())
    }

    /// Resolves now instead of at the end of the interval (after the resolution under way,
    /// if one is).
    pub fn refresh(&self) {
        self.inner.control.wake.notify_one();
    }

    /// Waits until a resolution has answered at least one address (at once if one already
    /// has): `true` then, `false` if the discovery stopped first because the balancer was
    /// dropped. It waits as long as DNS fails; bound it with a timeout.
    pub async fn resolved(&self) -> bool {
        let mut snapshots = self.inner.snapshots.clone();
        let resolved = snapshots.wait_for(|s| s.resolutions > 0).await.is_ok();
        resolved
    }
}
