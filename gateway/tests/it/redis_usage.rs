//! A node gives back the bytes of a tenant's Redis keys that expired (the Redis capability's
//! upkeep, `recount.rs`): without it a rate limiter's keys, one per caller and window, filled
//! the tenant's memory quota for good. Real Redis, a real `wharf serve`, the `redis-rate-limit`
//! example over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use deadpool_redis::redis;
use wharf_plugins::test_support::redis_usage;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gives_back_the_bytes_of_keys_that_expired() {
    // One window is one second.
    let (url, _store, _up, t) = rate_limited_tenant("usage.test", "100", "1").await;
    let toml = format!(
        "[redis]\nurl = \"{}\"\nrecount_every_seconds = 1\n",
        redis_url()
    );
    let gw = Wharf::start_configured(&url, &toml, &[]).await;
    // Five callers: five keys, each living one window.
    for caller in 0..5 {
        let key = format!("caller-{caller}");
        let r = gw
            .request("GET", "usage.test", "/", &[("x-api-key", &key)])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
    }
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let counted = redis_usage(&mut conn, &t).await;
    assert!(counted > 0, "the callers' keys were counted: {counted}");

    // The keys expire after a second; the node's upkeep (every 10 s) recounts soon after.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = redis_usage(&mut conn, &t).await;
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} bytes still counted a minute after every key expired"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And the limiter goes on counting.
    let r = gw
        .request("GET", "usage.test", "/", &[("x-api-key", "caller-0")])
        .await;
    assert_eq!(
        (
            r.status,
            r.headers["x-ratelimit-remaining"].to_str().unwrap()
        ),
        (200, "99")
    );
}
