//! A tenant's SQL. On Postgres: its own schema and its own login role that can use only that
//! schema (Wharf provisions both); statements run as that role, so another tenant's schema, server
//! files, programs and other roles are out of reach by Postgres' own privileges. On SQLite: one
//! database file per tenant, with ATTACH, extension loading and VACUUM INTO refused.
//! Parameters are always bound; each call is one statement under the tenant's statement timeout.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Column, Connection, PgPool, Row, SqlitePool, TypeInfo, ValueRef};
use wharf_metrics::Metrics;

use super::quota::{reject, Rate};
use super::{HostError, SqlBackend};
use crate::model::Quotas;

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}

/// Binds plugin parameters in order; the same for both databases, which share no bind trait.
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match p {
                SqlValue::Null => q.bind(None::<String>),
                SqlValue::Bool(b) => q.bind(b),
                SqlValue::Int(i) => q.bind(i),
                SqlValue::Float(f) => q.bind(f),
                SqlValue::Text(t) => q.bind(t),
                SqlValue::Bytes(b) => q.bind(b),
            };
        }
        q
    }};
}

enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub struct TenantSql {
    tenant: String,
    db: Db,
    rate: Rate,
    timeout: Duration,
    max_rows: usize,
    max_bytes: u64,
    metrics: Arc<Metrics>,
}

/// Role and schema name of a tenant: ids are `[a-z0-9-]`, so this is a safe identifier.
pub fn pg_identifier(tenant: &str) -> String {
    format!("wharf_t_{}", tenant.replace('-', "_"))
}

impl TenantSql {
    /// Opens the tenant's pool; on Postgres provisions its schema and role first unless
    /// `provisioned` says that was done already (see [`super::Backends::prepare`]).
    pub async fn open(
        tenant: &str,
        backend: &SqlBackend,
        q: &Quotas,
        provisioned: bool,
        metrics: Arc<Metrics>,
    ) -> Result<TenantSql, HostError> {
        let wait = Duration::from_millis(q.pool_wait_ms.max(1));
        let db = match backend {
            SqlBackend::Disabled => return Err(HostError::BackendUnavailable),
            SqlBackend::Postgres(admin_url) => {
                if !provisioned {
                    provision_postgres(tenant, admin_url, q).await?;
                }
                Db::Postgres(postgres_pool(tenant, admin_url, q, wait)?)
            }
            SqlBackend::Sqlite(dir) => Db::Sqlite(open_sqlite(tenant, dir, q, wait).await?),
        };
        let backend_label = if matches!(db, Db::Postgres(_)) {
            "postgres"
        } else {
            "sqlite"
        };
        metrics
            .pool_quota
            .with_label_values(&[&*metrics.tenant(tenant), backend_label])
            .set(i64::from(q.sql_max_connections));
        Ok(TenantSql {
            tenant: tenant.to_string(),
            db,
            rate: Rate::per_second(
                q.sql_queries_per_second,
                tenant,
                "sql_queries_per_second",
                metrics.clone(),
            ),
            timeout: Duration::from_millis(q.sql_statement_timeout_ms),
            max_rows: q.sql_max_rows as usize,
            max_bytes: q.sql_max_result_bytes,
            metrics,
        })
    }

    pub async fn query(&self, statement: &str, params: Vec<SqlValue>) -> Result<RowSet, HostError> {
        self.run(statement, params, true)
            .await
            .map(|(rows, _)| rows)
    }

    pub async fn execute(&self, statement: &str, params: Vec<SqlValue>) -> Result<u64, HostError> {
        self.run(statement, params, false).await.map(|(_, n)| n)
    }

    async fn run(
        &self,
        statement: &str,
        params: Vec<SqlValue>,
        want_rows: bool,
    ) -> Result<(RowSet, u64), HostError> {
        if statement.len() > 64 * 1024 || params.len() > 1000 {
            return Err(HostError::Invalid(
                "statement over 64 KiB or over 1000 parameters".into(),
            ));
        }
        self.rate.check()?;
        // Backstop over the server-side timeout: a dead connection must not hold the plugin.
        let budget = self.timeout + Duration::from_millis(500);
        match tokio::time::timeout(budget, self.run_inner(statement, params, want_rows)).await {
            Ok(r) => r,
            Err(_) => Err(HostError::Timeout),
        }
    }

    async fn run_inner(
        &self,
        statement: &str,
        params: Vec<SqlValue>,
        want_rows: bool,
    ) -> Result<(RowSet, u64), HostError> {
        let stmt = sqlx::AssertSqlSafe(statement.to_string());
        match &self.db {
            Db::Postgres(pool) => {
                let mut conn = self.acquire(pool, "postgres").await?;
                let mut tx = conn.begin().await.map_err(map_err)?;
                // SET LOCAL, every time: a plugin may have changed its session's settings.
                let set = format!("SET LOCAL statement_timeout = {}", self.timeout.as_millis());
                sqlx::query(sqlx::AssertSqlSafe(set))
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let q = bind_params!(sqlx::query(stmt), params);
                let out = if want_rows {
                    let rows = q.fetch_all(&mut *tx).await.map_err(map_err)?;
                    (self.collect(&rows, pg_value)?, 0)
                } else {
                    (
                        RowSet::default(),
                        q.execute(&mut *tx).await.map_err(map_err)?.rows_affected(),
                    )
                };
                tx.commit().await.map_err(map_err)?;
                Ok(out)
            }
            Db::Sqlite(pool) => {
                refuse_sqlite_escapes(statement)?;
                let mut conn = self.acquire(pool, "sqlite").await?;
                let q = bind_params!(sqlx::query(stmt), params);
                if want_rows {
                    let rows = q.fetch_all(&mut *conn).await.map_err(map_err)?;
                    Ok((self.collect(&rows, sqlite_value)?, 0))
                } else {
                    Ok((
                        RowSet::default(),
                        q.execute(&mut *conn)
                            .await
                            .map_err(map_err)?
                            .rows_affected(),
                    ))
                }
            }
        }
    }

    async fn acquire<DB: sqlx::Database>(
        &self,
        pool: &sqlx::Pool<DB>,
        backend: &str,
    ) -> Result<sqlx::pool::PoolConnection<DB>, HostError> {
        let waited = Instant::now();
        let conn = pool.acquire().await;
        let tenant = self.metrics.tenant(&self.tenant);
        self.metrics
            .pool_wait
            .with_label_values(&[&tenant, backend])
            .observe(waited.elapsed().as_secs_f64());
        let idle = pool.num_idle() as i64;
        self.metrics
            .pool_connections
            .with_label_values(&[&tenant, backend, "idle"])
            .set(idle);
        self.metrics
            .pool_connections
            .with_label_values(&[&tenant, backend, "in_use"])
            .set(pool.size() as i64 - idle);
        match conn {
            Ok(c) => Ok(c),
            Err(sqlx::Error::PoolTimedOut) => {
                reject(&self.metrics, &self.tenant, "sql_max_connections");
                Err(HostError::QuotaExceeded(format!(
                    "all {} SQL connections busy for {} ms",
                    pool.options().get_max_connections(),
                    pool.options().get_acquire_timeout().as_millis()
                )))
            }
            Err(e) => Err(map_err(e)),
        }
    }

    fn collect<R: Row>(
        &self,
        rows: &[R],
        value: fn(&R, usize) -> Result<SqlValue, HostError>,
    ) -> Result<RowSet, HostError> {
        if rows.len() > self.max_rows {
            reject(&self.metrics, &self.tenant, "sql_max_rows");
            return Err(HostError::QuotaExceeded(format!(
                "{} rows, the limit is {}",
                rows.len(),
                self.max_rows
            )));
        }
        let mut set = RowSet::default();
        if let Some(first) = rows.first() {
            set.columns = first
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect();
        }
        let mut bytes = 0u64;
        for row in rows {
            let mut out = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let v = value(row, i)?;
                bytes += match &v {
                    SqlValue::Text(t) => t.len() as u64,
                    SqlValue::Bytes(b) => b.len() as u64,
                    _ => 8,
                };
                out.push(v);
            }
            set.rows.push(out);
        }
        if bytes > self.max_bytes {
            reject(&self.metrics, &self.tenant, "sql_max_result_bytes");
            return Err(HostError::QuotaExceeded(format!(
                "{bytes} result bytes, the limit is {}",
                self.max_bytes
            )));
        }
        Ok(set)
    }
}

fn pg_value(row: &sqlx::postgres::PgRow, i: usize) -> Result<SqlValue, HostError> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    let get_err = |e: sqlx::Error| HostError::Backend(e.to_string());
    Ok(match ty.as_str() {
        "BOOL" => SqlValue::Bool(row.try_get(i).map_err(get_err)?),
        "INT2" => SqlValue::Int(row.try_get::<i16, _>(i).map_err(get_err)?.into()),
        "INT4" => SqlValue::Int(row.try_get::<i32, _>(i).map_err(get_err)?.into()),
        "INT8" => SqlValue::Int(row.try_get(i).map_err(get_err)?),
        "FLOAT4" => SqlValue::Float(row.try_get::<f32, _>(i).map_err(get_err)?.into()),
        "FLOAT8" => SqlValue::Float(row.try_get(i).map_err(get_err)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" => SqlValue::Text(row.try_get(i).map_err(get_err)?),
        "BYTEA" => SqlValue::Bytes(row.try_get(i).map_err(get_err)?),
        other => {
            return Err(HostError::Invalid(format!(
                "column {i} has type {other}, which plugins cannot receive; cast it (::text, ::int8, ::float8)"
            )))
        }
    })
}

fn sqlite_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<SqlValue, HostError> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    let get_err = |e: sqlx::Error| HostError::Backend(e.to_string());
    Ok(match ty.as_str() {
        "INTEGER" | "BOOLEAN" => SqlValue::Int(row.try_get(i).map_err(get_err)?),
        "REAL" => SqlValue::Float(row.try_get(i).map_err(get_err)?),
        "BLOB" => SqlValue::Bytes(row.try_get(i).map_err(get_err)?),
        _ => SqlValue::Text(row.try_get(i).map_err(get_err)?),
    })
}

fn map_err(e: sqlx::Error) -> HostError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let msg = db.message().to_string();
            match code.as_str() {
                "57014" => HostError::Timeout,
                "42501" => HostError::Denied(msg),
                c if c.starts_with("42") || c.starts_with("22") => HostError::Invalid(msg),
                _ if msg.contains("not authorized") => HostError::Denied(msg),
                _ => HostError::Backend(msg),
            }
        }
        sqlx::Error::PoolTimedOut => HostError::QuotaExceeded("no free SQL connection".into()),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => HostError::BackendUnavailable,
        _ => HostError::Backend(e.to_string()),
    }
}

/// Fleet-wide stable password without storing it: derived from the admin URL (a secret every
/// node has) and the tenant.
fn role_password(admin_url: &str, tenant: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("{admin_url}\n{tenant}")))[..32].to_string()
}

/// Creates (or updates) the tenant's role and schema. Idempotent; serialized across nodes.
pub async fn provision_postgres(
    tenant: &str,
    admin_url: &str,
    q: &Quotas,
) -> Result<(), HostError> {
    let ident = pg_identifier(tenant);
    let password = role_password(admin_url, tenant);
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(|_| HostError::BackendUnavailable)?;
    let provision = [
        // Serialize provisioning across nodes.
        "SELECT pg_advisory_xact_lock(7461726600)".to_string(),
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ident}') THEN \
             CREATE ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS; \
             END IF; END $$"
        ),
        format!("ALTER ROLE {ident} WITH LOGIN PASSWORD '{password}' CONNECTION LIMIT {}", q.sql_max_connections + 2),
        format!("CREATE SCHEMA IF NOT EXISTS {ident} AUTHORIZATION {ident}"),
        format!("REVOKE ALL ON SCHEMA {ident} FROM PUBLIC"),
        format!("REVOKE CREATE ON SCHEMA public FROM {ident}"),
        format!("ALTER ROLE {ident} SET search_path = {ident}"),
    ];
    let mut tx = admin.begin().await.map_err(map_err)?;
    for stmt in provision {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                tracing::error!(tenant, "provisioning the tenant's SQL schema failed: {e}");
                HostError::Backend(format!("provisioning failed: {e}"))
            })?;
    }
    tx.commit().await.map_err(map_err)?;
    let _ = admin.close().await;
    Ok(())
}

/// The tenant's pool, connecting as its own role. Connections open lazily, on first use.
fn postgres_pool(
    tenant: &str,
    admin_url: &str,
    q: &Quotas,
    wait: Duration,
) -> Result<PgPool, HostError> {
    let ident = pg_identifier(tenant);
    let password = role_password(admin_url, tenant);
    let options = PgConnectOptions::from_str(admin_url)
        .map_err(|e| HostError::Invalid(e.to_string()))?
        .username(&ident)
        .password(&password)
        .options([("search_path", ident.as_str())]);
    Ok(PgPoolOptions::new()
        .max_connections(q.sql_max_connections)
        .acquire_timeout(wait)
        .connect_lazy_with(options))
}

async fn open_sqlite(
    tenant: &str,
    dir: &std::path::Path,
    q: &Quotas,
    wait: Duration,
) -> Result<SqlitePool, HostError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| HostError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    let options = SqliteConnectOptions::new()
        .filename(dir.join(format!("{tenant}.db")))
        .create_if_missing(true)
        .busy_timeout(Duration::from_millis(q.sql_statement_timeout_ms));
    let pool = SqlitePoolOptions::new()
        .max_connections(q.sql_max_connections)
        .acquire_timeout(wait)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let mut handle = conn.lock_handle().await?;
                sqlite_guard::install(handle.as_raw_handle().as_ptr());
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(map_err)?;
    Ok(pool)
}

/// Statements that would reach outside the tenant's file and that the authorizer cannot see.
fn refuse_sqlite_escapes(statement: &str) -> Result<(), HostError> {
    let upper = statement.to_ascii_uppercase();
    // VACUUM INTO writes a copy of the database to any path: refuse the keyword outright.
    if upper
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w == "VACUUM")
    {
        return Err(HostError::Denied(
            "VACUUM is not available to plugins".into(),
        ));
    }
    Ok(())
}

/// SQLite's C-level guard: no attached databases, and an authorizer that refuses ATTACH, DETACH,
/// PRAGMA and `load_extension`.
mod sqlite_guard {
    use std::ffi::{c_char, c_int, c_void, CStr};

    use libsqlite3_sys as ffi;

    pub fn install(db: *mut ffi::sqlite3) {
        // SAFETY: `db` is a live connection handle, locked for us by sqlx for this call; the
        // authorizer is a plain function with no user data.
        unsafe {
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
            ffi::sqlite3_set_authorizer(db, Some(authorize), std::ptr::null_mut());
        }
    }

    extern "C" fn authorize(
        _: *mut c_void,
        action: c_int,
        arg1: *const c_char,
        arg2: *const c_char,
        _: *const c_char,
        _: *const c_char,
    ) -> c_int {
        match action {
            ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH | ffi::SQLITE_PRAGMA => ffi::SQLITE_DENY,
            ffi::SQLITE_FUNCTION => {
                let name = if arg2.is_null() {
                    ""
                } else {
                    // SAFETY: SQLite passes a NUL-terminated function name for SQLITE_FUNCTION.
                    unsafe { CStr::from_ptr(arg2) }.to_str().unwrap_or("")
                };
                let _ = arg1;
                if name.eq_ignore_ascii_case("load_extension") {
                    ffi::SQLITE_DENY
                } else {
                    ffi::SQLITE_OK
                }
            }
            _ => ffi::SQLITE_OK,
        }
    }
}
