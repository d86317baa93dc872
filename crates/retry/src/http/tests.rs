use super::*;

#[test]
fn retry_safety() {
    for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
        assert!(
            is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
            "{m}"
        );
    }
    for m in ["POST", "PATCH", "CONNECT"] {
        assert!(
            !is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
            "{m}"
        );
    }
    let keyed = Request::post("/")
        .header("Idempotency-Key", "abc")
        .body(())
        .unwrap();
    assert!(is_retry_safe(&keyed));
}

#[test]
fn replay_idempotent_copies_everything_but_only_when_safe() {
    let mut req = replayable(
        Request::put("http://x/a?b=1")
            .header("x-trace", "7")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"data",
            )))
            .unwrap(),
        64,
    );
    req.extensions_mut().insert(42u32);
    let copy = ReplayIdempotent.replay(&req).unwrap();
    assert_eq!(copy.method(), Method::PUT);
    assert_eq!(copy.uri(), "http://x/a?b=1");
    assert_eq!(copy.headers()["x-trace"], "7");
    assert_eq!(copy.extensions().get::<u32>(), Some(&42));
    let post = replayable(
        Request::post("/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
        64,
    );
    assert!(ReplayIdempotent.replay(&post).is_none());
}

#[test]
fn only_a_bounded_non_empty_idempotency_key_makes_a_post_retry_safe() {
    let post = |key: &str| {
        Request::post("/")
            .header(IDEMPOTENCY_KEY, key)
            .body(())
            .unwrap()
    };
    assert!(is_retry_safe(&post("k")));
    assert!(is_retry_safe(&post(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN))));
    assert!(!is_retry_safe(&post(
        &"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)
    )));
    assert!(
        !is_retry_safe(&post(&"k".repeat(1 << 20))),
        "a megabyte key"
    );
    assert!(!is_retry_safe(&post("")), "an empty key");
    // an idempotent method needs no key, however long the header
    let mut get = post(&"k".repeat(1 << 20));
    *get.method_mut() = Method::GET;
    assert!(is_retry_safe(&get));
    let body = replayable(
        Request::post("/")
            .header(IDEMPOTENCY_KEY, "k".repeat(1 << 20))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
        64,
    );
    assert!(ReplayIdempotent.replay(&body).is_none());
}
