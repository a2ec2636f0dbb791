//! A hostile tenant's SQL on the shared MariaDB server (WHARF_TEST_MYSQL_URL, which scripts/test
//! starts): other tenants' databases, catalogs, server files, global settings, users and
//! plugins, named locks, other sessions, long statements, huge results, connections and storage.
//! After every attack the victim's data is read back intact.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlConnectOptions;
use sqlx::Connection;
use wharf_plugins::capabilities::sql::mysql::{tenant_name, tenant_password};
use wharf_plugins::capabilities::sql::{Sql, SqlBackend, SqlValue};
use wharf_plugins::capabilities::{
    Capabilities, HostError, TenantCapabilities, DEFAULT_RESULT_BUDGET_BYTES,
};
use wharf_tenancy::test_support::{mysql_admin_url, process_rss_bytes, unique_suffix};
use wharf_tenancy::{Quotas, SqlQuotas};

/// RSS is measured here: the tests run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tenant_id(name: &str) -> String {
    format!("{name}-{}", unique_suffix().replace('_', "-"))
}

fn backends() -> (Arc<Capabilities>, String) {
    let admin = mysql_admin_url();
    let b = wharf_plugins::test_support::capabilities(
        None,
        SqlBackend::Mysql(admin.clone()),
        DEFAULT_RESULT_BUDGET_BYTES,
    );
    (b, admin)
}

fn quotas(sql: SqlQuotas) -> Quotas {
    Quotas {
        sql,
        ..Quotas::default()
    }
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.into())
}

/// A victim tenant with two secrets (read back by [`intact`]).
async fn victim(b: &Arc<Capabilities>, id: &str) -> Arc<TenantCapabilities> {
    let t = b.tenant(id, &Quotas::default());
    let v = t.get::<Sql>().await.unwrap();
    v.execute("CREATE TABLE secrets (v VARCHAR(64))", vec![])
        .await
        .unwrap();
    assert_eq!(
        v.execute(
            "INSERT INTO secrets VALUES ($1), ($2)",
            vec![text("s1"), text("s2")]
        )
        .await
        .unwrap(),
        2
    );
    t
}

async fn intact(v: &TenantCapabilities, after: &str) {
    let r = v
        .get::<Sql>()
        .await
        .unwrap()
        .query("SELECT v FROM secrets ORDER BY v", vec![])
        .await
        .unwrap_or_else(|e| panic!("after {after}: {e:?}"));
    assert_eq!(
        r.rows,
        vec![vec![text("s1")], vec![text("s2")]],
        "after {after}"
    );
}

/// A direct login as the tenant's own MariaDB user: what the server itself allows it, with
/// Wharf's statement checks out of the way.
async fn login_as(admin: &str, tenant: &str) -> Result<sqlx::MySqlConnection, sqlx::Error> {
    let name = tenant_name(tenant);
    let options = MySqlConnectOptions::from_str(admin)
        .unwrap()
        .username(&name)
        .password(&tenant_password(admin, tenant))
        .database(&name);
    sqlx::MySqlConnection::connect_with(&options).await
}

#[tokio::test]
async fn mysql_tenants_cannot_reach_each_other_or_the_server() {
    let _serial = SERIAL.lock().await;
    let (b, admin) = backends();
    let (v_id, e_id) = (tenant_id("victim"), tenant_id("evil"));
    let vt = victim(&b, &v_id).await;
    let v = vt.get::<Sql>().await.unwrap();
    let evil = b.tenant(&e_id, &Quotas::default());
    let se = evil.get::<Sql>().await.unwrap();
    se.execute("CREATE TABLE mine (v TEXT)", vec![])
        .await
        .unwrap();
    let victim_db = tenant_name(&v_id);
    let victim_conn = v
        .query("SELECT CONNECTION_ID()", vec![])
        .await
        .unwrap()
        .rows[0][0]
        .clone();
    let SqlValue::Int64(victim_conn) = victim_conn else {
        panic!("{victim_conn:?}")
    };
    let outfile = std::env::temp_dir().join(format!("wharf-outfile-{}", unique_suffix()));
    let attacks = [
        format!("SELECT * FROM {victim_db}.secrets"),
        format!("SELECT * FROM `{victim_db}`.`secrets`"),
        format!("DROP DATABASE {victim_db}"),
        format!("LOCK TABLES {victim_db}.secrets WRITE"),
        format!("KILL {victim_conn}"),
        format!("KILL QUERY {victim_conn}"),
        format!("SELECT 1 INTO OUTFILE '{}'", outfile.display()),
        format!("SELECT 1 INTO DUMPFILE '{}'", outfile.display()),
        "LOAD DATA INFILE '/etc/passwd' INTO TABLE mine".to_string(),
        "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE mine".to_string(),
        "SELECT * FROM mysql.user".to_string(),
        "SELECT * FROM mysql.global_priv".to_string(),
        "SET GLOBAL max_connections = 1".to_string(),
        "SET GLOBAL max_statement_time = 0".to_string(),
        "SET SESSION max_statement_time = 0".to_string(),
        "SET @x = 1".to_string(),
        "SELECT 1 INTO @x".to_string(),
        "CREATE USER 'intruder'@'%' IDENTIFIED BY 'x'".to_string(),
        format!("GRANT ALL ON *.* TO '{}'@'%'", tenant_name(&e_id)),
        format!(
            "GRANT SELECT ON {victim_db}.* TO '{}'@'%'",
            tenant_name(&e_id)
        ),
        "CREATE FUNCTION sys_exec RETURNS INT SONAME 'lib_mysqludf_sys.so'".to_string(),
        "INSTALL SONAME 'ha_connect'".to_string(),
        "CREATE PROCEDURE p() SELECT 1".to_string(),
        "CREATE EVENT e ON SCHEDULE EVERY 1 SECOND DO SELECT 1".to_string(),
        "CREATE TEMPORARY TABLE tmp (x INT)".to_string(),
        "SELECT 1; DROP TABLE mine".to_string(),
        "SELECT GET_LOCK('wharf', 0)".to_string(),
        "SELECT IS_USED_LOCK('wharf')".to_string(),
        "START TRANSACTION".to_string(),
        "HANDLER mine OPEN".to_string(),
        "SHUTDOWN".to_string(),
        "FLUSH PRIVILEGES".to_string(),
        "SHOW GRANTS FOR 'root'@'localhost'".to_string(),
        "CREATE TABLE far (x INT) DATA DIRECTORY = '/tmp'".to_string(),
        "SELECT 1 /*!50000 , GET_LOCK('wharf', 0) */".to_string(),
    ];
    for stmt in &attacks {
        match se.execute(stmt, vec![]).await {
            Err(HostError::Denied(_) | HostError::Invalid(_)) => {}
            other => panic!("{stmt}: {other:?}"),
        }
        intact(&vt, stmt).await;
    }
    assert!(
        !outfile.exists(),
        "INTO OUTFILE wrote {}",
        outfile.display()
    );
    // Reading a server file needs FILE: MariaDB answers NULL.
    let r = se
        .query("SELECT LOAD_FILE('/etc/passwd')", vec![])
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Null]]);

    // The catalogs show the evil tenant its own database, user and sessions only.
    for catalog in [
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA",
        "SELECT TABLE_SCHEMA FROM information_schema.TABLES",
        "SELECT GRANTEE FROM information_schema.USER_PRIVILEGES",
        "SELECT GRANTEE FROM information_schema.SCHEMA_PRIVILEGES",
        "SELECT USER FROM information_schema.PROCESSLIST",
        "SELECT DB FROM information_schema.PROCESSLIST",
        "SHOW DATABASES",
        "SHOW PROCESSLIST",
    ] {
        let r = se.query(catalog, vec![]).await.unwrap();
        let seen = format!("{:?}", r.rows);
        assert!(
            !seen.contains(&victim_db) && !seen.contains("root") && !seen.contains(&v_id),
            "{catalog} shows {seen}"
        );
    }

    // Parameters: `$n` in any order and repeated, bound, never interpolated; `$1` in a literal
    // stays text.
    let evil_text = "'; DROP TABLE secrets; --";
    let r = v
        .query(
            "SELECT $2 AS a, '$1' AS b, $1 AS c, $2 AS d",
            vec![text(evil_text), SqlValue::Int64(7)],
        )
        .await
        .unwrap();
    assert_eq!(r.columns, vec!["a", "b", "c", "d"]);
    assert_eq!(
        r.rows,
        vec![vec![
            SqlValue::Int64(7),
            text("$1"),
            text(evil_text),
            SqlValue::Int64(7)
        ]]
    );
    intact(&vt, "the parameter probes").await;

    // The server's own refusals, with Wharf's statement checks out of the way: a tenant's own
    // user, logged in directly (a tenant whose pool has room for one more session).
    let d_id = tenant_id("direct");
    b.tenant(&d_id, &Quotas::default())
        .get::<Sql>()
        .await
        .unwrap();
    let mut direct = login_as(&admin, &d_id).await.unwrap();
    for stmt in [
        format!("SELECT * FROM {victim_db}.secrets"),
        format!("LOCK TABLES {victim_db}.secrets READ"),
        "SET GLOBAL max_connections = 1".to_string(),
        "CREATE USER 'intruder'@'%'".to_string(),
        format!("KILL {victim_conn}"),
        "SELECT * FROM mysql.user".to_string(),
    ] {
        let e = sqlx::raw_sql(sqlx::AssertSqlSafe(stmt.clone()))
            .execute(&mut direct)
            .await;
        assert!(e.is_err(), "the server allowed {stmt}");
    }
    let _ = direct.close().await;
    intact(&vt, "the direct login").await;
}

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
        let s = t.get::<Sql>().await.unwrap();
        s.execute("CREATE TABLE secrets (v TEXT)", vec![])
            .await
            .unwrap();
        s.execute("INSERT INTO secrets VALUES ('old owner''s')", vec![])
            .await
            .unwrap();
    }
    b.purge(&id).await.unwrap();
    b.purge(&id).await.expect("purging twice is fine");
    assert!(
        login_as(&admin, &id).await.is_err(),
        "the purged tenant's user still logs in"
    );
    let t = b.tenant(&id, &Quotas::default());
    let e = t
        .get::<Sql>()
        .await
        .unwrap()
        .query("SELECT v FROM secrets", vec![])
        .await
        .unwrap_err();
    assert!(matches!(e, HostError::Invalid(_)), "table survived: {e:?}");
    intact(&v, "another tenant's purge").await;
}
