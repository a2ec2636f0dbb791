//! A hostile tenant's SQL against the shared Postgres and the gateway's memory: locks shared
//! with Wharf or other tenants, catalogs, results bigger than the caps, data that grows without
//! bound. Real Postgres (WHARF_TEST_DATABASE_URL). SQLite files, purges and the node's result
//! budget: `hostile_sqlite.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use wharf_plugins::capabilities::sql::{pg_name, SqlValue};
use wharf_plugins::capabilities::sql::{Sql, SqlBackend};
use wharf_plugins::capabilities::{Capabilities, HostError, DEFAULT_RESULT_BUDGET_BYTES};
use wharf_tenancy::test_support::{fresh_postgres_url, process_rss_bytes, unique_suffix};
use wharf_tenancy::Quotas;

/// The tests here measure this process's memory and CPU: they run one at a time.
pub(super) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(super) fn tenant_id(name: &str) -> String {
    format!("{name}-{}", unique_suffix().replace('_', "-"))
}

pub(super) fn backends(sql: SqlBackend) -> Arc<Capabilities> {
    wharf_plugins::test_support::capabilities(None, sql, DEFAULT_RESULT_BUDGET_BYTES)
}

pub(super) fn quota_exceeded(r: Result<impl std::fmt::Debug, HostError>, what: &str) {
    match r {
        Err(HostError::QuotaExceeded(_)) => {}
        other => panic!("{what}: expected quota-exceeded, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_locks_and_catalogs_are_the_tenants_own() {
    let _serial = SERIAL.lock().await;
    let admin = fresh_postgres_url().await;
    let b = backends(SqlBackend::Postgres(admin.clone()));
    let (a_id, b_id) = (tenant_id("a"), tenant_id("b"));
    let sa = b.tenant(&a_id, &Quotas::default());
    let sb = b.tenant(&b_id, &Quotas::default());
    let (a, bb) = (
        sa.get::<Sql>().await.unwrap(),
        sb.get::<Sql>().await.unwrap(),
    );

    // A holds lock 42 and the id Wharf once used to serialize provisioning, session-level.
    a.execute(
        "SELECT pg_advisory_lock(42), pg_advisory_lock(7461726600)",
        vec![],
    )
    .await
    .unwrap();
    let r = bb
        .query("SELECT pg_try_advisory_lock(42) AS got", vec![])
        .await
        .unwrap();
    assert_eq!(
        r.rows,
        vec![vec![SqlValue::Boolean(true)]],
        "B's lock 42 is B's own"
    );
    bb.execute("SELECT pg_advisory_unlock_all()", vec![])
        .await
        .unwrap();
    // Provisioning a new tenant is not blocked by anything A holds.
    let started = Instant::now();
    let c = b.tenant(&tenant_id("c"), &Quotas::default());
    c.get::<Sql>()
        .await
        .unwrap()
        .query("SELECT 1::int8", vec![])
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A's session locks did not survive its call: the pooled connection was reset.
    let a_db = sqlx::postgres::PgConnectOptions::from_str(&admin)
        .unwrap()
        .database(&pg_name(&admin, &a_id).await.unwrap().unwrap());
    let mut probe = sqlx::PgConnection::connect_with(&a_db).await.unwrap();
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(42)")
        .fetch_one(&mut probe)
        .await
        .unwrap();
    assert!(free, "A's lock 42 was released with its connection");

    // A's table and function are invisible to B's catalogs.
    a.execute("CREATE TABLE a_secret_table (v text)", vec![])
        .await
        .unwrap();
    a.execute(
        "CREATE FUNCTION a_secret_fn() RETURNS int LANGUAGE sql AS 'SELECT 4242'",
        vec![],
    )
    .await
    .unwrap();
    for (what, stmt) in [
        (
            "pg_class",
            "SELECT count(*)::int8 FROM pg_class WHERE relname = 'a_secret_table'",
        ),
        (
            "pg_proc",
            "SELECT count(*)::int8 FROM pg_proc WHERE prosrc LIKE '%4242%'",
        ),
        (
            "pg_namespace",
            &*format!(
                "SELECT count(*)::int8 FROM pg_namespace WHERE nspname = '{}'",
                pg_name(&admin, &a_id).await.unwrap().unwrap()
            ),
        ),
    ] {
        let r = bb.query(stmt, vec![]).await.unwrap();
        assert_eq!(
            r.rows,
            vec![vec![SqlValue::Int64(0)]],
            "{what} shows A's objects to B"
        );
    }
    // B cannot connect to A's database at all (nor to the store's) through its pool's role.
    let b_name = pg_name(&admin, &b_id).await.unwrap().unwrap();
    let b_on_a = a_db.clone().username(&b_name).password("x");
    assert!(sqlx::PgConnection::connect_with(&b_on_a).await.is_err());
}

#[tokio::test]
async fn postgres_results_are_capped_while_they_stream() {
    let _serial = SERIAL.lock().await;
    let admin = fresh_postgres_url().await;
    let b = backends(SqlBackend::Postgres(admin));
    let t = b.tenant(&tenant_id("big"), &Quotas::default());
    let sql = t.get::<Sql>().await.unwrap();
    sql.query("SELECT 1::int8", vec![]).await.unwrap();
    let before = process_rss_bytes();
    // One 60 MB row, and 3 M small rows: each refused without holding the result. (Measuring
    // a huge row on the server may itself take the statement's whole time: a timeout is a
    // refusal too.)
    match sql.query("SELECT repeat('x', 60000000) AS v", vec![]).await {
        Err(HostError::QuotaExceeded(_) | HostError::Timeout) => {}
        other => panic!("one huge row: {other:?}"),
    }
    quota_exceeded(
        sql.query("SELECT g::int8 FROM generate_series(1, 3000000) g", vec![])
            .await,
        "millions of rows",
    );
    let grown = process_rss_bytes().saturating_sub(before);
    assert!(grown < 40 << 20, "the gateway grew by {grown} bytes");
    // Results within the caps, and data-modifying statements with RETURNING, still work.
    sql.execute("CREATE TABLE t (v text)", vec![])
        .await
        .unwrap();
    let r = sql
        .query("INSERT INTO t VALUES ('a'), ('b') RETURNING v;", vec![])
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 2);
}

/// `pg_database` and `pg_roles` are cluster-wide: every tenant reads them. Its own database and
/// role, and every other tenant's, are named `wharf_` + random hex, so the catalogs list no
/// tenant id (the operator's customer list). A tenant provisioned under the old id-derived
/// name keeps it, with its data.
#[tokio::test]
async fn cluster_catalogs_name_no_tenant() {
    let _serial = SERIAL.lock().await;
    let admin = fresh_postgres_url().await;
    let b = backends(SqlBackend::Postgres(admin.clone()));
    let (a_id, b_id) = (tenant_id("acmecorp"), tenant_id("betabank"));
    let a = b.tenant(&a_id, &Quotas::default());
    a.get::<Sql>().await.unwrap();
    let bb = b.tenant(&b_id, &Quotas::default());
    let bsql = bb.get::<Sql>().await.unwrap();
    for catalog in [
        "SELECT datname::text FROM pg_database",
        "SELECT rolname::text FROM pg_roles",
        "SELECT nspname::text FROM pg_namespace",
    ] {
        let r = bsql.query(catalog, vec![]).await.unwrap();
        let names: Vec<String> = r.rows.iter().map(|row| format!("{:?}", row[0])).collect();
        for id in [&a_id, &b_id] {
            let plain = id.replace('-', "_");
            assert!(
                !names.iter().any(|n| n.contains("acmecorp")
                    || n.contains("betabank")
                    || n.contains(&plain)),
                "{catalog} names tenant {id}: {names:?}"
            );
        }
    }
    // Names are Wharf's own shape, distinct per tenant.
    let (na, nb) = (
        pg_name(&admin, &a_id).await.unwrap().unwrap(),
        pg_name(&admin, &b_id).await.unwrap().unwrap(),
    );
    assert!(
        na.starts_with("wharf_") && na.len() == 30 && na != nb,
        "{na} {nb}"
    );

    // A tenant whose database was made under the old name keeps it and its data.
    let old_id = tenant_id("legacy");
    let old_name = format!("wharf_t_{}", old_id.replace('-', "_"));
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {old_name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let old = b.tenant(&old_id, &Quotas::default());
    old.get::<Sql>().await.unwrap();
    assert_eq!(pg_name(&admin, &old_id).await.unwrap().unwrap(), old_name);
    b.purge(&old_id).await.unwrap();
    let gone: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&old_name)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    assert_eq!(gone, None, "the purge drops the legacy database too");
    assert_eq!(pg_name(&admin, &old_id).await.unwrap(), None);
}

/// The query: a 400 MB constant row. The guard used to be folded by the planner into
/// two text conversions of the row (21.7 s of Postgres CPU for a 2.4 s query, beyond any
/// statement timeout's reach); now it is refused as over the result cap, its size read from the
/// row's datum, with the statement timeout out of the way so nothing else can refuse it.
#[tokio::test]
async fn a_huge_constant_row_is_refused_by_its_size_not_by_converting_it() {
    let _serial = SERIAL.lock().await;
    let admin = fresh_postgres_url().await;
    let b = backends(SqlBackend::Postgres(admin));
    let q = Quotas {
        sql: wharf_tenancy::SqlQuotas {
            statement_timeout_ms: 60_000,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let t = b.tenant(&tenant_id("const"), &q);
    let sql = t.get::<Sql>().await.unwrap();
    let started = std::time::Instant::now();
    quota_exceeded(
        sql.query("SELECT repeat('x', 400000000) AS v", vec![])
            .await,
        "a 400 MB constant row",
    );
    eprintln!("refused in {:?}", started.elapsed());
    // Small constant rows still come back.
    let r = sql
        .query("SELECT 'abc' AS v, 2::int8 AS w", vec![])
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 1);
}

#[tokio::test]
async fn postgres_storage_quota_refuses_writes_until_data_is_removed() {
    let _serial = SERIAL.lock().await;
    let admin = fresh_postgres_url().await;
    let b = backends(SqlBackend::Postgres(admin));
    let q = Quotas {
        sql: wharf_tenancy::SqlQuotas {
            max_storage_bytes: 1 << 20,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let t = b.tenant(&tenant_id("fat"), &q);
    let sql = t.get::<Sql>().await.unwrap();
    storage_quota_cycle(
        sql,
        "blob",
        "INSERT INTO blob SELECT md5(g::text) || repeat(md5(g::text), 30) FROM generate_series(1, 3000) g",
        &["INSERT INTO blob VALUES ('more')"],
    )
    .await;
}

/// A tenant fills `table` (text column `v`) past its 1 MiB storage quota with `fill`: each of
/// `refused` then fails `quota-exceeded`, reads still work, and emptying the table (TRUNCATE)
/// brings writes back. The size is checked every couple of seconds, so each step waits that.
pub(crate) async fn storage_quota_cycle(
    sql: &wharf_plugins::capabilities::sql::TenantSql,
    table: &str,
    fill: &str,
    refused: &[&str],
) {
    sql.execute(&format!("CREATE TABLE {table} (v TEXT)"), vec![])
        .await
        .unwrap();
    sql.execute(fill, vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for stmt in refused {
        quota_exceeded(sql.execute(stmt, vec![]).await, stmt);
    }
    sql.query(&format!("SELECT COUNT(*) FROM {table}"), vec![])
        .await
        .unwrap();
    sql.execute(&format!("TRUNCATE {table}"), vec![])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    sql.execute(&format!("INSERT INTO {table} VALUES ('fits')"), vec![])
        .await
        .unwrap();
}

/// A tenant about to be removed leaves a row behind in its SQL backend.
pub(super) async fn leave_a_secret(sql: &wharf_plugins::capabilities::sql::TenantSql) {
    sql.execute("CREATE TABLE secrets (v text)", vec![])
        .await
        .unwrap();
    sql.execute("INSERT INTO secrets VALUES ('old owner''s')", vec![])
        .await
        .unwrap();
}

/// The new owner of a purged tenant's id finds no trace of that row: not even its table.
pub(super) async fn no_secret_left(
    sql: &wharf_plugins::capabilities::sql::TenantSql,
    backend: &str,
) {
    let e = sql
        .query("SELECT v FROM secrets", vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(e, HostError::Invalid(_)),
        "{backend}: table survived: {e:?}"
    );
}
