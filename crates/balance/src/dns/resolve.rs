//! The resolver: a name and a port in, socket addresses out.

use std::future::Future;
use std::net::SocketAddr;

use tower_prism_core::BoxError;

/// Resolves a host name to the socket addresses of its endpoints. The refresh task of
/// [`DnsDiscovery`](crate::DnsDiscovery) calls it every interval, bounded by the config's
/// `timeout`; a resolver that fails, hangs or panics costs that one resolution.
///
/// [`TokioResolver`] (the system resolver) is the default. Implement this trait for another
/// resolver crate, or for a resolver a test controls:
///
/// ```
/// use std::net::SocketAddr;
/// use tower_prism_balance::Resolve;
///
/// /// Always answers the same two addresses.
/// struct Fixed;
///
/// impl Resolve for Fixed {
///     async fn resolve(&self, _host: &str, port: u16) -> Result<Vec<SocketAddr>, tower::BoxError> {
///         Ok(vec![SocketAddr::from(([10, 0, 0, 1], port)), SocketAddr::from(([10, 0, 0, 2], port))])
///     }
/// }
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The addresses `host` has now, each with `port` (a resolver that knows better, as an
    /// SRV lookup does, may answer other ports). Duplicates are ignored; an empty answer is
    /// treated as a failure.
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = Result<Vec<SocketAddr>, BoxError>> + Send;
}

/// The system resolver, through tokio's [`lookup_host`](tokio::net::lookup_host)
/// (`getaddrinfo` on a blocking thread): it reads `/etc/hosts` and `/etc/resolv.conf` as
/// every other program on the machine does, Kubernetes' search domains included. It
/// returns every A and AAAA record of the name.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct TokioResolver;

impl TokioResolver {
    /// The system resolver.
    pub fn new() -> Self {
        TokioResolver
    }
}

impl Resolve for TokioResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, BoxError> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}
