//! A hostile tenant on the shared MariaDB server (WHARF_TEST_MYSQL_URL, which scripts/test
//! starts), against its limits: long statements and sessions that would change Wharf's limits,
//! huge results, connections, storage; and a removed tenant's data purged before its id has a
//! new owner.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use wharf_plugins::capabilities::sql::{Sql, SqlValue};
use wharf_plugins::capabilities::HostError;
use wharf_tenancy::test_support::process_rss_bytes;
use wharf_tenancy::{Quotas, SqlQuotas};

use super::hostile_backends::{leave_a_secret, no_secret_left};
use super::hostile_mysql::{backends, intact, login_as, quotas, tenant_id, victim, SERIAL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_statements_are_bounded_and_sessions_keep_wharfs_limits() {
    let _serial = SERIAL.lock().await;
    let (b, _) = backends();
    let v = victim(&b, &tenant_id("victim")).await;
    let q = quotas(SqlQuotas {
        statement_timeout_ms: 300,
        max_connections: 2,
        ..Default::default()
    });
    let t = b.tenant(&tenant_id("slow"), &q);
    let sql = t.get::<Sql>().await.unwrap();
    for stmt in [
        "SELECT SLEEP(5)",
        "SELECT COUNT(*) FROM seq_1_to_100000000",
        "SELECT BENCHMARK(10000000000, MD5('x'))",
    ] {
        let started = Instant::now();
        match sql.query(stmt, vec![]).await {
            // BENCHMARK answers 0 when interrupted.
            Err(HostError::Timeout) | Ok(_) => {}
            other => panic!("{stmt}: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{stmt} ran {:?}",
            started.elapsed()
        );
        intact(&v, stmt).await;
    }
    // Neither the session nor one statement can lift the limit.
    for stmt in [
        "SET SESSION max_statement_time = 0",
        "SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(2)",
        "SET group_concat_max_len = 4294967295",
    ] {
        match sql.execute(stmt, vec![]).await {
            Err(HostError::Denied(_)) => {}
            other => panic!("{stmt}: {other:?}"),
        }
    }
    // Every pooled session, old or new, runs with Wharf's settings.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let sql = t.get::<Sql>().await.unwrap();
            sql.query(
                "SELECT @@max_statement_time, @@group_concat_max_len, @@autocommit",
                vec![],
            )
            .await
        }));
    }
    for task in tasks {
        let r = task.await.unwrap().unwrap();
        assert_eq!(
            r.rows,
            vec![vec![
                SqlValue::Float64(0.3),
                SqlValue::Int64(1 << 20),
                SqlValue::Int64(1)
            ]]
        );
    }
}

#[tokio::test]
async fn mysql_results_are_capped_while_they_stream() {
    let _serial = SERIAL.lock().await;
    let (b, _) = backends();
    let v = victim(&b, &tenant_id("victim")).await;
    let t = b.tenant(&tenant_id("big"), &Quotas::default());
    let sql = t.get::<Sql>().await.unwrap();
    sql.query("SELECT 1", vec![]).await.unwrap();
    let before = process_rss_bytes();
    let cap = Quotas::default().sql.max_result_bytes as usize;
    // One value over max_allowed_packet: MariaDB answers NULL.
    match sql.query("SELECT REPEAT('x', 60000000)", vec![]).await {
        Ok(r) => assert_eq!(r.rows, vec![vec![SqlValue::Null]]),
        Err(HostError::QuotaExceeded(_)) => {}
        other => panic!("one huge value: {other:?}"),
    }
    // GROUP_CONCAT stops at the result cap (group_concat_max_len), or the cap refuses it.
    match sql
        .query(
            "SELECT GROUP_CONCAT(REPEAT('x', 1000)) FROM seq_1_to_100000",
            vec![],
        )
        .await
    {
        Ok(r) => match &r.rows[0][0] {
            SqlValue::Text(s) => assert!(s.len() <= cap, "{} bytes", s.len()),
            other => panic!("{other:?}"),
        },
        Err(HostError::QuotaExceeded(_)) => {}
        other => panic!("a huge GROUP_CONCAT: {other:?}"),
    }
    // Many 10 KB rows, and millions of small ones: refused at the cap, the rest unread.
    for stmt in [
        "SELECT REPEAT('x', 10000) FROM seq_1_to_100000",
        "SELECT seq FROM seq_1_to_3000000",
    ] {
        match sql.query(stmt, vec![]).await {
            Err(HostError::QuotaExceeded(_)) => {}
            other => panic!("{stmt}: {other:?}"),
        }
        intact(&v, stmt).await;
    }
    let grown = process_rss_bytes().saturating_sub(before);
    assert!(grown < 40 << 20, "the gateway grew by {grown} bytes");
    // Results within the caps still come back, and the pool is usable.
    let r = sql
        .query("SELECT seq FROM seq_1_to_10", vec![])
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connections_are_capped_per_tenant_on_the_server() {
    let _serial = SERIAL.lock().await;
    let (b, admin) = backends();
    let v = victim(&b, &tenant_id("victim")).await;
    let e_id = tenant_id("pool");
    let q = Quotas {
        sql: SqlQuotas {
            max_connections: 2,
            statement_timeout_ms: 5000,
            ..Default::default()
        },
        pools: wharf_tenancy::PoolQuotas { wait_ms: 100 },
        ..Quotas::default()
    };
    let t = b.tenant(&e_id, &q);
    t.get::<Sql>().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            t.get::<Sql>()
                .await
                .unwrap()
                .query("SELECT SLEEP(0.6)", vec![])
                .await
        }));
    }
    // The victim is served meanwhile.
    tokio::time::sleep(Duration::from_millis(150)).await;
    intact(&v, "the evil tenant filling its pool").await;
    let (mut ok, mut quota) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(HostError::QuotaExceeded(_)) => quota += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, quota), (2, 8));
    // The pool's two sessions are open: the server refuses a third login as that user
    // (MAX_USER_CONNECTIONS), whoever opens it.
    let third = login_as(&admin, &e_id).await;
    let e = third.expect_err("a third session past MAX_USER_CONNECTIONS");
    assert!(e.to_string().contains("max_user_connections"), "{e}");
    intact(&v, "the evil tenant's extra login").await;
}

#[tokio::test]
async fn mysql_storage_quota_refuses_writes_until_data_is_removed() {
    let _serial = SERIAL.lock().await;
    let (b, _) = backends();
    let q = quotas(SqlQuotas {
        max_storage_bytes: 1 << 20,
        ..Default::default()
    });
    let t = b.tenant(&tenant_id("fat"), &q);
    let sql = t.get::<Sql>().await.unwrap();
    crate::hostile_backends::storage_quota_cycle(
        sql,
        "blob1",
        "INSERT INTO blob1 SELECT REPEAT(MD5(seq), 31) FROM seq_1_to_3000",
        &[
            "INSERT INTO blob1 VALUES ('more')",
            "UPDATE blob1 SET v = 'y'",
            "CREATE TABLE more_room (v TEXT)",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_removed_mysql_tenant_is_purged_and_a_new_owner_of_its_id_starts_empty() {
    let _serial = SERIAL.lock().await;
    let (b, admin) = backends();
    let v = victim(&b, &tenant_id("victim")).await;
    let id = tenant_id("gone");
    {
        let t = b.tenant(&id, &Quotas::default());
        leave_a_secret(t.get::<Sql>().await.unwrap()).await;
    }
    b.purge(&id).await.unwrap();
    b.purge(&id).await.expect("purging twice is fine");
    assert!(
        login_as(&admin, &id).await.is_err(),
        "the purged tenant's user still logs in"
    );
    let t = b.tenant(&id, &Quotas::default());
    no_secret_left(t.get::<Sql>().await.unwrap(), "MariaDB").await;
    intact(&v, "another tenant's purge").await;
}
