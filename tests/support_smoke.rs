//! The fault-injecting loopback servers behave as the other tests rely on.

mod support;

use std::time::Duration;

use support::{Get, HttpEndpoint, Upstream};
use tower::ServiceExt;

#[tokio::test]
async fn faults_switch_at_run_time() {
    let up = Upstream::start("a").await;
    let client = HttpEndpoint::new(up.addr());

    let reply = client.clone().oneshot(Get("/")).await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "a"));

    up.fail_next(2);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            client
                .clone()
                .oneshot(Get("/"))
                .await
                .unwrap()
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!((up.requests(), up.errors()), (4, 2));

    up.set_error_status(503);
    up.set_failing(true);
    assert_eq!(client.clone().oneshot(Get("/")).await.unwrap().status, 503);
    up.recover();
    assert_eq!(client.clone().oneshot(Get("/")).await.unwrap().status, 200);

    up.set_latency(Duration::from_millis(50));
    let started = std::time::Instant::now();
    client.clone().oneshot(Get("/")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
    up.recover();
}

#[tokio::test]
async fn a_killed_upstream_refuses_and_revives_on_the_same_port() {
    let up = Upstream::start("b").await;
    let client = HttpEndpoint::new(up.addr());
    client.clone().oneshot(Get("/")).await.unwrap();

    up.kill();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The pooled connection was closed too: the next request fails to connect.
    let mut failed = 0;
    for _ in 0..3 {
        failed += u32::from(client.clone().oneshot(Get("/")).await.is_err());
    }
    assert_eq!(failed, 3);

    up.revive().await.unwrap();
    let reply = client.clone().oneshot(Get("/")).await.unwrap();
    assert_eq!(reply.body, "b");
}
