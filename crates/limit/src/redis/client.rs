//! The Redis client for a config: URL, credentials and TLS roots in effect, no connection.

use ::redis::cluster::ClusterClientBuilder;
use ::redis::{Client, ConnectionInfo, IntoConnectionInfo, TlsCertificates};
use tower_prism_core::config::ConfigError;

use super::config::{self, RedisConfig};
use super::link::Target;
use super::redact::{redact_url, Secrets};

/// The client for `cfg`'s URL with the credentials and CA in effect: no connection is
/// made. Errors quote the URL redacted.
pub(super) fn connect_target(cfg: &RedisConfig) -> Result<Target, ConfigError> {
    let secrets = secrets_of(cfg);
    let bad = |field: &'static str, e: ::redis::RedisError| {
        ConfigError::new(
            field,
            redact_url(&cfg.url),
            format!("not usable: {}", secrets.scrub(&e.to_string())),
        )
    };
    let mut info: ConnectionInfo = cfg
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| bad("url", e))?;
    if let Some(password) = cfg.resolve_password()? {
        info.redis.password = Some(password);
    }
    if let Some(user) = &cfg.username {
        info.redis.username = Some(user.clone());
    }
    let tls = matches!(info.addr, ::redis::ConnectionAddr::TcpTls { .. });
    if tls {
        install_crypto_provider();
    }
    let root_cert = match &cfg.tls_ca_file {
        Some(path) => Some(config::read_ca_file(path)?),
        None => None,
    };
    let certs = || TlsCertificates {
        client_tls: None,
        root_cert: root_cert.clone(),
    };
    if cfg.cluster {
        let mut builder = ClusterClientBuilder::new(vec![info])
            .connection_timeout(cfg.connect_timeout)
            .response_timeout(cfg.timeout)
            // Few, short retries inside the cluster client: every call is bounded by
            // `timeout` anyway, and a dead node is the failure policy's to answer for.
            .retries(2)
            .min_retry_wait(5)
            .max_retry_wait(
                u64::try_from(cfg.reconnect_backoff_max.as_millis()).unwrap_or(u64::MAX),
            );
        if root_cert.is_some() {
            builder = builder.certs(certs());
        }
        Ok(Target::Cluster(builder.build().map_err(|e| bad("url", e))?))
    } else if root_cert.is_some() {
        Ok(Target::Single(
            Client::build_with_tls(info, certs()).map_err(|e| bad("tls_ca_file", e))?,
        ))
    } else {
        Ok(Target::Single(
            Client::open(info).map_err(|e| bad("url", e))?,
        ))
    }
}

/// The secrets of `cfg` to scrub from any text shown: the URL's and the `password`.
pub(super) fn secrets_of(cfg: &RedisConfig) -> Secrets {
    let mut secrets = Secrets::of_url(&cfg.url);
    if let Some(password) = &cfg.password {
        secrets.add(password);
    }
    if let Some(var) = &cfg.password_env {
        if let Ok(password) = std::env::var(var) {
            secrets.add(&password);
        }
    }
    secrets
}

/// Makes rustls' ring provider the process default unless the application installed one:
/// rustls needs one to build a TLS client and cannot pick it when both ring and aws-lc-rs
/// are compiled in.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
