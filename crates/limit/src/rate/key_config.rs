//! [`KeyConfig`]: which part of an HTTP request picks its bucket, as a config file says it.
//!
//! The shape in TOML is one part, or a list of parts for a combination:
//!
//! ```toml
//! key = "peer_ip"                                  # the connection's address
//! key = { client_ip = { trusted_proxies = 1 } }    # the address one proxy saw
//! key = { header = "x-api-key" }                   # an API key
//! key = "route"                                    # the matched route (axum) or path
//! key = { path_prefix = 2 }                        # the first two path segments
//! key = ["route", { header = "x-api-key" }]        # both: a bucket per pair
//! ```

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use tower_prism_core::config::ConfigError;

/// How a per-key rate limit keys HTTP requests: one [`KeyPart`] or a combination of them
/// (a bucket per distinct tuple). Read by [`HttpKey`](super::HttpKey); the `key` field of
/// [`RateLimitConfig`](super::RateLimitConfig).
///
/// ```
/// use tower_prism_limit::rate::{KeyConfig, KeyPart};
///
/// #[derive(serde::Deserialize)]
/// struct File { key: KeyConfig }
///
/// let one: File = toml::from_str(r#"key = { header = "x-api-key" }"#).unwrap();
/// assert_eq!(one.key.parts().len(), 1);
/// let both: File = toml::from_str(r#"key = ["route", { client_ip = { trusted_proxies = 1 } }]"#).unwrap();
/// assert!(matches!(both.key.parts()[0], KeyPart::Route));
/// both.key.validate().unwrap();
///
/// let bad: File = toml::from_str(r#"key = { header = "not a header" }"#).unwrap();
/// assert_eq!(bad.key.validate().unwrap_err().field(), "key.header");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    parts: Vec<KeyPart>,
}

/// One part of a request's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum KeyPart {
    /// The IP address of the connection's peer: a `SocketAddr` (or `IpAddr`) request
    /// extension, as a hyper server inserts it, or axum's `ConnectInfo<SocketAddr>` (with
    /// the `axum` feature). Requests with neither share one bucket.
    PeerIp,
    /// The client's IP address as the trusted proxies in front of this server saw it.
    ClientIp(ClientIpKey),
    /// The value of a request header (an API key, a tenant id).
    Header(HeaderKey),
    /// The route the request matched: axum's `MatchedPath` (with the `axum` feature),
    /// else the request's path.
    Route,
    /// The request's path (without the query).
    Path,
    /// The first `n` segments of the request's path (`/v1/users/42` with 2 is `/v1/users`).
    PathPrefix(u8),
}

/// Reads the client's address off a forwarding header, trusting only the hops the
/// configured proxies added.
///
/// With `trusted_proxies = n`, the client is the `n`th address from the right of the
/// header (each proxy appends the address it was reached from). With `0`, or a header with
/// fewer than `n` addresses, or an address that does not parse, the key is the peer's
/// address: a client cannot pick its own bucket by sending a forged header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientIpKey {
    /// Proxies in front of this server that append to the header (the nearest one is the
    /// connection's peer); at most [`MAX_TRUSTED_PROXIES`](Self::MAX_TRUSTED_PROXIES).
    pub trusted_proxies: u8,
    /// The header those proxies write (default `x-forwarded-for`). Name only the one your
    /// proxies set: any other passes through them unchecked.
    #[serde(default)]
    pub header: ForwardedHeader,
}

impl ClientIpKey {
    /// The most trusted proxies accepted (16).
    pub const MAX_TRUSTED_PROXIES: u8 = 16;

    /// `trusted_proxies` proxies that write `X-Forwarded-For`.
    pub fn new(trusted_proxies: u8) -> Self {
        ClientIpKey {
            trusted_proxies,
            header: ForwardedHeader::default(),
        }
    }

    /// The same, reading `header` instead.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }
}

/// The header a [`ClientIpKey`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (every line, in order).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (the `for` parameter of each element).
    #[serde(rename = "forwarded")]
    Forwarded,
    /// `X-Real-IP: client`, one address set by the nearest proxy: used only with exactly
    /// one trusted proxy.
    #[serde(rename = "x-real-ip")]
    XRealIp,
}

/// A header key: the header's name and what a request without it is keyed by.
///
/// In a file, `{ header = "x-api-key" }`, or `{ header = { name = "x-api-key", missing =
/// "peer_ip" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "HeaderKeyRepr")]
#[non_exhaustive]
pub struct HeaderKey {
    /// The header's name (case-insensitive).
    pub name: String,
    /// What keys a request without the header (default: one shared bucket).
    pub missing: MissingHeader,
}

impl HeaderKey {
    /// The header `name`; requests without it share one bucket.
    pub fn new(name: impl Into<String>) -> Self {
        HeaderKey {
            name: name.into(),
            missing: MissingHeader::Shared,
        }
    }

    /// The same, keying requests without the header by `missing`.
    pub fn missing(mut self, missing: MissingHeader) -> Self {
        self.missing = missing;
        self
    }
}

/// What keys a request without the configured header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MissingHeader {
    /// All such requests share one bucket (anonymous callers share one quota).
    #[default]
    Shared,
    /// Each peer IP gets its own bucket (anonymous callers are limited per address).
    PeerIp,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a header name, or a table { name, missing }")]
enum HeaderKeyRepr {
    Name(String),
    Table {
        name: String,
        #[serde(default)]
        missing: MissingHeader,
    },
}

impl From<HeaderKeyRepr> for HeaderKey {
    fn from(repr: HeaderKeyRepr) -> Self {
        match repr {
            HeaderKeyRepr::Name(name) => HeaderKey::new(name),
            HeaderKeyRepr::Table { name, missing } => HeaderKey { name, missing },
        }
    }
}

impl KeyConfig {
    /// The most parts a combination may have (8).
    pub const MAX_PARTS: usize = 8;
    /// The most path segments a [`KeyPart::PathPrefix`] may take (32).
    pub const MAX_PATH_SEGMENTS: u8 = 32;

    /// A key of one part.
    pub fn new(part: KeyPart) -> Self {
        KeyConfig { parts: vec![part] }
    }

    /// A key combining `parts` (a bucket per distinct tuple).
    pub fn combined(parts: impl IntoIterator<Item = KeyPart>) -> Self {
        KeyConfig {
            parts: parts.into_iter().collect(),
        }
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[KeyPart] {
        &self.parts
    }

    /// Checks every part; an error names the field (`key.header`, `key.path_prefix`...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.parts.is_empty() {
            return Err(ConfigError::new("key", "[]", "needs at least one part"));
        }
        if self.parts.len() > Self::MAX_PARTS {
            return Err(ConfigError::new(
                "key",
                format!("{} parts", self.parts.len()),
                format!("at most {} parts", Self::MAX_PARTS),
            ));
        }
        for part in &self.parts {
            part.validate()?;
        }
        Ok(())
    }
}

impl KeyPart {
    fn validate(&self) -> Result<(), ConfigError> {
        match self {
            KeyPart::ClientIp(client) => {
                if client.trusted_proxies > ClientIpKey::MAX_TRUSTED_PROXIES {
                    return Err(ConfigError::new(
                        "key.client_ip.trusted_proxies",
                        client.trusted_proxies,
                        format!("at most {}", ClientIpKey::MAX_TRUSTED_PROXIES),
                    ));
                }
                if client.header == ForwardedHeader::XRealIp && client.trusted_proxies > 1 {
                    return Err(ConfigError::new(
                        "key.client_ip.trusted_proxies",
                        client.trusted_proxies,
                        "x-real-ip holds one address, set by the nearest proxy: trust at most 1",
                    ));
                }
            }
            KeyPart::Header(header) => {
                if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
                    return Err(ConfigError::new(
                        "key.header",
                        &header.name,
                        "not a valid HTTP header name",
                    ));
                }
            }
            KeyPart::PathPrefix(n) => {
                let max = KeyConfig::MAX_PATH_SEGMENTS;
                if *n == 0 || *n > max {
                    return Err(ConfigError::new(
                        "key.path_prefix",
                        n,
                        format!("must be from 1 to {max}"),
                    ));
                }
            }
            KeyPart::PeerIp | KeyPart::Route | KeyPart::Path => {}
        }
        Ok(())
    }
}

impl From<KeyPart> for KeyConfig {
    fn from(part: KeyPart) -> Self {
        KeyConfig::new(part)
    }
}

impl Serialize for KeyConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.parts.as_slice() {
            [one] => one.serialize(serializer),
            parts => parts.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for KeyConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// Reads one part (a string or a table) or a list of parts, keeping the part's own error
/// (`unknown variant "peer_addr"`) rather than an untagged enum's "did not match".
struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key part (\"peer_ip\", { header = \"x-api-key\" }, ...) or a list of them")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<KeyConfig, E> {
        let part = KeyPart::deserialize(de::value::StrDeserializer::<E>::new(value))?;
        Ok(KeyConfig::new(part))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeyConfig, A::Error> {
        let part = KeyPart::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(KeyConfig::new(part))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<KeyConfig, A::Error> {
        let parts = Vec::<KeyPart>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(KeyConfig { parts })
    }
}
