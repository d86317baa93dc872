//! HTTP keys and rate-limit headers of the local rate limiter: each key part, spoofed and
//! malformed forwarding headers, the TOML shape and its errors, and the headers an
//! admitted response and a rejection carry. Paused tokio time.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_prism_limit::rate::{
    ClientIpKey, ForwardedHeader, HeaderKey, HttpKey, KeyConfig, KeyPart, MissingHeader,
    RateLimitConfig, RateLimitLayer, RateLimitRejection,
};
use tower_prism_limit::Error;

type Svc = tower::util::BoxCloneService<Request<()>, Response<()>, BoxError>;

/// A service behind a rate limit of `burst` tokens (refilling one per second), keyed by
/// `key`, with headers on admitted responses when `headers`.
fn limited(key: impl Into<KeyConfig>, burst: u32, headers: bool) -> Svc {
    let config = RateLimitConfig::builder()
        .rate(1)
        .burst(burst)
        .key(key)
        .headers(headers)
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder(config)
        .name("api")
        .build_http()
        .unwrap();
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    tower::util::BoxCloneService::new(layer.layer(inner))
}

/// A request from `peer` with `headers`.
fn from(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = Request::builder().uri("/v1/users/42?x=1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).unwrap();
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    request.extensions_mut().insert(addr);
    request
}

/// Whether `svc` admits `request`.
async fn admits(svc: &mut Svc, request: Request<()>) -> bool {
    match svc.ready().await.unwrap().call(request).await {
        Ok(_) => true,
        Err(error) => {
            let rejection = error
                .downcast_ref::<RateLimitRejection>()
                .expect("a rejection");
            assert!(matches!(rejection.error(), Error::RateLimited { .. }));
            false
        }
    }
}

fn client_ip(trusted: u8) -> KeyPart {
    KeyPart::ClientIp(ClientIpKey::new(trusted))
}

#[tokio::test(start_paused = true)]
async fn peer_ip_keys_by_the_connection_address() {
    let mut svc = limited(KeyPart::PeerIp, 1, false);
    assert!(admits(&mut svc, from("192.0.2.1", &[])).await);
    assert!(!admits(&mut svc, from("192.0.2.1", &[])).await);
    assert!(admits(&mut svc, from("192.0.2.2", &[])).await);
    // An IPv4 peer over an IPv6 socket is the same client.
    assert!(!admits(&mut svc, from("[::ffff:192.0.2.2]", &[])).await);
    // An `IpAddr` extension works too; a request with neither shares one bucket.
    let mut by_ip = Request::new(());
    by_ip
        .extensions_mut()
        .insert("192.0.2.3".parse::<IpAddr>().unwrap());
    assert!(admits(&mut svc, by_ip).await);
    assert!(admits(&mut svc, Request::new(())).await);
    assert!(!admits(&mut svc, Request::new(())).await);
}

#[tokio::test(start_paused = true)]
async fn a_spoofed_forwarded_for_never_gets_a_fresh_bucket_without_a_trusted_proxy() {
    for part in [KeyPart::PeerIp, client_ip(0)] {
        let mut svc = limited(part, 1, false);
        assert!(admits(&mut svc, from("192.0.2.1", &[])).await);
        for forged in ["203.0.113.9", "203.0.113.10", "1.2.3.4, 5.6.7.8"] {
            let request = from("192.0.2.1", &[("x-forwarded-for", forged)]);
            assert!(!admits(&mut svc, request).await, "{forged} got a bucket");
        }
        let request = from("192.0.2.1", &[("x-real-ip", "203.0.113.11")]);
        assert!(!admits(&mut svc, request).await);
    }
}

#[tokio::test(start_paused = true)]
async fn one_trusted_proxy_keys_by_the_address_it_appended() {
    let mut svc = limited(client_ip(1), 1, false);
    let proxy = "10.0.0.1";
    // The client prepends a forged hop; the proxy appends the real address.
    let alice = |forged: &str| {
        let value = format!("{forged}, 198.51.100.7");
        let mut request = from(proxy, &[]);
        request
            .headers_mut()
            .insert("x-forwarded-for", value.parse().unwrap());
        request
    };
    assert!(admits(&mut svc, alice("203.0.113.1")).await);
    assert!(
        !admits(&mut svc, alice("203.0.113.2")).await,
        "the forged hop is ignored"
    );
    let bob = from(proxy, &[("x-forwarded-for", "198.51.100.8")]);
    assert!(
        admits(&mut svc, bob).await,
        "another client behind the same proxy"
    );
}

#[tokio::test(start_paused = true)]
async fn two_trusted_proxies_count_hops_across_header_lines() {
    let mut svc = limited(client_ip(2), 1, false);
    let request = |client: &str| {
        let mut request = from("10.0.0.2", &[]);
        let headers = request.headers_mut();
        headers.append(
            "x-forwarded-for",
            format!("203.0.113.5, {client}").parse().unwrap(),
        );
        headers.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        request
    };
    assert!(admits(&mut svc, request("198.51.100.1")).await);
    assert!(!admits(&mut svc, request("198.51.100.1")).await);
    assert!(admits(&mut svc, request("198.51.100.2")).await);
}

#[tokio::test(start_paused = true)]
async fn short_or_malformed_forwarding_headers_fall_back_to_the_peer() {
    let mut svc = limited(client_ip(2), 1, false);
    let peer = "192.0.2.50";
    assert!(admits(&mut svc, from(peer, &[])).await);
    for bad in [
        "198.51.100.1",
        "garbage, 10.0.0.1",
        "unknown, 10.0.0.1",
        ", 10.0.0.1",
    ] {
        let request = from(peer, &[("x-forwarded-for", bad)]);
        assert!(
            !admits(&mut svc, request).await,
            "{bad:?} left the peer's bucket"
        );
    }
    let mut binary = from(peer, &[]);
    binary.headers_mut().insert(
        "x-forwarded-for",
        http::HeaderValue::from_bytes(b"\xff1.2.3.4, 10.0.0.1").unwrap(),
    );
    assert!(!admits(&mut svc, binary).await);
}

#[tokio::test(start_paused = true)]
async fn forwarded_and_x_real_ip_are_read_only_when_named() {
    let forwarded = KeyPart::ClientIp(ClientIpKey::new(1).header(ForwardedHeader::Forwarded));
    let mut svc = limited(forwarded, 1, false);
    let request = |value: &str| from("10.0.0.1", &[("forwarded", value)]);
    assert!(admits(&mut svc, request("for=198.51.100.1;proto=https")).await);
    assert!(!admits(&mut svc, request("for=\"198.51.100.1:443\"")).await);
    assert!(admits(&mut svc, request("for=\"[2001:db8::1]\"")).await);
    // X-Forwarded-For is not what this key reads: the peer's bucket.
    assert!(
        admits(
            &mut svc,
            from("10.0.0.1", &[("x-forwarded-for", "1.1.1.1")])
        )
        .await
    );
    assert!(
        !admits(
            &mut svc,
            from("10.0.0.1", &[("x-forwarded-for", "2.2.2.2")])
        )
        .await
    );

    let real_ip = KeyPart::ClientIp(ClientIpKey::new(1).header(ForwardedHeader::XRealIp));
    let mut svc = limited(real_ip, 1, false);
    assert!(admits(&mut svc, from("10.0.0.1", &[("x-real-ip", "198.51.100.1")])).await);
    assert!(admits(&mut svc, from("10.0.0.1", &[("x-real-ip", "198.51.100.2")])).await);
    assert!(!admits(&mut svc, from("10.0.0.1", &[("x-real-ip", "198.51.100.2")])).await);
}

#[tokio::test(start_paused = true)]
async fn a_header_keys_by_its_value_and_missing_ones_share_or_fall_back() {
    let mut svc = limited(KeyPart::Header(HeaderKey::new("x-api-key")), 1, false);
    let key = |value: &str| from("192.0.2.1", &[("x-api-key", value)]);
    assert!(admits(&mut svc, key("alice")).await);
    assert!(!admits(&mut svc, key("alice")).await);
    assert!(admits(&mut svc, key("bob")).await);
    assert!(admits(&mut svc, from("192.0.2.1", &[])).await);
    assert!(
        !admits(&mut svc, from("192.0.2.2", &[])).await,
        "anonymous callers share one"
    );

    let per_peer = HeaderKey::new("x-api-key").missing(MissingHeader::PeerIp);
    let mut svc = limited(KeyPart::Header(per_peer), 1, false);
    assert!(admits(&mut svc, from("192.0.2.1", &[])).await);
    assert!(admits(&mut svc, from("192.0.2.2", &[])).await);
    assert!(!admits(&mut svc, from("192.0.2.2", &[])).await);
}

#[tokio::test(start_paused = true)]
async fn a_huge_header_is_one_key_like_any_other() {
    let mut svc = limited(KeyPart::Header(HeaderKey::new("x-api-key")), 1, false);
    let huge = "k".repeat(64 * 1024);
    assert!(admits(&mut svc, from("192.0.2.1", &[("x-api-key", &huge)])).await);
    assert!(!admits(&mut svc, from("192.0.2.1", &[("x-api-key", &huge)])).await);
    let mut other = huge.clone();
    other.push('!');
    assert!(admits(&mut svc, from("192.0.2.1", &[("x-api-key", &other)])).await);
}

#[tokio::test(start_paused = true)]
async fn routes_paths_and_prefixes() {
    let at = |path: &str| Request::builder().uri(path).body(()).unwrap();
    let mut by_prefix = limited(KeyPart::PathPrefix(2), 1, false);
    assert!(admits(&mut by_prefix, at("/v1/users/1")).await);
    assert!(!admits(&mut by_prefix, at("/v1/users/2?page=3")).await);
    assert!(admits(&mut by_prefix, at("/v1/orders/1")).await);

    for part in [KeyPart::Path, KeyPart::Route] {
        let mut svc = limited(part, 1, false);
        assert!(admits(&mut svc, at("/v1/users/1")).await);
        assert!(
            !admits(&mut svc, at("/v1/users/1?q=other")).await,
            "the query is not the path"
        );
        assert!(admits(&mut svc, at("/v1/users/2")).await);
    }
}

#[tokio::test(start_paused = true)]
async fn a_combination_has_a_bucket_per_tuple() {
    let key = KeyConfig::combined([
        KeyPart::PathPrefix(1),
        KeyPart::Header(HeaderKey::new("x-api-key")),
    ]);
    let mut svc = limited(key, 1, false);
    let call = |path: &str, api: &str| {
        Request::builder()
            .uri(path)
            .header("x-api-key", api)
            .body(())
            .unwrap()
    };
    assert!(admits(&mut svc, call("/a/1", "alice")).await);
    assert!(!admits(&mut svc, call("/a/2", "alice")).await);
    assert!(admits(&mut svc, call("/b/1", "alice")).await);
    assert!(admits(&mut svc, call("/a/1", "bob")).await);
}

#[tokio::test(start_paused = true)]
async fn admitted_responses_carry_headers_only_when_configured() {
    let mut svc = limited(KeyPart::PeerIp, 3, true);
    let first = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1", &[]))
        .await
        .unwrap();
    let h = first.headers();
    assert_eq!(h["ratelimit-policy"], "\"api\";q=3;w=3");
    assert_eq!(h["ratelimit"], "\"api\";r=2;t=1");
    assert_eq!(h["x-ratelimit-limit"], "3");
    assert_eq!(h["x-ratelimit-remaining"], "2");
    assert_eq!(h["x-ratelimit-reset"], "1");
    let second = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1", &[]))
        .await
        .unwrap();
    assert_eq!(second.headers()["x-ratelimit-remaining"], "1");
    assert_eq!(second.headers()["ratelimit"], "\"api\";r=1;t=2");
    // Another key has its own bucket and its own count.
    let other = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.2", &[]))
        .await
        .unwrap();
    assert_eq!(other.headers()["x-ratelimit-remaining"], "2");
    tokio::time::advance(Duration::from_secs(1)).await;
    let refilled = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1", &[]))
        .await
        .unwrap();
    assert_eq!(refilled.headers()["x-ratelimit-remaining"], "1");

    let mut quiet = limited(KeyPart::PeerIp, 3, false);
    let response = quiet
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1", &[]))
        .await
        .unwrap();
    assert!(response.headers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_rejection_carries_the_limit_and_when_to_retry() {
    let mut svc = limited(KeyPart::PeerIp, 2, false);
    for _ in 0..2 {
        assert!(admits(&mut svc, from("192.0.2.1", &[])).await);
    }
    tokio::time::advance(Duration::from_millis(300)).await;
    let error = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1", &[]))
        .await
        .unwrap_err();
    let rejection = error.downcast_ref::<RateLimitRejection>().unwrap();
    assert_eq!(
        rejection.error(),
        &Error::RateLimited {
            retry_after: Duration::from_millis(700)
        }
    );
    let info = rejection.info();
    assert_eq!((info.limit, info.remaining), (2, 0));
    assert_eq!(info.reset, Duration::from_millis(700));
    assert_eq!(info.window, Duration::from_secs(2));
    assert_eq!(&*info.policy, "\"api\"");
    // The limiter's error is the rejection's source.
    let source = std::error::Error::source(rejection).unwrap();
    assert!(source.is::<Error>());
}

#[tokio::test(start_paused = true)]
async fn headers_follow_a_reconfigure_but_the_key_may_not_change() {
    let config = RateLimitConfig::builder()
        .rate(5)
        .key(KeyPart::PeerIp)
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder(config.clone())
        .build_http()
        .unwrap();
    let limiter = layer.handle().clone();
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut svc = layer.layer(inner);
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1", &[]))
        .await
        .unwrap();
    assert!(response.headers().get("ratelimit").is_none());

    limiter
        .reconfigure(&config.to_builder().headers(true).build().unwrap())
        .unwrap();
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1", &[]))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-ratelimit-remaining"], "3");

    let rekeyed = config.to_builder().key(KeyPart::Path).build().unwrap();
    assert_eq!(limiter.reconfigure(&rekeyed).unwrap_err().field(), "key");
    assert_eq!(limiter.check(&rekeyed).unwrap_err().field(), "key");
    let mut unkeyed = config.clone();
    unkeyed.key = None;
    assert_eq!(limiter.reconfigure(&unkeyed).unwrap_err().field(), "key");
}

#[test]
fn a_layer_that_cannot_read_keys_refuses_one() {
    let config = RateLimitConfig::builder()
        .rate(5)
        .key(KeyPart::PeerIp)
        .build()
        .unwrap();
    assert_eq!(
        RateLimitLayer::from_config(&config).unwrap_err().field(),
        "key"
    );
    assert!(HttpKey::from_config(None).is_ok_and(|key| !key.is_keyed()));
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_reports_an_empty_bucket_and_a_queue_refusal_is_described() {
    let config = RateLimitConfig::builder()
        .rate(1)
        .key(KeyPart::PeerIp)
        .queue_size(1)
        .max_wait(Duration::from_secs(2))
        .headers(true)
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder(config)
        .name("q")
        .build_http()
        .unwrap();
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let svc = layer.layer(inner);
    let first = svc.clone().oneshot(from("192.0.2.1", &[])).await.unwrap();
    assert_eq!(first.headers()["x-ratelimit-remaining"], "0");
    // The next waits for the token a second away, then reports the bucket it emptied.
    let queued = tokio::spawn(svc.clone().oneshot(from("192.0.2.1", &[])));
    tokio::task::yield_now().await;
    // The queue holds one: a third is refused at once, with the limiter's state.
    let error = svc
        .clone()
        .oneshot(from("192.0.2.1", &[]))
        .await
        .unwrap_err();
    let rejection = error.downcast_ref::<RateLimitRejection>().unwrap();
    assert_eq!(
        rejection.error(),
        &Error::QueueFull {
            retry_after: Duration::from_secs(2)
        }
    );
    assert_eq!((rejection.info().limit, rejection.info().remaining), (1, 0));
    assert_eq!(
        rejection.info().reset,
        Duration::from_secs(2),
        "behind the waiter"
    );
    let second = queued.await.unwrap().unwrap();
    assert_eq!(second.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(second.headers()["ratelimit"], "\"q\";r=0;t=1");
}

/// A request admitted at once while another key's request waits in the queue reports its
/// own bucket's tokens. Every arrival goes through the queue while anyone waits, and one
/// admitted there was stamped as if it had waited: `remaining = 0` from a bucket of five.
#[tokio::test(start_paused = true)]
async fn a_key_admitted_beside_another_keys_waiter_reports_its_tokens() {
    let config = RateLimitConfig::builder()
        .rate(10)
        .burst(5)
        .key(KeyPart::Header(HeaderKey::new("x-key")))
        .queue_size(4)
        .max_wait(Duration::from_secs(1))
        .headers(true)
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder(config)
        .name("q")
        .build_http()
        .unwrap();
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let svc = layer.layer(inner);
    for _ in 0..5 {
        svc.clone()
            .oneshot(from("192.0.2.1", &[("x-key", "a")]))
            .await
            .unwrap();
    }
    let queued = tokio::spawn(svc.clone().oneshot(from("192.0.2.1", &[("x-key", "a")])));
    tokio::task::yield_now().await;
    assert_eq!(layer.handle().snapshot().queued, 1);
    let b = svc
        .clone()
        .oneshot(from("192.0.2.1", &[("x-key", "b")]))
        .await
        .unwrap();
    assert_eq!(b.headers()["x-ratelimit-remaining"], "4");
    queued.await.unwrap().unwrap();
}
