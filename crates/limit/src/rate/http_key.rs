//! [`HttpKey`]: picks an HTTP request's bucket from a [`KeyConfig`], with no allocation.
//!
//! Every part is fed straight into the limiter's hasher, so a key is always one `u64`,
//! however long the header or path it came from.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{HeaderName, Request};
use tower_prism_core::config::ConfigError;

use super::forwarded::{client_ip, header_name};
use super::key_config::{ClientIpKey, ForwardedHeader, KeyConfig, KeyPart, MissingHeader};
use super::limiter::RateLimiter;
use super::policy::KeyFn;

/// A key extractor for `http::Request<B>` built from a [`KeyConfig`]: peer IP, client IP
/// behind trusted proxies, a header, the route or a path prefix, or a combination.
/// Without a config it keys nothing (every request draws from the shared bucket).
///
/// ```
/// use std::net::SocketAddr;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
/// use tower_prism_limit::rate::{HttpKey, KeyConfig, KeyPart, HeaderKey, RateLimitConfig, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let config = RateLimitConfig::builder().rate(1).build()?;
/// let key = HttpKey::new(&KeyConfig::new(KeyPart::Header(HeaderKey::new("x-api-key"))))?;
/// let mut svc = ServiceBuilder::new()
///     .layer(RateLimitLayer::from_config(&config)?.key(key))
///     .service(service_fn(|_req: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     }));
/// let call = |api_key: &'static str| http::Request::builder().header("x-api-key", api_key).body(()).unwrap();
///
/// assert!(svc.ready().await?.call(call("alice")).await.is_ok());
/// assert!(svc.ready().await?.call(call("bob")).await.is_ok()); // a bucket of its own
/// assert!(svc.ready().await?.call(call("alice")).await.is_err()); // alice's is empty
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpKey {
    // `None`: unkeyed. Shared by every clone of the service.
    parts: Option<Arc<[Part]>>,
}

/// A [`KeyPart`] ready to read: header names parsed once.
#[derive(Debug)]
enum Part {
    PeerIp,
    ClientIp {
        trusted: usize,
        header: ForwardedHeader,
    },
    Header {
        name: HeaderName,
        missing: MissingHeader,
    },
    Route,
    Path,
    PathPrefix(usize),
}

impl HttpKey {
    /// An extractor for `config`, validated; the error names the field (`key.header`).
    pub fn new(config: &KeyConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let parts = config
            .parts()
            .iter()
            .map(Part::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpKey {
            parts: Some(parts.into()),
        })
    }

    /// An extractor for an optional config: `None` keys nothing.
    pub fn from_config(config: Option<&KeyConfig>) -> Result<Self, ConfigError> {
        config.map_or_else(|| Ok(HttpKey::default()), HttpKey::new)
    }

    /// Whether requests are keyed at all.
    pub fn is_keyed(&self) -> bool {
        self.parts.is_some()
    }
}

impl Part {
    fn from_config(part: &KeyPart) -> Result<Self, ConfigError> {
        Ok(match part {
            KeyPart::PeerIp => Part::PeerIp,
            KeyPart::ClientIp(ClientIpKey {
                trusted_proxies,
                header,
            }) => Part::ClientIp {
                trusted: usize::from(*trusted_proxies),
                header: *header,
            },
            KeyPart::Header(header) => Part::Header {
                name: HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| {
                    ConfigError::new("key.header", &header.name, "not a valid HTTP header name")
                })?,
                missing: header.missing,
            },
            KeyPart::Route => Part::Route,
            KeyPart::Path => Part::Path,
            KeyPart::PathPrefix(n) => Part::PathPrefix(usize::from(*n)),
        })
    }
}

impl<B> KeyFn<Request<B>> for HttpKey {
    #[inline(always)]
    fn bucket(&self, request: &Request<B>, limiter: &RateLimiter) -> Option<u64> {
        // Unkeyed: one branch in the caller; the hashing of a keyed request out of line.
        let parts = self.parts.as_deref()?;
        Some(hash_request(parts, request, limiter))
    }
}

/// The bucket of `request` under `parts`.
#[inline(never)]
fn hash_request<B>(parts: &[Part], request: &Request<B>, limiter: &RateLimiter) -> u64 {
    limiter.hash_key(&RequestKey { parts, request })
}

/// The key of one request: hashing it reads each part off the request.
struct RequestKey<'a, B> {
    parts: &'a [Part],
    request: &'a Request<B>,
}

impl<B> Hash for RequestKey<'_, B> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for part in self.parts {
            hash_part(part, self.request, state);
        }
    }
}

// Tags keep parts apart: a missing header and a peer address never hash alike.
const TAG_NONE: u8 = 0;
const TAG_IP: u8 = 1;
const TAG_VALUE: u8 = 2;

fn hash_part<B, H: Hasher>(part: &Part, request: &Request<B>, state: &mut H) {
    match part {
        Part::PeerIp => hash_ip(peer_ip(request), state),
        Part::ClientIp { trusted, header } => {
            let client = client_ip(request.headers(), *header, *trusted);
            if client.is_none() && *trusted > 0 {
                unusable_forwarding(request, *header);
            }
            hash_ip(client.or_else(|| peer_ip(request)), state);
        }
        Part::Header { name, missing } => match request.headers().get(name) {
            Some(value) => {
                state.write_u8(TAG_VALUE);
                value.as_bytes().hash(state);
            }
            None => match missing {
                MissingHeader::PeerIp => hash_ip(peer_ip(request), state),
                _ => state.write_u8(TAG_NONE),
            },
        },
        Part::Route => {
            state.write_u8(TAG_VALUE);
            route(request).hash(state);
        }
        Part::Path => {
            state.write_u8(TAG_VALUE);
            request.uri().path().hash(state);
        }
        Part::PathPrefix(n) => {
            state.write_u8(TAG_VALUE);
            path_prefix(request.uri().path(), *n).hash(state);
        }
    }
}

/// Says (at debug level, without the header's value) why a request with trusted proxies
/// is keyed by its peer: its forwarding header is missing, too short or malformed. A
/// client can send such headers at will, so this is never louder than debug.
#[cold]
fn unusable_forwarding<B>(request: &Request<B>, header: ForwardedHeader) {
    let name = header_name(header);
    tracing::debug!(
        header = name.as_str(),
        present = request.headers().contains_key(name),
        "rate limit key: no usable client address in the forwarding header; keyed by the peer"
    );
}

fn hash_ip<H: Hasher>(ip: Option<IpAddr>, state: &mut H) {
    match ip {
        Some(ip) => {
            state.write_u8(TAG_IP);
            // An IPv4 client seen over an IPv6 socket is the same client.
            ip.to_canonical().hash(state);
        }
        None => {
            no_peer_address();
            state.write_u8(TAG_NONE);
        }
    }
}

/// Warns once per process that requests carry no peer address, so they all share one
/// bucket: a setup mistake (axum without the `axum` feature, or a server that inserts no
/// `SocketAddr`), not a client's doing.
#[cold]
fn no_peer_address() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "rate limit key: a request has no peer address (no SocketAddr or IpAddr \
             extension; with axum, enable the `axum` feature and serve with \
             `into_make_service_with_connect_info::<SocketAddr>()`): such requests share \
             one bucket"
        );
    }
}

/// The connection's peer address: axum's `ConnectInfo<SocketAddr>` (feature `axum`), or a
/// `SocketAddr` or `IpAddr` extension.
pub(crate) fn peer_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    if let Some(addr) = extensions.get::<SocketAddr>() {
        return Some(addr.ip());
    }
    extensions.get::<IpAddr>().copied()
}

/// The matched route (axum's `MatchedPath`, feature `axum`), else the path.
fn route<B>(request: &Request<B>) -> &str {
    #[cfg(feature = "axum")]
    if let Some(matched) = request.extensions().get::<axum::extract::MatchedPath>() {
        return matched.as_str();
    }
    request.uri().path()
}

/// The first `n` segments of `path`, with their leading slash (`/v1/users` of
/// `/v1/users/42` for 2); the whole path when it has fewer.
pub(crate) fn path_prefix(path: &str, n: usize) -> &str {
    let mut seen = 0;
    for (at, byte) in path.bytes().enumerate() {
        // A slash after the first character closes a segment.
        if byte == b'/' && at > 0 {
            seen += 1;
            if seen == n {
                return &path[..at];
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefix_takes_whole_segments() {
        assert_eq!(path_prefix("/v1/users/42", 1), "/v1");
        assert_eq!(path_prefix("/v1/users/42", 2), "/v1/users");
        assert_eq!(path_prefix("/v1/users/42", 3), "/v1/users/42");
        assert_eq!(path_prefix("/v1/users/42", 9), "/v1/users/42");
        assert_eq!(path_prefix("/", 1), "/");
        assert_eq!(path_prefix("", 1), "");
    }
}
