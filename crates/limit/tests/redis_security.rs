//! The Redis rate limiter's credentials, TLS and key bounds: a password never shows (Debug,
//! errors, logs, snapshots, metrics), AUTH works with the password from its field or an
//! environment variable, TLS works against a `redis-server --tls-port` with a CA the test
//! generates, and a megabyte-long key makes a short Redis key.
#![cfg(feature = "redis")]

mod redis_support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_support::{free_port, Server};
use tower_prism_limit::redis::{FailurePolicy, LinkState, RedisConfig, RedisRateLimitLayer};
use tower_prism_limit::Error;
use tower_prism_testkit::metrics::Capture;

const SECRET: &str = "s3cr3t-Pa55";

/// Everything a user could see of a limiter, as text.
fn shown(layer: &RedisRateLimitLayer) -> String {
    format!("{layer:?} {:?}", layer.handle().snapshot())
}

fn assert_hidden(text: &str) {
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
}

/// A tracing subscriber that keeps every event's fields as text.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = self.0.lock().unwrap();
        event.record(&mut Fields(&mut text));
        text.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_url_password_is_redacted_in_debug_and_config_errors() {
    let url = format!("redis://:{SECRET}@127.0.0.1:6379/0");
    let mut cfg = RedisConfig::new(&url, 10, Duration::from_secs(1));
    cfg.password = Some(SECRET.into());
    let debug = format!("{cfg:?}");
    assert_hidden(&debug);
    assert!(debug.contains("redis://:***@127.0.0.1:6379/0"), "{debug}");
    let builder =
        RedisRateLimitLayer::builder(RedisConfig::builder(&url).password(SECRET).build().unwrap())
            .name("t");
    assert_hidden(&format!("{builder:?}"));
    let layer = builder.build().unwrap();
    assert_hidden(&shown(&layer));
    // Bad URLs with a password: the error quotes the URL redacted.
    for bad in [
        format!("redis://:{SECRET}@127.0.0.1:notaport/"),
        format!("http://user:{SECRET}@host/"),
        format!("redis://:{SECRET}@127.0.0.1:6379/notadb"),
    ] {
        let err = RedisRateLimitLayer::builder(RedisConfig::new(&bad, 10, Duration::from_secs(1)))
            .name("t")
            .build()
            .unwrap_err();
        assert_hidden(&err.to_string());
        assert_hidden(&format!("{err:?}"));
        assert_eq!(err.field(), "url");
        assert_hidden(err.value());
        let err = RedisConfig::builder(&bad).build().unwrap_err();
        assert_eq!(err.field(), "url");
        assert_hidden(&format!("{err:?}"));
    }
    // `#`, `/` or `?` unencoded in the password: it was shown whole, the user info then
    // ending at that character rather than at the `@`.
    for url in [
        format!("redis://:{SECRET}#x@127.0.0.1:6379/"),
        format!("redis://user:x/{SECRET}@127.0.0.1:6379/0"),
    ] {
        let cfg = RedisConfig::new(&url, 10, Duration::from_secs(1));
        assert_hidden(&format!("{cfg:?}"));
        if let Err(err) = RedisConfig::builder(&url).build() {
            assert_hidden(&format!("{err} {err:?}"));
        }
    }
}

#[test]
fn password_and_password_env_are_exclusive_and_a_missing_variable_is_named() {
    let mut cfg = RedisConfig::new("redis://127.0.0.1/", 10, Duration::from_secs(1));
    cfg.password = Some(SECRET.into());
    cfg.password_env = Some("PRISM_TEST_SOME_VAR".into());
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.field(), "password_env");
    assert_hidden(&err.to_string());
    cfg.password = None;
    cfg.password_env = Some("PRISM_TEST_SURELY_UNSET_VARIABLE".into());
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.field(), "password_env");
    assert!(
        err.to_string().contains("PRISM_TEST_SURELY_UNSET_VARIABLE"),
        "{err}"
    );
    // A password is not serialized with the rest of the settings.
    let mut cfg = RedisConfig::new("redis://127.0.0.1/", 10, Duration::from_secs(1));
    cfg.password = Some(SECRET.into());
    assert_hidden(&toml::to_string(&cfg).unwrap());
}

/// A server that refuses the password: the typed rejection, its text, the log events, the
/// snapshot and the metric series never carry the secret (in the URL or in the field).
#[tokio::test(flavor = "current_thread")]
async fn a_failed_auth_never_shows_the_password() {
    let Some(server) = Server::start_with(vec!["--requirepass".into(), "other".into()]) else {
        return;
    };
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let metrics = Capture::default();
    let with_url = format!("redis://:{SECRET}@127.0.0.1:{}/", server.port);
    let layers: Vec<RedisRateLimitLayer> = metrics::with_local_recorder(&metrics, || {
        vec![
            RedisRateLimitLayer::builder(
                RedisConfig::builder(&with_url)
                    .timeout(Duration::from_millis(500))
                    .build()
                    .unwrap(),
            )
            .name("in_url")
            .build()
            .unwrap(),
            RedisRateLimitLayer::builder(
                RedisConfig::builder(server.url())
                    .password(SECRET)
                    .timeout(Duration::from_millis(500))
                    .build()
                    .unwrap(),
            )
            .name("in_field")
            .build()
            .unwrap(),
        ]
    });
    for layer in &layers {
        for _ in 0..3 {
            let err = layer.handle().acquire().await.unwrap_err();
            assert!(matches!(err, Error::Unavailable(_)), "{err}");
            assert_hidden(&err.to_string());
            assert_hidden(&format!("{err:?}"));
        }
        assert_hidden(&shown(layer));
        assert_ne!(layer.handle().snapshot().link, LinkState::Up);
    }
    let logged = events.0.lock().unwrap().clone();
    assert!(
        logged.contains("cannot connect"),
        "no event logged: {logged}"
    );
    assert_hidden(&logged);
    for series in metrics.registered() {
        assert_hidden(&series);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_works_with_the_password_from_the_field_and_from_the_environment() {
    let Some(server) = Server::start_with(vec!["--requirepass".into(), SECRET.into()]) else {
        return;
    };
    let build = |b: tower_prism_limit::redis::RedisConfigBuilder, name: &str| {
        let config = b.timeout(Duration::from_millis(500)).build().unwrap();
        RedisRateLimitLayer::builder(config)
            .name(name)
            .build()
            .unwrap()
    };
    let from_field = build(RedisConfig::builder(server.url()).password(SECRET), "f");
    from_field
        .handle()
        .acquire()
        .await
        .expect("admitted by redis");
    std::env::set_var("PRISM_TEST_REDIS_PASSWORD", SECRET);
    let cfg: RedisConfig = toml::from_str(&format!(
        "url = '{}'\nrate = 10\npassword_env = 'PRISM_TEST_REDIS_PASSWORD'\ntimeout = '500ms'",
        server.url()
    ))
    .unwrap();
    assert_hidden(&format!("{cfg:?}"));
    let from_env = RedisRateLimitLayer::builder(cfg.clone())
        .name("e")
        .build()
        .unwrap();
    from_env
        .handle()
        .acquire()
        .await
        .expect("admitted by redis");
    // The field overrides a wrong password in the URL.
    let over = build(
        RedisConfig::builder(format!("redis://:wrong@127.0.0.1:{}/", server.port)).password(SECRET),
        "o",
    );
    over.handle().acquire().await.expect("admitted by redis");
    for l in [&from_field, &from_env, &over] {
        assert_eq!(
            l.handle().snapshot().backend_errors,
            0,
            "{:?}",
            l.handle().snapshot()
        );
    }
    // Without the password: refused (NOAUTH), under the failure policy.
    let none = build(RedisConfig::builder(server.url()), "n");
    assert!(none.handle().acquire().await.is_err());
}

/// A CA and a server certificate for 127.0.0.1 signed by it, written to `dir`: the paths of
/// the CA, the certificate and the key.
fn make_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// TLS and AUTH together, as managed Redis services require: decisions come from Redis over
/// `rediss://` with the generated CA; without it (the system's roots) the server is not
/// trusted and the failure policy answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_auth_against_a_server_with_a_generated_certificate() {
    let dir = std::env::temp_dir().join(format!("prism-redis-tls-{}", std::process::id()));
    let (ca, cert, key) = make_certificates(&dir);
    let port = free_port();
    let args = [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        ca.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        SECRET,
    ];
    let Some(_server) = Server::start_on(port, args.iter().map(|a| a.to_string()).collect()) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{port}/");
    let cfg: RedisConfig = toml::from_str(&format!(
        "url = '{url}'\nrate = 2\nburst = 2\npassword = '{SECRET}'\ntls_ca_file = '{}'\ntimeout = '1s'",
        ca.display()
    ))
    .unwrap();
    let tls = RedisRateLimitLayer::builder(cfg.clone())
        .name("tls")
        .build()
        .unwrap();
    tls.handle()
        .acquire()
        .await
        .expect("admitted by redis over TLS");
    tls.handle()
        .acquire()
        .await
        .expect("admitted by redis over TLS");
    let err = tls.handle().acquire().await.unwrap_err();
    assert!(
        matches!(Some(&err), Some(Error::RateLimited { .. })),
        "the burst is spent, in Redis: {err}"
    );
    assert_eq!(tls.handle().snapshot().backend_errors, 0);
    let untrusted = RedisRateLimitLayer::builder(
        RedisConfig::builder(&url)
            .password(SECRET)
            .timeout(Duration::from_secs(1))
            .failure_policy(FailurePolicy::FailClosed)
            .build()
            .unwrap(),
    )
    .name("tls")
    .build()
    .unwrap();
    assert!(untrusted.handle().acquire().await.is_err());
    assert_eq!(untrusted.handle().snapshot().backend_errors, 1);
    // A CA file with a plain redis:// URL is a config error naming the field.
    let mut plain = cfg.clone();
    plain.url = format!("redis://127.0.0.1:{port}/");
    assert_eq!(plain.validate().unwrap_err().field(), "tls_ca_file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A megabyte-long key makes a Redis key of bounded length (its hash), the same bucket
/// every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_key_makes_a_short_redis_key() {
    let Some(server) = Server::start() else {
        return;
    };
    let layer = RedisRateLimitLayer::builder(
        RedisConfig::builder(server.url())
            .rate(1)
            .period(Duration::from_secs(3600))
            .burst(1)
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .name("k")
    .build()
    .unwrap();
    let long = "x".repeat(1 << 20);
    layer
        .handle()
        .acquire_key(&long)
        .await
        .expect("admitted by redis");
    let err = layer.handle().acquire_key(&long).await.unwrap_err();
    assert!(
        matches!(Some(&err), Some(Error::RateLimited { .. })),
        "the same bucket: {err}"
    );
    let exact = "y".repeat(RedisConfig::MAX_KEY_BYTES);
    layer
        .handle()
        .acquire_key(&exact)
        .await
        .expect("admitted by redis");
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], format!("{{prism:k:{exact}}}"));
    assert!(keys[1].starts_with("{prism:k:~sha1:"), "{}", keys[1]);
    assert_eq!(keys[1].len(), "{prism:k:}".len() + 46);
}

/// A limit's name sits between the prefix and the key in `{<prefix>:<name>:<key>}`: a `:`
/// in it let limit `api` keyed `login` and limit `api:login` share one bucket. Refused,
/// naming the field.
#[test]
fn a_limit_name_that_would_shape_another_limits_key_is_refused() {
    let config = || {
        RedisConfig::builder("redis://127.0.0.1:6379/")
            .build()
            .unwrap()
    };
    for bad in ["api:login", "a{b", "a}b", ""] {
        let err = RedisRateLimitLayer::builder(config())
            .name(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "name", "{bad:?}");
    }
    RedisRateLimitLayer::builder(config())
        .name("api-login_2")
        .build()
        .unwrap();
}
