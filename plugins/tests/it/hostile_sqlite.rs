//! A hostile tenant's SQLite files, and what all tenants share: statements that never end,
//! files and values past their caps, a removed tenant's data (Postgres, SQLite and Redis) purged
//! before its id has a new owner, the node's memory for results in flight. Real SQLite files,
//! Postgres (WHARF_TEST_DATABASE_URL) and Redis (WHARF_TEST_REDIS_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use wharf_plugins::capabilities::redis::Redis;
use wharf_plugins::capabilities::sql::{Sql, SqlBackend, SqlValue};
use wharf_plugins::capabilities::{HostError, DEFAULT_RESULT_BUDGET_BYTES};
use wharf_tenancy::test_support::{
    fresh_postgres_url, process_cpu_time, process_rss_bytes, unique_suffix,
};
use wharf_tenancy::Quotas;

use super::hostile_backends::{
    backends, leave_a_secret, no_secret_left, quota_exceeded, tenant_id, SERIAL,
};

fn bulk(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn sqlite_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wharf-hostile-{}", unique_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_statement_past_its_deadline_is_stopped_and_its_connection_returned() {
    let _serial = SERIAL.lock().await;
    let b = backends(SqlBackend::Sqlite(sqlite_dir()));
    let q = Quotas {
        sql: wharf_tenancy::SqlQuotas {
            statement_timeout_ms: 300,
            max_connections: 1,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let t = b.tenant(&tenant_id("spin"), &q);
    let sql = t.get::<Sql>().await.unwrap();
    let endless =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let started = Instant::now();
    assert_eq!(
        sql.query(endless, vec![]).await.unwrap_err(),
        HostError::Timeout
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The only connection is back and idle: the next statement runs at once, and no core keeps
    // spinning on the abandoned statement.
    let cpu = process_cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = process_cpu_time().saturating_sub(cpu);
    assert!(
        spent < Duration::from_millis(500),
        "{spent:?} of CPU while idle"
    );
    let r = sql.query("SELECT 7", vec![]).await.unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Int64(7)]]);
}

#[tokio::test]
async fn sqlite_values_and_files_are_capped() {
    let _serial = SERIAL.lock().await;
    let dir = sqlite_dir();
    let b = backends(SqlBackend::Sqlite(dir.clone()));
    let q = Quotas {
        sql: wharf_tenancy::SqlQuotas {
            max_storage_bytes: 256 << 10,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let id = tenant_id("grow");
    let t = b.tenant(&id, &q);
    let sql = t.get::<Sql>().await.unwrap();
    let before = process_rss_bytes();
    quota_exceeded(
        sql.query("SELECT randomblob(60000000)", vec![]).await,
        "a 60 MB value",
    );
    quota_exceeded(
        sql.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3000000) SELECT x FROM c", vec![])
            .await,
        "millions of rows",
    );
    assert!(process_rss_bytes().saturating_sub(before) < 40 << 20);
    sql.execute("CREATE TABLE t (v blob)", vec![])
        .await
        .unwrap();
    let mut refused = false;
    for _ in 0..40 {
        match sql
            .execute("INSERT INTO t VALUES (randomblob(16000))", vec![])
            .await
        {
            Ok(_) => {}
            Err(HostError::QuotaExceeded(_)) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(refused, "the file stopped growing at its quota");
    let size = std::fs::metadata(dir.join(format!("{id}.db")))
        .unwrap()
        .len();
    assert!(size <= 300 << 10, "file is {size} bytes");
}

#[tokio::test]
async fn a_removed_tenants_data_is_purged_and_a_new_owner_of_its_id_starts_empty() {
    let _serial = SERIAL.lock().await;
    let url = std::env::var("WHARF_TEST_REDIS_URL").expect("WHARF_TEST_REDIS_URL");
    let admin = fresh_postgres_url().await;
    let dir = sqlite_dir();
    for sql in [
        SqlBackend::Postgres(admin.clone()),
        SqlBackend::Sqlite(dir.clone()),
    ] {
        let b = wharf_plugins::test_support::capabilities(
            Some(url.clone()),
            sql.clone(),
            DEFAULT_RESULT_BUDGET_BYTES,
        );
        let id = tenant_id("gone");
        {
            let t = b.tenant(&id, &Quotas::default());
            let r = t.get::<Redis>().await.unwrap();
            r.command("SET", vec![bulk("secret"), bulk("old owner's")])
                .await
                .unwrap();
            leave_a_secret(t.get::<Sql>().await.unwrap()).await;
        }
        b.purge(&id).await.unwrap();
        b.purge(&id).await.expect("purging twice is fine");
        let t = b.tenant(&id, &Quotas::default());
        assert_eq!(
            t.get::<Redis>()
                .await
                .unwrap()
                .command("GET", vec![bulk("secret")])
                .await
                .unwrap(),
            wharf_plugins::capabilities::redis::RedisValue::Nil,
            "{sql:?}: Redis keys survived"
        );
        no_secret_left(t.get::<Sql>().await.unwrap(), &format!("{sql:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_budget_for_results_in_flight_is_shared_and_fails_fast() {
    let _serial = SERIAL.lock().await;
    // A 1 MiB node budget and 1 MiB result caps: one call in flight takes it all.
    let b =
        wharf_plugins::test_support::capabilities(None, SqlBackend::Sqlite(sqlite_dir()), 1 << 20);
    let q = Quotas {
        sql: wharf_tenancy::SqlQuotas {
            statement_timeout_ms: 600,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let (x, y) = (b.tenant(&tenant_id("x"), &q), b.tenant(&tenant_id("y"), &q));
    let (sx, sy) = (x.get::<Sql>().await.unwrap(), y.get::<Sql>().await.unwrap());
    let endless =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let (slow, other) = tokio::join!(sx.query(endless, vec![]), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sy.query("SELECT 1", vec![]).await
    });
    assert_eq!(slow.unwrap_err(), HostError::Timeout);
    match other {
        Err(HostError::QuotaExceeded(m)) => assert!(m.contains("node"), "{m}"),
        r => panic!("the budget was in use: {r:?}"),
    }
    // Released with the call: the next one runs.
    sy.query("SELECT 1", vec![]).await.unwrap();
}
