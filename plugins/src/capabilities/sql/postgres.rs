//! A tenant's Postgres: its own database, login role and schema on the server Wharf's admin URL
//! names. A database of its own is what makes the rest hold: advisory locks, `pg_class` and
//! `pg_proc` are per database, so a tenant can neither take a lock that Wharf (its migrations,
//! its store) or another tenant uses, nor list other tenants' tables or read their functions.
//! CONNECT is granted to the tenant's role alone. Provisioning takes no lock a tenant can hold,
//! and its admin connection has lock and statement timeouts. Each pooled connection is reset
//! (advisory locks, settings, temporary tables) before it is reused.

use std::str::FromStr;
use std::time::Duration;

use sha2::Digest;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::values::pg_value;
use super::{map_err, no_rows, pg_names, RowSet, SqlValue, TenantSql};
use crate::capabilities::HostError;
use wharf_tenancy::Quotas;

/// Fleet-wide stable password without storing it: derived from the admin URL (a secret every
/// node has) and the tenant.
fn role_password(admin_url: &str, tenant: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("{admin_url}\n{tenant}")))[..32].to_string()
}

/// Admin sessions give up instead of queueing behind anything a tenant could hold.
const ADMIN_SESSION: &str = "SET lock_timeout = '5s'; SET statement_timeout = '60s'";

async fn admin_connection(options: &PgConnectOptions) -> Result<sqlx::PgConnection, HostError> {
    let mut conn = sqlx::PgConnection::connect_with(options)
        .await
        .map_err(|_| HostError::BackendUnavailable)?;
    sqlx::raw_sql(ADMIN_SESSION)
        .execute(&mut conn)
        .await
        .map_err(map_err)?;
    Ok(conn)
}

/// Runs statements one after another on `conn`, stopping at the first error.
async fn run_each(
    conn: &mut sqlx::PgConnection,
    statements: Vec<String>,
) -> Result<(), sqlx::Error> {
    for stmt in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Creates (or updates) the tenant's role, database and schema; returns their name
/// (`pg_names`). Idempotent, and safe to run on several nodes at once: each step tolerates the
/// object already existing.
pub async fn provision(tenant: &str, admin_url: &str, q: &Quotas) -> Result<String, HostError> {
    let password = role_password(admin_url, tenant);
    let admin_options =
        PgConnectOptions::from_str(admin_url).map_err(|e| HostError::Invalid(e.to_string()))?;
    let fail = |e: sqlx::Error| {
        tracing::error!(tenant, "provisioning the tenant's SQL failed: {e}");
        HostError::Backend(format!("provisioning failed: {e}"))
    };
    let mut admin = admin_connection(&admin_options).await?;
    let ident = pg_names::resolve(&mut admin, tenant).await.map_err(fail)?;
    let role = [
        format!(
            "DO $$ BEGIN CREATE ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT \
             NOREPLICATION NOBYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ),
        format!(
            "ALTER ROLE {ident} WITH LOGIN PASSWORD '{password}' CONNECTION LIMIT {}",
            q.sql.max_connections + 2
        ),
    ];
    run_each(&mut admin, role.to_vec()).await.map_err(fail)?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&ident)
        .fetch_optional(&mut admin)
        .await
        .map_err(fail)?;
    if exists.is_none() {
        // CREATE DATABASE cannot run in a transaction; a concurrent node may win the race.
        let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {ident}")))
            .execute(&mut admin)
            .await;
        match created {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(fail(e)),
        }
    }
    run_each(
        &mut admin,
        vec![
            format!("REVOKE ALL ON DATABASE {ident} FROM PUBLIC"),
            format!("GRANT CONNECT ON DATABASE {ident} TO {ident}"),
        ],
    )
    .await
    .map_err(fail)?;
    let _ = admin.close().await;

    let mut db = admin_connection(&admin_options.clone().database(&ident)).await?;
    let mut tx = db.begin().await.map_err(map_err)?;
    run_each(
        &mut tx,
        vec![
            format!("CREATE SCHEMA IF NOT EXISTS {ident} AUTHORIZATION {ident}"),
            format!("REVOKE ALL ON SCHEMA {ident} FROM PUBLIC"),
            "REVOKE ALL ON SCHEMA public FROM PUBLIC".to_string(),
            format!("ALTER ROLE {ident} IN DATABASE {ident} SET search_path = {ident}"),
        ],
    )
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(map_err)?;
    let _ = db.close().await;
    Ok(ident)
}

/// What a connection must not carry from one host call to the next.
const RESET: &str =
    "SELECT pg_advisory_unlock_all(); UNLISTEN *; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES";

/// The tenant's pool, connecting as its own role to its own database. Connections open lazily,
/// on first use, and are reset before going back to the pool.
pub fn pool(
    tenant: &str,
    ident: &str,
    admin_url: &str,
    q: &Quotas,
    wait: Duration,
) -> Result<PgPool, HostError> {
    let password = role_password(admin_url, tenant);
    let options = PgConnectOptions::from_str(admin_url)
        .map_err(|e| HostError::Invalid(e.to_string()))?
        .username(ident)
        .password(&password)
        .database(ident)
        .options([("search_path", ident)]);
    Ok(PgPoolOptions::new()
        .max_connections(q.sql.max_connections)
        .acquire_timeout(wait)
        .after_release(|conn, _| {
            Box::pin(async move {
                // A connection that cannot be reset is closed rather than reused.
                Ok(sqlx::raw_sql(RESET).execute(conn).await.is_ok())
            })
        })
        .connect_lazy_with(options))
}

/// Drops a tenant's database and role (its data goes with it). Idempotent.
pub async fn purge(tenant: &str, admin_url: &str) -> Result<(), HostError> {
    let admin_options =
        PgConnectOptions::from_str(admin_url).map_err(|e| HostError::Invalid(e.to_string()))?;
    let mut admin = admin_connection(&admin_options).await?;
    let names = pg_names::names_of(&mut admin, tenant)
        .await
        .map_err(map_err)?;
    let drops = names
        .iter()
        .flat_map(|n| {
            [
                format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"),
                format!("DROP ROLE IF EXISTS {n}"),
            ]
        })
        .collect();
    run_each(&mut admin, drops).await.map_err(map_err)?;
    pg_names::forget(&mut admin, tenant)
        .await
        .map_err(map_err)?;
    let _ = admin.close().await;
    Ok(())
}

/// Statements that only shrink the tenant's data stay allowed over the storage quota, so a tenant
/// can get back under it.
pub(super) fn frees_space(statement: &str) -> bool {
    let first = statement
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    ["DELETE", "TRUNCATE", "DROP"]
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k))
}

/// Marker of the server-side row-size guard's error.
pub(super) const ROW_GUARD: &str = "wharf: row over the result byte limit";

/// A tenant's query wrapped so that Postgres itself refuses any row over `max_bytes` and stops
/// after `max_rows + 1` rows. The statement runs unchanged inside a CTE (data-modifying
/// statements with RETURNING work there too). The CTE is MATERIALIZED so the guard is evaluated
/// row by row at run time: inlined, a constant row (`SELECT repeat('x', 400000000)`) had the
/// planner fold the guard, computing the row's text form in both arms of the CASE (21.7 s of
/// Postgres CPU for a 2.4 s query, and no statement timeout can interrupt a text conversion).
/// A row's size is taken once: its datum size first (cheap: no text conversion), its text form
/// only when the datum fits, which bounds that conversion.
pub(super) fn pg_guarded(statement: &str, max_bytes: u64, max_rows: usize) -> String {
    let inner = statement.trim().trim_end_matches(';');
    format!(
        "WITH wharf_q AS MATERIALIZED ({inner}\n) SELECT wharf_q.* FROM wharf_q \
         CROSS JOIN LATERAL (SELECT CASE WHEN pg_column_size(wharf_q) > {max_bytes} \
         THEN pg_column_size(wharf_q)::int8 ELSE octet_length(wharf_q::text)::int8 END AS n) \
         AS wharf_size \
         WHERE CASE WHEN wharf_size.n > {max_bytes} \
         THEN ('{ROW_GUARD}: ' || wharf_size.n)::int > 0 ELSE true END \
         LIMIT {}",
        max_rows + 1
    )
}

/// One host call: a transaction with the tenant's timeouts set again (a plugin may have changed
/// its session's settings), read-only when the tenant is over its storage quota.
pub(super) async fn run(
    sql: &TenantSql,
    pool: &PgPool,
    statement: &str,
    params: Vec<SqlValue>,
    want_rows: bool,
) -> Result<(RowSet, u64), HostError> {
    let mut conn = sql.acquire(pool, "postgres").await?;
    let mut tx = conn.begin().await.map_err(map_err)?;
    let ms = sql.timeout.as_millis();
    let set = format!("SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(set))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    if !frees_space(statement) && sql.over_storage_quota(|| storage_used(&mut tx)).await? {
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    let out = if want_rows {
        // Rows are checked on the server as they are produced (no row bigger than the result
        // cap, no more rows than the row cap) and counted here as they arrive: an oversized
        // result is refused before it is in memory.
        let guarded = sqlx::AssertSqlSafe(pg_guarded(statement, sql.max_bytes, sql.max_rows));
        let q = bind_params!(sqlx::query(guarded), params);
        (sql.collect(q.fetch(&mut *tx), pg_value).await?, 0)
    } else {
        let q = bind_params!(
            sqlx::query(sqlx::AssertSqlSafe(statement.to_string())),
            params
        );
        let done = q
            .execute(&mut *tx)
            .await
            .map_err(|e| sql.map_write_err(e))?;
        (no_rows(), done.rows_affected())
    };
    tx.commit().await.map_err(map_err)?;
    Ok(out)
}

/// The bytes of the tenant's tables in its schema.
async fn storage_used(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<u64, HostError> {
    let size: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(u64::try_from(size).unwrap_or(0))
}
