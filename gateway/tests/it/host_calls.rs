//! Plugins calling Redis and SQL through the gateway, over real HTTP, real Redis and real
//! Postgres/MariaDB/SQLite: the two examples end to end, a host call held past the plugin's deadline,
//! and a backend going down and coming back while other routes keep serving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use wharf_metrics::Metrics;
use wharf_plugins::capabilities::redis::RedisSettings;
use wharf_plugins::capabilities::sql::SqlValue;
use wharf_plugins::capabilities::sql::{Sql, SqlBackend};
use wharf_plugins::capabilities::{Capabilities, CapabilitySettings, DEFAULT_RESULT_BUDGET_BYTES};
use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::{OnError, Quotas};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rate_limit_end_to_end() {
    let (url, store, _up, t) = rate_limited_tenant("rl.test", "3", "30").await;
    relaxed(&store, &t).await;
    let gw = Wharf::start_configured(&url, &format!("redis = \"{}\"", redis_url()), &[]).await;

    for remaining in ["2", "1", "0"] {
        let r = gw
            .request("GET", "rl.test", "/", &[("x-api-key", "k1")])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        assert_eq!(r.headers["x-ratelimit-remaining"], remaining);
        assert_eq!(r.headers["x-ratelimit-limit"], "3");
    }
    let limited = gw
        .request("GET", "rl.test", "/", &[("x-api-key", "k1")])
        .await;
    assert_eq!(
        (limited.status, limited.json["error"].as_str()),
        (429, Some("rate_limited"))
    );
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    // Another key has its own window.
    assert_eq!(
        gw.request("GET", "rl.test", "/", &[("x-api-key", "k2")])
            .await
            .status,
        200
    );

    let m = gw.metrics().await;
    let ok = format!(
        r#"wharf_host_calls_total{{function="redis.command",outcome="ok",plugin="redis-rate-limit",tenant="{t}"}}"#
    );
    assert!(metric_value(&m, &ok) >= 6.0, "{m}");
}

/// A TCP relay to `to` that holds each new connection `delay` before connecting it: a Redis a
/// slow network away. Bounded: it serves until the test ends.
async fn slow_relay(to: String, delay: std::time::Duration) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut server) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    addr
}

/// A tenant's first Redis call on a node opens its pool and first connection: Wharf's set-up,
/// not the plugin's time. Through a relay that takes 300 ms to connect, the first request's
/// plugin (default 100 ms deadline) is served instead of timing out, and later ones reuse the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_connection_is_not_charged_to_the_first_requests_deadline() {
    let (url, _store, _up, _t) = rate_limited_tenant("first.test", "100", "30").await;
    let relay = slow_relay(redis_addr(), std::time::Duration::from_millis(300)).await;
    let gw = Wharf::start_configured(&url, &format!("redis = \"redis://{relay}\""), &[]).await;
    for _ in 0..3 {
        let r = gw
            .request("GET", "first.test", "/", &[("x-api-key", "k1")])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
    }
}

on_both_stores!(sql_api_keys_end_to_end);

/// The tenants' SQL on the store's own kind of server (Postgres, or SQLite files).
async fn sql_api_keys_end_to_end(kind: StoreKind) {
    let sql = match kind {
        StoreKind::Postgres => TenantDb::Postgres(fresh_postgres_url().await),
        StoreKind::Sqlite => TenantDb::Sqlite,
    };
    sql_api_keys_on(kind, sql).await;
}

/// The same unchanged plugin, its tenant's SQL on MariaDB (`sql = "mysql://…"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_api_keys_end_to_end_on_mariadb() {
    let admin = wharf_tenancy::test_support::mysql_admin_url();
    sql_api_keys_on(StoreKind::Sqlite, TenantDb::Mysql(admin)).await;
}

/// Waits until the tenant's MariaDB user has no session left.
async fn mysql_sessions_closed(admin: &str, tenant: &str) {
    use sqlx::Connection;
    let user = wharf_plugins::capabilities::sql::mysql::tenant_name(tenant);
    let mut conn = sqlx::MySqlConnection::connect(admin).await.unwrap();
    for _ in 0..50 {
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
        )
        .bind(&user)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the seed's sessions stayed open");
}

enum TenantDb {
    Postgres(String),
    Mysql(String),
    Sqlite,
}

async fn sql_api_keys_on(kind: StoreKind, db: TenantDb) {
    let (url, store) = fresh_store(kind).await;
    let up = Upstream::start("up").await;
    let t = tenant_id();
    store.create_tenant(&t, "T", &["keys.test"]).await.unwrap();
    relaxed(&store, &t).await;
    store
        .put_route(&t, route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        &t,
        "api",
        "sql-api-keys",
        &example_plugin("sql-api-keys"),
        &[],
        OnError::FailClosed,
    )
    .await;
    let sql_setting = match &db {
        TenantDb::Postgres(admin) | TenantDb::Mysql(admin) => format!("sql = \"{admin}\""),
        TenantDb::Sqlite => "sql = \"sqlite\"".to_string(),
    };
    let gw = Wharf::start_configured(&url, &sql_setting, &[]).await;
    // Seed the tenant's own table through the same provisioning the gateway uses.
    let (sql_backend, create) = match &db {
        TenantDb::Postgres(admin) => (
            SqlBackend::Postgres(admin.clone()),
            "CREATE TABLE api_keys (key TEXT PRIMARY KEY, customer_id TEXT NOT NULL, active BOOLEAN NOT NULL)",
        ),
        TenantDb::Mysql(admin) => (
            SqlBackend::Mysql(admin.clone()),
            "CREATE TABLE api_keys (`key` VARCHAR(64) PRIMARY KEY, customer_id TEXT NOT NULL, active BOOLEAN NOT NULL)",
        ),
        TenantDb::Sqlite => (
            SqlBackend::Sqlite(gw.data_dir().join("tenant-sql")),
            "CREATE TABLE api_keys (key TEXT PRIMARY KEY, customer_id TEXT NOT NULL, active INTEGER NOT NULL)",
        ),
    };
    let seed = Capabilities::new(
        CapabilitySettings {
            redis: RedisSettings::default(),
            sql: sql_backend,
            ..Default::default()
        },
        Arc::new(Metrics::new()),
        DEFAULT_RESULT_BUDGET_BYTES,
    )
    .unwrap();
    {
        // A loaded machine may take longer than the default 100 ms for a first connection:
        // the seeding is set-up, not what is tested.
        let patient = Quotas {
            pools: wharf_tenancy::PoolQuotas { wait_ms: 10_000 },
            ..Quotas::default()
        };
        let tb = seed.tenant(&t, &patient);
        let sql = tb.get::<Sql>().await.unwrap();
        sql.execute(create, vec![]).await.unwrap();
        for (key, customer, on) in [("good", "cust-42", true), ("off", "cust-7", false)] {
            let flag = match db {
                TenantDb::Sqlite => SqlValue::Int64(on as i64),
                _ => SqlValue::Boolean(on),
            };
            sql.execute(
                "INSERT INTO api_keys VALUES ($1, $2, $3)",
                vec![
                    SqlValue::Text(key.into()),
                    SqlValue::Text(customer.into()),
                    flag,
                ],
            )
            .await
            .unwrap();
        }
    }
    drop(seed);
    if let TenantDb::Mysql(admin) = &db {
        // MAX_USER_CONNECTIONS counts the tenant's sessions on every node: the seed's must be
        // gone before the gateway's pool fills.
        mysql_sessions_closed(admin, &t).await;
    }

    assert_eq!(gw.get("keys.test", "/").await.status, 401);
    let unknown = gw
        .request("GET", "keys.test", "/", &[("x-api-key", "nope")])
        .await;
    assert_eq!(unknown.status, 401, "{:?}", unknown.json);
    let off = gw
        .request("GET", "keys.test", "/", &[("x-api-key", "off")])
        .await;
    assert_eq!(off.status, 403, "{:?}", off.json);
    let injection = gw
        .request("GET", "keys.test", "/", &[("x-api-key", "' OR '1'='1")])
        .await;
    assert_eq!(injection.status, 401, "the key is a bound parameter");
    let ok = gw
        .request("GET", "keys.test", "/", &[("x-api-key", "good")])
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    assert_eq!(ok.json["headers"]["x-customer-id"], "cust-42");
    assert!(ok.json["headers"].get("x-api-key").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_call_held_past_the_deadline_fails_only_that_request() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let admin = fresh_postgres_url().await;
    let up = Upstream::start("up").await;
    let t = tenant_id();
    store.create_tenant(&t, "T", &["slow.test"]).await.unwrap();
    store
        .set_quotas(
            &t,
            &Quotas {
                plugin: wharf_tenancy::PluginQuotas {
                    deadline_ms: 200,
                    ..Default::default()
                },
                sql: wharf_tenancy::SqlQuotas {
                    statement_timeout_ms: 10_000,
                    ..Default::default()
                },
                ..Quotas::default()
            },
        )
        .await
        .unwrap();
    store
        .put_route(&t, route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    store
        .put_route(&t, route("plain", "/plain", &[&up.target()]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        &t,
        "api",
        "sql-api-keys",
        &example_plugin("sql-api-keys"),
        &[],
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start_configured(&url, &format!("sql = \"{admin}\""), &[]).await;
    let seed = Capabilities::new(
        CapabilitySettings {
            redis: RedisSettings::default(),
            sql: SqlBackend::Postgres(admin.clone()),
            ..Default::default()
        },
        Arc::new(Metrics::new()),
        DEFAULT_RESULT_BUDGET_BYTES,
    )
    .unwrap();
    let sql = seed.tenant(&t, &Quotas::default());
    let sql = sql.get::<Sql>().await.unwrap();
    sql.execute("CREATE TABLE api_keys (key TEXT PRIMARY KEY, customer_id TEXT NOT NULL, active BOOLEAN NOT NULL)", vec![]).await.unwrap();

    // Hold a lock on the table from outside, so the plugin's lookup blocks in the host call.
    use sqlx::Connection;
    use std::str::FromStr;
    // The tenant's data lives in its own database on the server.
    let schema = wharf_plugins::capabilities::sql::pg_name(&admin, &t)
        .await
        .unwrap()
        .expect("provisioned by the seed above");
    let options = sqlx::postgres::PgConnectOptions::from_str(&admin)
        .unwrap()
        .database(&schema);
    let mut locker = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; LOCK TABLE {schema}.api_keys IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut locker)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let r = gw
        .request("GET", "slow.test", "/", &[("x-api-key", "k")])
        .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (504, Some("plugin_timeout")),
        "{:?}",
        r.json
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at the deadline, not the lock: {:?}",
        started.elapsed()
    );
    assert_eq!(
        gw.get("slow.test", "/plain").await.status,
        200,
        "other routes keep serving"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    // The timed-out lookup's connection may still be in the tenant's pool being given back (or
    // replaced) under a loaded machine: the next lookups are served within a few tries.
    let mut status = 0;
    for _ in 0..10 {
        status = gw
            .request("GET", "slow.test", "/", &[("x-api-key", "k")])
            .await
            .status;
        if status != 504 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(status, 401, "works once the lock is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_mid_test_then_back() {
    let port = free_addr().port();
    let start = || wharf_tenancy::test_support::spawn_redis(port);
    let mut redis = start();
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    let t = tenant_id();
    store.create_tenant(&t, "T", &["down.test"]).await.unwrap();
    relaxed(&store, &t).await;
    store
        .put_route(&t, route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    store
        .put_route(&t, route("plain", "/plain", &[&up.target()]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        &t,
        "api",
        "redis-rate-limit",
        &example_plugin("redis-rate-limit"),
        &[("limit", "1000")],
        OnError::FailClosed,
    )
    .await;
    let gw =
        Wharf::start_configured(&url, &format!("redis = \"redis://127.0.0.1:{port}\""), &[]).await;
    let wait_status = |want: u16| {
        let gw = &gw;
        async move {
            for _ in 0..100 {
                if gw
                    .request("GET", "down.test", "/", &[("x-api-key", "k")])
                    .await
                    .status
                    == want
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("never got {want}");
        }
    };
    wait_status(200).await;
    redis.kill().unwrap();
    redis.wait().unwrap();
    let r = gw
        .request("GET", "down.test", "/", &[("x-api-key", "k")])
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json["host_error"], "backend-unavailable");
    assert_eq!(
        gw.get("down.test", "/plain").await.status,
        200,
        "the gateway keeps serving other routes"
    );
    let mut redis = start();
    wait_status(200).await;
    redis.kill().unwrap();
    redis.wait().unwrap();
    let m = gw.metrics().await;
    assert!(m.contains(r#"outcome="backend_unavailable""#));
}
