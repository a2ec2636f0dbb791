//! Tenants' SQL from the attacker's side: every isolation line is tried and must hold. Real
//! Postgres (WHARF_TEST_DATABASE_URL), as scripts/test starts it; SQLite in temp dirs.

use wharf_plugins::capabilities::sql::SqlValue;
use wharf_plugins::capabilities::sql::{Sql, SqlBackend};
use wharf_plugins::capabilities::HostError;
use wharf_tenancy::test_support::{fresh_postgres_url, unique_suffix};
use wharf_tenancy::Quotas;

use crate::backends::{backends, tenant_id};

async fn expect_err(r: Result<impl std::fmt::Debug, HostError>, what: &str) -> HostError {
    match r {
        Ok(v) => panic!("{what} must fail, got {v:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn postgres_tenants_cannot_escape_their_schema() {
    let admin = fresh_postgres_url().await;
    let b = backends(SqlBackend::Postgres(admin.clone()));
    let (a_id, e_id) = (tenant_id("a"), tenant_id("evil"));
    let q = Quotas {
        sql: wharf_tenancy::SqlQuotas {
            statement_timeout_ms: 300,
            ..Default::default()
        },
        ..Quotas::default()
    };
    let a = b.tenant(&a_id, &q);
    let evil = b.tenant(&e_id, &q);
    let (sa, se) = (
        a.get::<Sql>().await.unwrap(),
        evil.get::<Sql>().await.unwrap(),
    );
    sa.execute("CREATE TABLE secrets (v TEXT)", vec![])
        .await
        .unwrap();
    assert_eq!(
        sa.execute(
            "INSERT INTO secrets VALUES ($1), ($2)",
            vec![SqlValue::Text("s1".into()), SqlValue::Text("s2".into())]
        )
        .await
        .unwrap(),
        2
    );
    let rows = sa
        .query("SELECT v FROM secrets ORDER BY v", vec![])
        .await
        .unwrap();
    assert_eq!(rows.columns, vec!["v"]);
    assert_eq!(
        rows.rows,
        vec![
            vec![SqlValue::Text("s1".into())],
            vec![SqlValue::Text("s2".into())]
        ]
    );

    let name = |t: String| {
        let admin = admin.clone();
        async move {
            wharf_plugins::capabilities::sql::pg_name(&admin, &t)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let a_schema = name(a_id.clone()).await;
    let e_schema = name(e_id.clone()).await;
    let attacks = [
        format!("SELECT * FROM {a_schema}.secrets"),
        format!("SET ROLE {a_schema}"),
        "SELECT pg_read_file('/etc/passwd')".to_string(),
        "COPY (SELECT 1) TO PROGRAM 'id'".to_string(),
        "SELECT rolpassword FROM pg_authid".to_string(),
        format!("ALTER ROLE {e_schema} SUPERUSER"),
        "CREATE EXTENSION IF NOT EXISTS dblink".to_string(),
        "CREATE TABLE public.planted (x int)".to_string(),
        "SET SESSION AUTHORIZATION postgres".to_string(),
    ];
    for stmt in &attacks {
        let e = expect_err(se.execute(stmt, vec![]).await, stmt).await;
        assert!(
            matches!(e, HostError::Denied(_) | HostError::Invalid(_)),
            "{stmt}: {e:?}"
        );
    }
    // Changing its own search_path reaches nothing new.
    se.execute(&format!("SET search_path = {a_schema}"), vec![])
        .await
        .unwrap();
    let e = expect_err(
        se.query("SELECT * FROM secrets", vec![]).await,
        "search_path escape",
    )
    .await;
    assert!(
        matches!(e, HostError::Denied(_) | HostError::Invalid(_)),
        "{e:?}"
    );
    // Its own session setting cannot lift the statement timeout.
    se.execute("SET statement_timeout = 0", vec![])
        .await
        .unwrap();
    assert_eq!(
        expect_err(se.query("SELECT pg_sleep(2)", vec![]).await, "sleep").await,
        HostError::Timeout
    );
    // Parameters are bound, never interpolated.
    let evil_text = "'; DROP TABLE secrets; --";
    let r = se
        .query(
            "SELECT $1::text AS v",
            vec![SqlValue::Text(evil_text.into())],
        )
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Text(evil_text.into())]]);
    assert_eq!(
        sa.query("SELECT count(*)::int8 FROM secrets", vec![])
            .await
            .unwrap()
            .rows,
        vec![vec![SqlValue::Int64(2)]]
    );
}

#[tokio::test]
async fn postgres_pool_quota_two_of_ten() {
    let admin = fresh_postgres_url().await;
    let b = backends(SqlBackend::Postgres(admin));
    let q = Quotas {
        sql: wharf_tenancy::SqlQuotas {
            max_connections: 2,
            statement_timeout_ms: 5000,
            ..Default::default()
        },
        pools: wharf_tenancy::PoolQuotas { wait_ms: 100 },
        ..Quotas::default()
    };
    let t = b.tenant(&tenant_id("pool"), &q);
    t.get::<Sql>().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            t.get::<Sql>()
                .await
                .unwrap()
                .query("SELECT pg_sleep(0.6)::text", vec![])
                .await
        }));
    }
    let (mut ok, mut quota) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(HostError::QuotaExceeded(_)) => quota += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(
        (ok, quota),
        (2, 8),
        "2 run, the rest are refused after waiting 100 ms"
    );
}

#[tokio::test]
async fn sqlite_tenants_stay_in_their_file() {
    let dir = std::env::temp_dir().join(format!("wharf-sql-{}", unique_suffix()));
    let b = backends(SqlBackend::Sqlite(dir.clone()));
    let (a, evil) = (
        b.tenant("a", &Quotas::default()),
        b.tenant("evil", &Quotas::default()),
    );
    let (sa, se) = (
        a.get::<Sql>().await.unwrap(),
        evil.get::<Sql>().await.unwrap(),
    );
    sa.execute("CREATE TABLE secrets (v TEXT)", vec![])
        .await
        .unwrap();
    sa.execute(
        "INSERT INTO secrets VALUES ($1)",
        vec![SqlValue::Text("s".into())],
    )
    .await
    .unwrap();
    assert_eq!(
        sa.query("SELECT v, 1 AS n FROM secrets", vec![])
            .await
            .unwrap()
            .rows,
        vec![vec![SqlValue::Text("s".into()), SqlValue::Int64(1)]]
    );
    let other = dir.join("a.db");
    for stmt in [
        format!("ATTACH DATABASE '{}' AS a", other.display()),
        "SELECT load_extension('/tmp/x.so')".to_string(),
        format!("VACUUM INTO '{}'", dir.join("stolen.db").display()),
        "PRAGMA writable_schema = ON".to_string(),
        "SELECT * FROM secrets".to_string(),
    ] {
        let e = expect_err(se.query(&stmt, vec![]).await, &stmt).await;
        assert!(
            matches!(
                e,
                HostError::Denied(_) | HostError::Invalid(_) | HostError::Backend(_)
            ),
            "{stmt}: {e:?}"
        );
    }
    assert!(!dir.join("stolen.db").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
