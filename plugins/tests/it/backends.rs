//! Tenants' Redis from the attacker's side: every isolation line is tried and must hold. Real
//! Redis (WHARF_TEST_REDIS_URL), as scripts/test starts it. SQL: `backends_sql.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use wharf_plugins::capabilities::redis::Redis;
use wharf_plugins::capabilities::redis::{RedisScalar, RedisValue};
use wharf_plugins::capabilities::sql::SqlBackend;
use wharf_plugins::capabilities::{Capabilities, HostError, DEFAULT_RESULT_BUDGET_BYTES};
use wharf_tenancy::test_support::unique_suffix;
use wharf_tenancy::Quotas;

fn redis_url() -> String {
    std::env::var("WHARF_TEST_REDIS_URL").expect("WHARF_TEST_REDIS_URL: run scripts/test")
}

pub(crate) fn tenant_id(name: &str) -> String {
    format!("{name}-{}", unique_suffix().replace('_', "-"))
}

pub(crate) fn backends(sql: SqlBackend) -> Arc<Capabilities> {
    wharf_plugins::test_support::capabilities(Some(redis_url()), sql, DEFAULT_RESULT_BUDGET_BYTES)
}

fn bulk(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[tokio::test]
async fn redis_keys_are_namespaced_and_dangerous_commands_denied() {
    let b = backends(SqlBackend::Disabled);
    let (a_id, e_id) = (tenant_id("a"), tenant_id("evil"));
    let a = b.tenant(&a_id, &Quotas::default());
    let evil = b.tenant(&e_id, &Quotas::default());
    let (ra, re) = (
        a.get::<Redis>().await.unwrap(),
        evil.get::<Redis>().await.unwrap(),
    );

    assert_eq!(
        ra.command("SET", vec![bulk("secret"), bulk("a's")])
            .await
            .unwrap(),
        RedisValue::Status("OK".into())
    );
    assert_eq!(
        ra.command("get", vec![bulk("secret")]).await.unwrap(),
        RedisValue::Bulk(bulk("a's"))
    );
    // The same key name from another tenant is another key.
    assert_eq!(
        re.command("GET", vec![bulk("secret")]).await.unwrap(),
        RedisValue::Nil
    );
    // Naming a's full key does not escape: it is prefixed again.
    let full = format!(
        "{}secret",
        wharf_plugins::capabilities::redis::key_prefix(&a_id)
    );
    assert_eq!(
        re.command("GET", vec![bulk(&full)]).await.unwrap(),
        RedisValue::Nil
    );
    assert_eq!(
        re.command("MGET", vec![bulk("secret"), bulk(&full)])
            .await
            .unwrap(),
        RedisValue::Array(vec![RedisScalar::Nil, RedisScalar::Nil])
    );
    // RENAME stays inside the namespace on both sides.
    re.command("SET", vec![bulk("mine"), bulk("x")])
        .await
        .unwrap();
    re.command("RENAME", vec![bulk("mine"), bulk(&full)])
        .await
        .unwrap();
    assert_eq!(
        ra.command("GET", vec![bulk("secret")]).await.unwrap(),
        RedisValue::Bulk(bulk("a's")),
        "a's key untouched"
    );
    // MSET prefixes every key, not the values.
    re.command("MSET", vec![bulk("k1"), bulk(&full), bulk("k2"), bulk("v")])
        .await
        .unwrap();
    assert_eq!(
        re.command("GET", vec![bulk("k1")]).await.unwrap(),
        RedisValue::Bulk(bulk(&full))
    );

    for denied in [
        "KEYS",
        "SCAN",
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "FCALL",
        "FUNCTION",
        "SCRIPT",
        "SELECT",
        "FLUSHALL",
        "FLUSHDB",
        "CONFIG",
        "CLIENT",
        "DEBUG",
        "MONITOR",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "PUBLISH",
        "MIGRATE",
        "MOVE",
        "OBJECT",
        "SORT",
        "COPY",
        "SWAPDB",
        "SHUTDOWN",
        "ACL",
        "AUTH",
        "HELLO",
        "MULTI",
        "WAIT",
        "DUMP",
        "RESTORE",
        "RANDOMKEY",
        "DBSIZE",
        "INFO",
        "SLAVEOF",
        "REPLICAOF",
        "MODULE",
    ] {
        match re.command(denied, vec![bulk("*")]).await {
            Err(HostError::Denied(m)) => assert!(m.contains(denied), "{m}"),
            other => panic!("{denied} must be denied, got {other:?}"),
        }
    }
    assert!(matches!(
        re.command("GET", vec![]).await,
        Err(HostError::Invalid(_))
    ));
}

/// A component's `command("EVAL", …)` takes the same path as a proxy-wasm module's
/// `proxy_redis_call`: only the operator's trusted scripts, their keys in the caller's namespace.
#[tokio::test]
async fn redis_scripts_run_only_when_trusted_and_on_the_callers_keys() {
    use wharf_plugins::capabilities::redis::{sha1_hex, RedisSettings};
    let incr = "return redis.call('INCR', KEYS[1])";
    let settings = wharf_plugins::capabilities::CapabilitySettings {
        redis: RedisSettings {
            url: Some(redis_url()),
            trusted_scripts: vec![sha1_hex(incr.as_bytes())],
            ..Default::default()
        },
        ..Default::default()
    };
    let metrics = Arc::new(wharf_metrics::Metrics::new());
    let b = Capabilities::new(settings, metrics, DEFAULT_RESULT_BUDGET_BYTES).unwrap();
    let (a_id, e_id) = (tenant_id("a"), tenant_id("evil"));
    let (a, evil) = (
        b.tenant(&a_id, &Quotas::default()),
        b.tenant(&e_id, &Quotas::default()),
    );
    let (ra, re) = (
        a.get::<Redis>().await.unwrap(),
        evil.get::<Redis>().await.unwrap(),
    );
    let eval = |key: &str| vec![bulk(incr), bulk("1"), bulk(key)];
    assert_eq!(
        ra.command("EVAL", eval("n")).await.unwrap(),
        RedisValue::Int(1)
    );
    assert_eq!(
        ra.command("GET", vec![bulk("n")]).await.unwrap(),
        RedisValue::Bulk(bulk("1")),
        "the script's key is the plain command's"
    );
    let full = format!("{}n", wharf_plugins::capabilities::redis::key_prefix(&a_id));
    assert_eq!(
        re.command("EVAL", eval(&full)).await.unwrap(),
        RedisValue::Int(1)
    );
    assert_eq!(
        ra.command("GET", vec![bulk("n")]).await.unwrap(),
        RedisValue::Bulk(bulk("1")),
        "a's counter untouched"
    );
    match re
        .command(
            "EVAL",
            vec![bulk("return redis.call('FLUSHALL')"), bulk("0")],
        )
        .await
    {
        Err(HostError::Denied(m)) => assert!(m.contains("trusted_scripts"), "{m}"),
        other => panic!("an untrusted script must be denied, got {other:?}"),
    }
}

#[tokio::test]
async fn redis_quotas_rate_and_reply_size() {
    let b = backends(SqlBackend::Disabled);
    let q = Quotas {
        redis: wharf_tenancy::RedisQuotas {
            commands_per_second: 5,
            max_reply_bytes: 1024,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let t = b.tenant(&tenant_id("q"), &q);
    let r = t.get::<Redis>().await.unwrap();
    r.command("SET", vec![bulk("big"), vec![b'x'; 4096]])
        .await
        .unwrap();
    match r.command("GET", vec![bulk("big")]).await {
        Err(HostError::QuotaExceeded(m)) => assert!(m.contains("1024"), "{m}"),
        other => panic!("reply over the cap must be refused, got {other:?}"),
    }
    let mut refused = 0;
    for _ in 0..10 {
        if let Err(HostError::QuotaExceeded(_)) = r.command("PING", vec![]).await {
            refused += 1;
        }
    }
    assert!(
        refused >= 5,
        "5 commands/s: most of 10 back-to-back must be refused, got {refused}"
    );
}

#[tokio::test]
async fn redis_down_then_back_without_rebuilding() {
    // A private Redis this test can stop and start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || wharf_tenancy::test_support::spawn_redis(port);
    let b = wharf_plugins::test_support::capabilities(
        Some(format!("redis://127.0.0.1:{port}")),
        SqlBackend::Disabled,
        DEFAULT_RESULT_BUDGET_BYTES,
    );
    let t = b.tenant("down", &Quotas::default());
    assert_eq!(
        t.get::<Redis>()
            .await
            .unwrap()
            .command("PING", vec![])
            .await,
        Err(HostError::BackendUnavailable)
    );
    let mut server = start();
    let ok = pings_within_5s(&t).await;
    assert!(ok, "recovers once Redis is up, same pool");
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        t.get::<Redis>()
            .await
            .unwrap()
            .command("PING", vec![])
            .await,
        Err(HostError::BackendUnavailable)
    );
    let mut server = start();
    let ok = pings_within_5s(&t).await;
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(ok, "recovers after a restart, without rebuilding the pool");
}

async fn pings_within_5s(t: &wharf_plugins::capabilities::TenantCapabilities) -> bool {
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if t.get::<Redis>()
            .await
            .unwrap()
            .command("PING", vec![])
            .await
            .is_ok()
        {
            return true;
        }
    }
    false
}
