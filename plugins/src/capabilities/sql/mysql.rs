//! A tenant's MariaDB: its own database and its own user on the server Wharf's admin URL names.
//! Privileges do most of the work: the user holds data privileges on its database only (no FILE,
//! PROCESS, SUPER, CREATE USER, CREATE ROUTINE, LOCK TABLES, CREATE TEMPORARY TABLES, EVENT,
//! TRIGGER), so other databases, `mysql.*`, server files (`INTO OUTFILE`, `LOAD DATA`,
//! `LOAD_FILE`), other sessions (`KILL`, the process list), global settings and plugins are
//! refused by the server, and `information_schema` lists only what the user may see.
//! `MAX_USER_CONNECTIONS` is the tenant's connection quota, server-side.
//!
//! What privileges cannot express is refused from the statement text (mysql_text.rs) and
//! undone server-side: each session gets Wharf's limits at connect (`max_statement_time`,
//! `group_concat_max_len` at the result cap, a fixed `sql_mode`) and is reset when it goes back
//! to the pool (rollback, table locks and named locks released, limits set again); a session
//! that cannot be reset is closed. Named locks (`GET_LOCK`) are server-wide in MariaDB and have
//! no privilege: the lock functions are refused by name, and a lock that got through anyway
//! lives at most one call (`RELEASE_ALL_LOCKS` in the reset) under the statement timeout.
//! Statements go through the prepared-statement protocol, which runs one statement per call
//! (no multi-statements) and never asks the client for a local file.
//!
//! MariaDB only: MySQL has no `max_statement_time` for every statement (its
//! `max_execution_time` covers SELECT), so a MySQL server is refused at provisioning.

use std::str::FromStr;
use std::time::Duration;

use sha2::Digest;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Row, TypeInfo, ValueRef};

use super::{map_err, mysql_text, no_rows, RowSet, SqlValue, TenantSql};
use crate::capabilities::HostError;
use wharf_tenancy::Quotas;

/// The tenant's database and user name: a keyed hash of its id. MariaDB lists to a user only the
/// databases and users it has privileges on, so unlike Postgres no catalog shows other tenants'
/// names; the hash keeps the id out of server logs and file names all the same, and every node
/// derives the same name without a mapping table.
pub fn tenant_name(tenant: &str) -> String {
    let digest = hex::encode(sha2::Sha256::digest(format!("wharf-mysql\n{tenant}")));
    format!("wharf_{}", &digest[..24])
}

/// The user's password: derived from the admin URL (a secret every node has) and the tenant,
/// set again at each provisioning. Public for tests and operators' tools.
pub fn tenant_password(admin_url: &str, tenant: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("{admin_url}\n{tenant}")))[..32].to_string()
}

fn admin_options(admin_url: &str) -> Result<MySqlConnectOptions, HostError> {
    MySqlConnectOptions::from_str(admin_url).map_err(|e| HostError::Invalid(e.to_string()))
}

/// Admin sessions give up instead of queueing behind a tenant's metadata lock.
async fn admin_connection(admin_url: &str) -> Result<sqlx::MySqlConnection, HostError> {
    let mut conn = sqlx::MySqlConnection::connect_with(&admin_options(admin_url)?)
        .await
        .map_err(|_| HostError::BackendUnavailable)?;
    sqlx::raw_sql("SET SESSION lock_wait_timeout = 5, max_statement_time = 60")
        .execute(&mut conn)
        .await
        .map_err(map_err)?;
    Ok(conn)
}

async fn run_each(conn: &mut sqlx::MySqlConnection, stmts: &[String]) -> Result<(), sqlx::Error> {
    for stmt in stmts {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt.clone()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Creates (or updates) the tenant's database and user; returns their name. Idempotent and
/// safe on several nodes at once (`IF NOT EXISTS` throughout).
pub async fn provision(tenant: &str, admin_url: &str, q: &Quotas) -> Result<String, HostError> {
    let name = tenant_name(tenant);
    let password = tenant_password(admin_url, tenant);
    let fail = |e: sqlx::Error| {
        tracing::error!(tenant, "provisioning the tenant's MariaDB failed: {e}");
        HostError::Backend(format!("provisioning failed: {e}"))
    };
    let mut admin = admin_connection(admin_url).await?;
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut admin)
        .await
        .map_err(fail)?;
    if !version.contains("MariaDB") {
        return Err(HostError::Backend(format!(
            "server {version} is not MariaDB: Wharf needs max_statement_time to bound every statement"
        )));
    }
    let seconds = q.sql.statement_timeout_ms as f64 / 1000.0;
    run_each(
        &mut admin,
        &[
            format!("CREATE DATABASE IF NOT EXISTS `{name}`"),
            format!("CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY '{password}'"),
            format!(
                "ALTER USER '{name}'@'%' IDENTIFIED BY '{password}' WITH MAX_USER_CONNECTIONS {} \
                 MAX_STATEMENT_TIME {seconds}",
                q.sql.max_connections
            ),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE VIEW, \
                 SHOW VIEW, REFERENCES ON `{name}`.* TO '{name}'@'%'"
            ),
        ],
    )
    .await
    .map_err(fail)?;
    let _ = admin.close().await;
    Ok(name)
}

/// Every session's settings, at connect and again when it goes back to the pool. The lexer in
/// mysql_text.rs relies on this `sql_mode` (no ANSI_QUOTES, backslash escapes on).
fn session_settings(q: &Quotas) -> String {
    format!(
        "SET SESSION max_statement_time = {}, group_concat_max_len = {}, \
         lock_wait_timeout = {secs}, innodb_lock_wait_timeout = {secs}, autocommit = 1, \
         sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,PIPES_AS_CONCAT'",
        q.sql.statement_timeout_ms as f64 / 1000.0,
        q.sql.max_result_bytes.clamp(4, u64::from(u32::MAX)),
        secs = q.sql.statement_timeout_ms.div_ceil(1000).max(1),
    )
}

/// The tenant's pool, as its own user on its own database; connections open on first use.
pub fn pool(
    tenant: &str,
    admin_url: &str,
    q: &Quotas,
    wait: Duration,
) -> Result<MySqlPool, HostError> {
    let name = tenant_name(tenant);
    let options = admin_options(admin_url)?
        .username(&name)
        .password(&tenant_password(admin_url, tenant))
        .database(&name)
        // Each call's statement is prepared, run and closed: prepared statements count against
        // the server-wide max_prepared_stmt_count, which a cache per connection and tenant
        // would fill.
        .statement_cache_capacity(0);
    let settings = session_settings(q);
    let reset = format!("ROLLBACK; UNLOCK TABLES; DO RELEASE_ALL_LOCKS(); {settings}");
    Ok(MySqlPoolOptions::new()
        .max_connections(q.sql.max_connections)
        .acquire_timeout(wait)
        .after_connect(move |conn, _| {
            let settings = settings.clone();
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(settings))
                    .execute(conn)
                    .await
                    .map(drop)
            })
        })
        .after_release(move |conn, _| {
            let reset = reset.clone();
            // A connection that cannot be reset is closed rather than reused.
            Box::pin(async move {
                Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(reset))
                    .execute(conn)
                    .await
                    .is_ok())
            })
        })
        .connect_lazy_with(options))
}

/// Drops the tenant's database and user, ending its sessions first (a dropped user's open
/// sessions would otherwise live on). Idempotent.
pub async fn purge(tenant: &str, admin_url: &str) -> Result<(), HostError> {
    let name = tenant_name(tenant);
    let mut admin = admin_connection(admin_url).await?;
    let fail = |e: sqlx::Error| HostError::Backend(format!("purge failed: {e}"));
    run_each(&mut admin, &[format!("DROP USER IF EXISTS '{name}'@'%'")])
        .await
        .map_err(fail)?;
    let sessions: Vec<i64> =
        sqlx::query_scalar("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?")
            .bind(&name)
            .fetch_all(&mut admin)
            .await
            .map_err(fail)?;
    for id in sessions {
        // It may have ended on its own meanwhile.
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
            .execute(&mut admin)
            .await;
    }
    run_each(&mut admin, &[format!("DROP DATABASE IF EXISTS `{name}`")])
        .await
        .map_err(fail)?;
    let _ = admin.close().await;
    Ok(())
}

/// The node's small admin pool for storage checks, shared by its tenants (lazy: no
/// connection until a tenant writes).
pub(super) fn admin_pool(admin_url: &str) -> Result<MySqlPool, HostError> {
    Ok(MySqlPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(admin_options(admin_url)?))
}

/// Bytes the tenant's tables take on disk. InnoDB's `information_schema.TABLES` sizes are
/// statistics refreshed at most every 10 s, which a tenant could write far past; the
/// tablespace files' allocated sizes are exact but need PROCESS, so the admin reads them.
async fn storage_used(admin: &MySqlPool, name: &str) -> Result<u64, HostError> {
    let used: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE((SELECT SUM(ALLOCATED_SIZE) FROM information_schema.INNODB_SYS_TABLESPACES \
           WHERE SUBSTRING_INDEX(NAME, '/', 1) = ?), 0) \
         + COALESCE((SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES \
           WHERE TABLE_SCHEMA = ? AND ENGINE <> 'InnoDB'), 0) AS SIGNED)",
    )
    .bind(name)
    .bind(name)
    .fetch_one(admin)
    .await
    .map_err(map_err)?;
    Ok(u64::try_from(used).unwrap_or(0))
}

/// Statements that stay allowed over the storage quota (they only shrink data, or read it).
fn allowed_over_quota(first: &str) -> bool {
    super::postgres::frees_space(first)
        || [
            "SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "VALUES", "TABLE", "DO",
        ]
        .contains(&first)
}

/// A tenant's pool, and what it takes to measure its database.
pub(super) struct MysqlDb {
    pub pool: MySqlPool,
    /// The node's admin pool ([`admin_pool`]).
    pub admin: MySqlPool,
    pub name: String,
}

/// One host call on the tenant's pool.
pub(super) async fn run(
    sql: &TenantSql,
    db: &MysqlDb,
    statement: &str,
    params: Vec<SqlValue>,
    want_rows: bool,
) -> Result<(RowSet, u64), HostError> {
    let stmt = mysql_text::prepare(statement, params.len())?;
    let params: Vec<SqlValue> = stmt.order.iter().map(|&i| params[i].clone()).collect();
    let over = !super::postgres::frees_space(&stmt.first)
        && sql
            .over_storage_quota(|| storage_used(&db.admin, &db.name))
            .await?;
    if over && !allowed_over_quota(&stmt.first) {
        return Err(sql.storage_refusal());
    }
    let mut conn = sql.acquire(&db.pool, "mysql").await?;
    if over {
        // Reads only; the reset's ROLLBACK ends it should the statement fail.
        sqlx::raw_sql("START TRANSACTION READ ONLY")
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    let q = bind_params!(sqlx::query(sqlx::AssertSqlSafe(stmt.sql)), params);
    let out = if want_rows {
        match sql.collect(q.fetch(&mut *conn), mysql_value).await {
            Ok(rows) => (rows, 0),
            Err(e) => {
                // The rest of a refused result is not read: the session is closed, not drained.
                conn.close_on_drop();
                return Err(e);
            }
        }
    } else {
        let done = q
            .execute(&mut *conn)
            .await
            .map_err(|e| sql.map_write_err(e))?;
        (no_rows(), done.rows_affected())
    };
    if over {
        sqlx::raw_sql("COMMIT")
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(out)
}

/// MariaDB's error numbers as host errors: its SQLSTATEs lump privilege and syntax errors
/// together (42000), so the number decides. (A write in a read-only transaction, 1792, is
/// SQLSTATE 25006 as on Postgres: `map_write_err` makes it the storage quota.)
pub(super) fn map_error(db: &MySqlDatabaseError) -> HostError {
    let msg = db.message().to_string();
    match db.number() {
        // max_statement_time, interrupted, lock wait timeouts.
        1969 | 1317 | 1205 | 3024 => HostError::Timeout,
        // Access denied (database, table, column, global privilege, routine, user).
        1044 | 1045 | 1142 | 1143 | 1227 | 1370 | 1095 | 1211 | 1410 => HostError::Denied(msg),
        // max_user_connections and the per-hour resource limits.
        1203 | 1226 => HostError::QuotaExceeded(msg),
        // Syntax, unknown table or column, not supported in prepared statements, ….
        _ => HostError::Invalid(msg),
    }
}

fn mysql_value(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<SqlValue, HostError> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    let get_err = |e: sqlx::Error| HostError::Backend(e.to_string());
    Ok(match ty.as_str() {
        // MariaDB's BOOLEAN is TINYINT(1): an integer, as it is on the server.
        "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            SqlValue::Int64(row.try_get(i).map_err(get_err)?)
        }
        t if t.ends_with("UNSIGNED") => {
            let v: u64 = row.try_get(i).map_err(get_err)?;
            i64::try_from(v).map_or_else(|_| SqlValue::Text(v.to_string()), SqlValue::Int64)
        }
        "FLOAT" => SqlValue::Float64(row.try_get::<f32, _>(i).map_err(get_err)?.into()),
        "DOUBLE" => SqlValue::Float64(row.try_get(i).map_err(get_err)?),
        // DECIMAL travels as its text in both protocols.
        "DECIMAL" | "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
        | "SET" | "JSON" => SqlValue::Text(row.try_get_unchecked(i).map_err(get_err)?),
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            SqlValue::Bytes(row.try_get(i).map_err(get_err)?)
        }
        other => {
            return Err(HostError::Invalid(format!(
                "column {i} has type {other}, which plugins cannot receive; cast it (CAST(… AS CHAR), AS SIGNED, AS DOUBLE)"
            )))
        }
    })
}
