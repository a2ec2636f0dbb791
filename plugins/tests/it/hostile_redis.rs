//! A hostile tenant's Redis commands against the shared Redis and the gateway's memory: values
//! bigger than the reply cap, data that grows past the memory quota, single commands that would
//! jump it (SETRANGE far offsets, APPEND). Real Redis (WHARF_TEST_REDIS_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use wharf_plugins::capabilities::redis::Redis;
use wharf_plugins::capabilities::sql::SqlBackend;
use wharf_plugins::capabilities::{Capabilities, HostError, DEFAULT_RESULT_BUDGET_BYTES};
use wharf_tenancy::test_support::{process_rss_bytes, unique_suffix};
use wharf_tenancy::Quotas;

/// The tests here measure this process's memory: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tenant_id(name: &str) -> String {
    format!("{name}-{}", unique_suffix().replace('_', "-"))
}

fn quota_exceeded(r: Result<impl std::fmt::Debug, HostError>, what: &str) {
    match r {
        Err(HostError::QuotaExceeded(_)) => {}
        other => panic!("{what}: expected quota-exceeded, got {other:?}"),
    }
}

fn bulk(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn redis_backends() -> Arc<Capabilities> {
    let url =
        std::env::var("WHARF_TEST_REDIS_URL").expect("WHARF_TEST_REDIS_URL: run scripts/test");
    wharf_plugins::test_support::capabilities(
        Some(url),
        SqlBackend::Disabled,
        DEFAULT_RESULT_BUDGET_BYTES,
    )
}

/// Redis' own memory use, from INFO, through a plain client.
async fn redis_used_memory() -> u64 {
    let url = std::env::var("WHARF_TEST_REDIS_URL").unwrap();
    let client = deadpool_redis::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = deadpool_redis::redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn redis_big_values_never_reach_the_gateway() {
    let _serial = SERIAL.lock().await;
    let b = redis_backends();
    let t = b.tenant(&tenant_id("rbig"), &Quotas::default());
    let r = t.get::<Redis>().await.unwrap();
    r.command("SET", vec![bulk("big"), vec![b'x'; 20 << 20]])
        .await
        .unwrap();
    let before = process_rss_bytes();
    for cmd in ["GET", "GETRANGE", "GETDEL"] {
        let args = match cmd {
            "GETRANGE" => vec![bulk("big"), bulk("0"), bulk("-1")],
            _ => vec![bulk("big")],
        };
        quota_exceeded(r.command(cmd, args).await, cmd);
    }
    assert!(
        process_rss_bytes().saturating_sub(before) < 8 << 20,
        "a refused 20 MB reply was held by the gateway"
    );
}

#[tokio::test]
async fn redis_memory_quota_bites_and_single_commands_cannot_jump_it() {
    let _serial = SERIAL.lock().await;
    let b = redis_backends();
    let q = Quotas {
        redis: wharf_tenancy::RedisQuotas {
            max_memory_bytes: 256 << 10,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let t = b.tenant(&tenant_id("rgrow"), &q);
    let r = t.get::<Redis>().await.unwrap();
    // SETRANGE at a 300 MB offset would make Redis allocate 300 MB: refused before it runs.
    let used = redis_used_memory().await;
    quota_exceeded(
        r.command("SETRANGE", vec![bulk("s"), bulk("300000000"), bulk("x")])
            .await,
        "SETRANGE far offset",
    );
    assert!(redis_used_memory().await < used + (8 << 20));
    // Writes stop at the quota.
    let mut refused = None;
    for i in 0..64 {
        if let Err(e) = r
            .command("SET", vec![bulk(&format!("k{i}")), vec![b'v'; 16 << 10]])
            .await
        {
            refused = Some((i, e));
            break;
        }
    }
    let (at, e) = refused.expect("writes were refused at the quota");
    assert!(matches!(e, HostError::QuotaExceeded(_)), "{e:?}");
    assert!(
        (10..=17).contains(&at),
        "refused after {at} writes of 16 KiB"
    );
    quota_exceeded(
        r.command("APPEND", vec![bulk("k0"), vec![b'a'; 16 << 10]])
            .await,
        "APPEND over quota",
    );
    // Reads still work, and deleting brings writes back.
    assert!(r.command("GET", vec![bulk("k0")]).await.is_ok());
    for i in 0..at {
        r.command("DEL", vec![bulk(&format!("k{i}"))])
            .await
            .unwrap();
    }
    r.command("SET", vec![bulk("again"), bulk("ok")])
        .await
        .unwrap();
}
