//! A hostile tenant's SQL on the shared MariaDB server (WHARF_TEST_MYSQL_URL, which scripts/test
//! starts): other tenants' databases, catalogs, server files, global settings, users and
//! plugins, named locks, other sessions. After every attack the victim's data is read back
//! intact. What one tenant may spend (statements, results, connections, storage) and its purge:
//! `hostile_mysql_limits.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::str::FromStr;
use std::sync::Arc;

use sqlx::mysql::MySqlConnectOptions;
use sqlx::Connection;
use wharf_plugins::capabilities::sql::mysql::{tenant_name, tenant_password};
use wharf_plugins::capabilities::sql::{Sql, SqlBackend, SqlValue};
use wharf_plugins::capabilities::{
    Capabilities, HostError, TenantCapabilities, DEFAULT_RESULT_BUDGET_BYTES,
};
use wharf_tenancy::test_support::{mysql_admin_url, unique_suffix};
use wharf_tenancy::{Quotas, SqlQuotas};

/// RSS is measured here: the tests run one at a time.
pub(super) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(super) fn tenant_id(name: &str) -> String {
    format!("{name}-{}", unique_suffix().replace('_', "-"))
}

pub(super) fn backends() -> (Arc<Capabilities>, String) {
    let admin = mysql_admin_url();
    let b = wharf_plugins::test_support::capabilities(
        None,
        SqlBackend::Mysql(admin.clone()),
        DEFAULT_RESULT_BUDGET_BYTES,
    );
    (b, admin)
}

pub(super) fn quotas(sql: SqlQuotas) -> Quotas {
    Quotas {
        sql,
        ..Quotas::default()
    }
}

pub(super) fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.into())
}

/// A victim tenant with two secrets (read back by [`intact`]).
pub(super) async fn victim(b: &Arc<Capabilities>, id: &str) -> Arc<TenantCapabilities> {
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

pub(super) async fn intact(v: &TenantCapabilities, after: &str) {
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
pub(super) async fn login_as(
    admin: &str,
    tenant: &str,
) -> Result<sqlx::MySqlConnection, sqlx::Error> {
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
