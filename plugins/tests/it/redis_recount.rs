//! A tenant's Redis usage recounted from its live keys (`capabilities/redis/recount.rs`), against
//! a real Redis (WHARF_TEST_REDIS_URL): keys that expired give their bytes back, a quota they
//! filled opens again, writes racing a walk never leave the usage below what the keys use, and
//! one walk runs at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, aio::MultiplexedConnection};
use wharf_plugins::capabilities::redis::{
    done_key, key_prefix, marker_key, recount, Pace, Recounted, Redis, TenantRedis,
};
use wharf_plugins::capabilities::sql::SqlBackend;
use wharf_plugins::capabilities::{
    Capabilities, HostError, TenantCapabilities, DEFAULT_RESULT_BUDGET_BYTES,
};
use wharf_plugins::test_support::redis_usage;
use wharf_tenancy::test_support::unique_suffix;
use wharf_tenancy::{Quotas, RedisQuotas};

/// One walk at a time holds the fleet's lock: the tests here take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn url() -> String {
    std::env::var("WHARF_TEST_REDIS_URL").expect("WHARF_TEST_REDIS_URL: run scripts/test")
}

fn backends() -> Arc<Capabilities> {
    wharf_plugins::test_support::capabilities(
        Some(url()),
        SqlBackend::Disabled,
        DEFAULT_RESULT_BUDGET_BYTES,
    )
}

fn tenant_id(name: &str) -> String {
    format!("{name}-{}", unique_suffix().replace('_', "-"))
}

/// A tenant that may send as many commands as the tests do.
fn busy() -> Quotas {
    Quotas {
        redis: RedisQuotas {
            commands_per_second: 1_000_000,
            ..Default::default()
        },
        ..Quotas::default()
    }
}

async fn plain() -> MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// What the tenant's live keys use, by Redis's own MEMORY USAGE.
async fn live_bytes(conn: &mut MultiplexedConnection, tenant: &str) -> i64 {
    let pattern = format!("{}*", key_prefix(tenant));
    let mut cursor = 0u64;
    let mut total = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        for k in keys {
            let n: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&k)
                .query_async(conn)
                .await
                .unwrap();
            total += n.unwrap_or(0);
        }
        if next == 0 {
            return total;
        }
        cursor = next;
    }
}

/// A quiet walk counts what the keys use. `SCAN` may return a key twice when Redis resizes its
/// table meanwhile (other tests write to the same Redis), so a recount may end above the
/// truth, never below.
fn within_a_walks_slack(counted: i64, live: i64) {
    assert!(
        counted >= live && counted <= 2 * live,
        "usage {counted} after a quiet walk, the keys use {live}"
    );
}

/// A walk of `tenants` at `pace`, in a task of its own.
fn spawn_walk(
    tenants: &[String],
    pace: Pace,
) -> tokio::task::JoinHandle<Result<Option<Recounted>, HostError>> {
    let (url, tenants) = (url(), tenants.to_vec());
    tokio::spawn(async move { recount(&url, &tenants, pace).await })
}

/// A tenant that may send as many commands as the tests do, with `n` keys of `value` written.
async fn busy_tenant_with_keys(
    b: &Capabilities,
    name: &str,
    n: usize,
    value: &str,
) -> (String, Arc<TenantCapabilities>) {
    let t = tenant_id(name);
    let caps = b.tenant(&t, &busy());
    let r = caps.get::<Redis>().await.unwrap();
    for i in 0..n {
        run(r, &["SET", &format!("k{i}"), value]).await.unwrap();
    }
    (t, caps)
}

async fn run(r: &TenantRedis, args: &[&str]) -> Result<(), HostError> {
    let rest = args[1..].iter().map(|a| a.as_bytes().to_vec()).collect();
    r.command(args[0], rest).await.map(|_| ())
}

#[tokio::test]
async fn keys_that_expired_give_their_bytes_back_at_the_next_recount() {
    let _serial = SERIAL.lock().await;
    let b = backends();
    let t = tenant_id("rexp");
    let caps = b.tenant(&t, &busy());
    let r = caps.get::<Redis>().await.unwrap();
    // A rate limiter's day: a key per caller and window, each gone when its window ends.
    for i in 0..40 {
        let key = format!("rl:caller-{i}");
        run(r, &["INCR", &key]).await.unwrap();
        run(r, &["PEXPIRE", &key, "50"]).await.unwrap();
    }
    for i in 0..5 {
        run(r, &["SET", &format!("kept-{i}"), "a value that stays"])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = plain().await;
    let live = live_bytes(&mut conn, &t).await;
    let before = redis_usage(&mut conn, &t).await;
    assert!(
        before - live >= 40 * 40,
        "expired keys stay counted until a recount: usage {before}, live {live}"
    );

    let done = recount(&url(), std::slice::from_ref(&t), Pace::default())
        .await
        .unwrap()
        .expect("no other walk holds the lock");
    assert_eq!(done.tenants, 1);
    let after = redis_usage(&mut conn, &t).await;
    assert_eq!(done.released, before - after);
    within_a_walks_slack(after, live);
    let marker: bool = redis::cmd("EXISTS")
        .arg(marker_key(&t))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!marker, "the recount's marker is gone");
    b.purge(&t).await.unwrap();
}

#[tokio::test]
async fn a_quota_filled_by_expired_keys_opens_again() {
    let _serial = SERIAL.lock().await;
    let b = backends();
    let t = tenant_id("rfull");
    let q = Quotas {
        redis: RedisQuotas {
            max_memory_bytes: 8 << 10,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let caps = b.tenant(&t, &q);
    let r = caps.get::<Redis>().await.unwrap();
    let mut written = 0;
    let refused = loop {
        let key = format!("window-{written}");
        match run(r, &["SET", &key, "1", "PX", "50"]).await {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10_000, "the quota never bit");
    };
    assert!(
        matches!(refused, HostError::QuotaExceeded(_)),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every key is gone, and still the quota is full.
    let mut conn = plain().await;
    assert_eq!(live_bytes(&mut conn, &t).await, 0);
    assert!(matches!(
        run(r, &["SET", "after", "1"]).await,
        Err(HostError::QuotaExceeded(_))
    ));

    recount(&url(), std::slice::from_ref(&t), Pace::default())
        .await
        .unwrap()
        .expect("no other walk holds the lock");
    assert_eq!(redis_usage(&mut conn, &t).await, 0);
    run(r, &["SET", "after", "1"]).await.unwrap();
    b.purge(&t).await.unwrap();
}

#[tokio::test]
async fn writes_racing_a_walk_never_leave_the_usage_below_the_keys() {
    let _serial = SERIAL.lock().await;
    let b = backends();
    let (t, caps) = busy_tenant_with_keys(&b, "rrace", 600, "0123456789").await;
    let r = caps.get::<Redis>().await.unwrap();
    // A slow walk (20 keys a batch, 30 batches or more), and the tenant's writes meanwhile:
    // deletes, new keys, growth, shrinkage, and keys that expire.
    let slow = Pace {
        batch: 20,
        pause: Duration::from_millis(10),
        ..Pace::default()
    };
    let tenants = vec![t.clone()];
    let walk = spawn_walk(&tenants, slow);
    // Rounds of writes for as long as the walk runs (at most 300).
    let mut i = 0;
    while !walk.is_finished() && i < 300 {
        run(r, &["DEL", &format!("k{}", i * 2)]).await.unwrap();
        run(
            r,
            &["SET", &format!("new{i}"), "abcdefghijklmnopqrstuvwxyz"],
        )
        .await
        .unwrap();
        run(r, &["APPEND", &format!("k{}", i * 2 + 1), &"x".repeat(100)])
            .await
            .unwrap();
        if i % 3 == 0 {
            run(r, &["SET", &format!("new{i}"), "a"]).await.unwrap();
        }
        if i % 5 == 0 {
            run(r, &["SET", &format!("short{i}"), "gone soon", "PX", "20"])
                .await
                .unwrap();
        }
        i += 1;
    }
    assert!(i >= 20, "only {i} rounds of writes raced the walk");
    let done = walk
        .await
        .unwrap()
        .unwrap()
        .expect("the walk held the lock");
    // Deletes may take keys before the walk reaches them; the odd ones stayed throughout.
    assert!(done.keys >= 300, "the walk saw {} keys", done.keys);
    let mut conn = plain().await;
    let live = live_bytes(&mut conn, &t).await;
    let counted = redis_usage(&mut conn, &t).await;
    assert!(
        counted >= live,
        "usage {counted} fell below what the keys use ({live})"
    );
    // A quiet walk counts exactly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    recount(&url(), &tenants, Pace::default())
        .await
        .unwrap()
        .unwrap();
    let (counted, live) = (
        redis_usage(&mut conn, &t).await,
        live_bytes(&mut conn, &t).await,
    );
    within_a_walks_slack(counted, live);
    b.purge(&t).await.unwrap();
}

#[tokio::test]
async fn one_walk_at_a_time() {
    let _serial = SERIAL.lock().await;
    let b = backends();
    let (t, _caps) = busy_tenant_with_keys(&b, "rlock", 200, "v").await;
    let tenants = vec![t.clone()];
    let slow = Pace {
        batch: 5,
        pause: Duration::from_millis(5),
        ..Pace::default()
    };
    let first = spawn_walk(&tenants, slow);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = recount(&url(), &tenants, Pace::default()).await.unwrap();
    assert_eq!(second, None, "a second walk started while the first ran");
    assert!(first.await.unwrap().unwrap().is_some());
    // The lock is released: the next walk runs.
    assert!(recount(&url(), &tenants, Pace::default())
        .await
        .unwrap()
        .is_some());
    b.purge(&t).await.unwrap();
}

/// As if the last walk ended long ago.
async fn forget_last_walk(conn: &mut MultiplexedConnection) {
    let _: () = redis::cmd("DEL")
        .arg(done_key())
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_fleet_walks_once_per_period_not_once_per_node() {
    let _serial = SERIAL.lock().await;
    let b = backends();
    let (t, _caps) = busy_tenant_with_keys(&b, "rperiod", 10, "v").await;
    let tenants = vec![t.clone()];
    let hourly = Pace {
        every: Duration::from_secs(3600),
        ..Pace::default()
    };
    let mut conn = plain().await;
    forget_last_walk(&mut conn).await;
    // One node walks; every other node's turn within the hour finds it done.
    assert!(recount(&url(), &tenants, hourly).await.unwrap().is_some());
    for _node in 0..3 {
        assert_eq!(recount(&url(), &tenants, hourly).await.unwrap(), None);
    }
    // A node with a shorter period (a setting being rolled out) goes by its own.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let brisk = Pace {
        every: Duration::from_millis(50),
        ..Pace::default()
    };
    assert!(recount(&url(), &tenants, brisk).await.unwrap().is_some());
    assert_eq!(recount(&url(), &tenants, hourly).await.unwrap(), None);
    forget_last_walk(&mut conn).await;
    assert!(recount(&url(), &tenants, hourly).await.unwrap().is_some());
    forget_last_walk(&mut conn).await;
    b.purge(&t).await.unwrap();
}
