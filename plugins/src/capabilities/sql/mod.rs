//! A tenant's SQL. On Postgres: its own schema and its own login role that can use only that
//! schema (Wharf provisions both); statements run as that role, so another tenant's schema, server
//! files, programs and other roles are out of reach by Postgres' own privileges. On MariaDB: its
//! own database and user, the same by MariaDB's privileges (mysql.rs). On SQLite: one database
//! file per tenant, with ATTACH, extension loading and VACUUM INTO refused.
//! Parameters are always bound; each call is one statement under the tenant's statement timeout.
//! This module holds what the backends share (quotas, the pool's metrics, reading rows under the
//! caps); each backend module runs a call its own way (`run`).

/// Binds plugin parameters in order; the same for every database, which share no bind trait.
/// (Defined before the modules so that each backend can use it.)
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match p {
                SqlValue::Null => q.bind(None::<String>),
                SqlValue::Boolean(b) => q.bind(b),
                SqlValue::Int64(i) => q.bind(i),
                SqlValue::Float64(f) => q.bind(f),
                SqlValue::Text(t) => q.bind(t),
                SqlValue::Bytes(b) => q.bind(b),
            };
        }
        q
    }};
}

mod host;
pub mod mysql;
mod mysql_text;
mod pg_names;
pub mod postgres;
pub mod sqlite;
mod values;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sqlx::{Column, PgPool, Row, SqlitePool};
use wharf_metrics::Metrics;

use super::quota::{refuse, CallThrottle, ResultBudget};
use super::HostError;
pub use host::{Sql, SqlBackend};
use postgres::ROW_GUARD;
pub(super) use values::map_err;
use wharf_tenancy::{Quotas, SqlQuotas};

pub use crate::bindings::wharf::plugin::sql::{RowSet, SqlValue};

fn no_rows() -> RowSet {
    RowSet {
        columns: Vec::new(),
        rows: Vec::new(),
    }
}

enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
    Mysql(mysql::MysqlDb),
}

impl Db {
    /// The metrics' `backend` label.
    fn label(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
            Db::Mysql(_) => "mysql",
        }
    }
}

pub struct TenantSql {
    tenant: String,
    db: Db,
    rate: CallThrottle,
    timeout: Duration,
    max_rows: usize,
    max_bytes: u64,
    max_storage: u64,
    /// When the storage quota was last checked, and whether the tenant was over it.
    storage: parking_lot::Mutex<Option<(Instant, bool)>>,
    budget: ResultBudget,
    metrics: Arc<Metrics>,
    /// On Postgres and MariaDB: the name the tenant was provisioned under.
    provisioned: Option<String>,
}

const STORAGE_CHECK_EVERY: Duration = Duration::from_secs(2);

pub use pg_names::lookup as pg_name;

impl TenantSql {
    /// Opens the tenant's pool; on Postgres and MariaDB provisions its database and role first
    /// unless `provisioned` names them already (see [`Sql`]'s `prepare`).
    pub async fn open(
        tenant: &str,
        backend: &SqlBackend,
        q: &Quotas,
        provisioned: Option<String>,
        mysql_admin: Option<sqlx::MySqlPool>,
        metrics: Arc<Metrics>,
        budget: ResultBudget,
    ) -> Result<TenantSql, HostError> {
        let wait = Duration::from_millis(q.pools.wait_ms.max(1));
        let mut name = None;
        let db = match backend {
            SqlBackend::Disabled => return Err(HostError::BackendUnavailable),
            SqlBackend::Postgres(admin_url) => {
                let ident = match provisioned {
                    Some(ident) => ident,
                    None => postgres::provision(tenant, admin_url, q).await?,
                };
                let pool = postgres::pool(tenant, &ident, admin_url, q, wait)?;
                name = Some(ident);
                Db::Postgres(pool)
            }
            SqlBackend::Mysql(admin_url) => {
                let ident = match provisioned {
                    Some(ident) => ident,
                    None => mysql::provision(tenant, admin_url, q).await?,
                };
                name = Some(ident.clone());
                Db::Mysql(mysql::MysqlDb {
                    pool: mysql::pool(tenant, admin_url, q, wait)?,
                    admin: match mysql_admin {
                        Some(admin) => admin,
                        None => mysql::admin_pool(admin_url)?,
                    },
                    name: ident,
                })
            }
            SqlBackend::Sqlite(dir) => Db::Sqlite(sqlite::open(tenant, dir, q, wait).await?),
        };
        metrics
            .pool_quota
            .with_label_values(&[&*metrics.tenant(tenant), db.label()])
            .set(i64::from(q.sql.max_connections));
        Ok(TenantSql {
            tenant: tenant.to_string(),
            db,
            rate: CallThrottle::per_second(
                q.sql.queries_per_second,
                tenant,
                SqlQuotas::NAMES.queries_per_second.as_str(),
                metrics.clone(),
            ),
            timeout: Duration::from_millis(q.sql.statement_timeout_ms),
            max_rows: q.sql.max_rows as usize,
            max_bytes: q.sql.max_result_bytes,
            max_storage: q.sql.max_storage_bytes,
            storage: parking_lot::Mutex::new(None),
            budget,
            metrics,
            provisioned: name,
        })
    }

    /// On Postgres and MariaDB: the name of the tenant's database and role.
    pub fn provisioned_name(&self) -> Option<&str> {
        self.provisioned.as_deref()
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
        let _reserved = self.budget.reserve(&self.tenant, self.max_bytes)?;
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
        match &self.db {
            Db::Postgres(pool) => postgres::run(self, pool, statement, params, want_rows).await,
            Db::Sqlite(pool) => sqlite::run(self, pool, statement, params, want_rows).await,
            Db::Mysql(db) => mysql::run(self, db, statement, params, want_rows).await,
        }
    }

    /// Whether the tenant's data is over its storage quota, by `size` (checked at most every
    /// few seconds: the size of a database is not free to compute).
    async fn over_storage_quota<F>(&self, size: impl FnOnce() -> F) -> Result<bool, HostError>
    where
        F: Future<Output = Result<u64, HostError>>,
    {
        let now = Instant::now();
        {
            let cached = self.storage.lock();
            if let Some((at, over)) = *cached {
                if now.duration_since(at) < STORAGE_CHECK_EVERY {
                    return Ok(over);
                }
            }
        }
        let over = size().await? >= self.max_storage;
        *self.storage.lock() = Some((now, over));
        Ok(over)
    }

    /// Storage-quota refusals (a read-only transaction on Postgres and MariaDB, a full file on
    /// SQLite) are
    /// `quota-exceeded`, the rest as usual.
    fn map_write_err(&self, e: sqlx::Error) -> HostError {
        if let sqlx::Error::Database(db) = &e {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // 25006 read_only_sql_transaction; 13 SQLITE_FULL.
            if code == "25006" || code == "13" {
                return self.storage_refusal();
            }
        }
        map_err(e)
    }

    fn storage_refusal(&self) -> HostError {
        refuse(
            &self.metrics,
            &self.tenant,
            SqlQuotas::NAMES.max_storage_bytes.as_str(),
            format!(
                "the tenant's SQL data is over its {} byte storage quota; delete data to write \
                 again",
                self.max_storage
            ),
        )
    }

    /// Opens the pool's first connection (back to the pool at once), so no request's deadline
    /// pays for it.
    pub async fn warm(&self) -> Result<(), HostError> {
        match &self.db {
            Db::Postgres(pool) => drop(self.acquire(pool, "postgres").await?),
            Db::Sqlite(pool) => drop(self.acquire(pool, "sqlite").await?),
            Db::Mysql(db) => drop(self.acquire(&db.pool, "mysql").await?),
        }
        Ok(())
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
            Err(sqlx::Error::PoolTimedOut) => Err(refuse(
                &self.metrics,
                &self.tenant,
                SqlQuotas::NAMES.max_connections.as_str(),
                format!(
                    "all {} SQL connections busy for {} ms",
                    pool.options().get_max_connections(),
                    pool.options().get_acquire_timeout().as_millis()
                ),
            )),
            Err(e) => Err(map_err(e)),
        }
    }

    /// Reads rows as they stream in, refusing the result as soon as it passes the row or byte
    /// cap (what was read so far is dropped; the rest is never read).
    async fn collect<'s, R: Row>(
        &self,
        mut rows: futures_util::stream::BoxStream<'s, Result<R, sqlx::Error>>,
        value: fn(&R, usize) -> Result<SqlValue, HostError>,
    ) -> Result<RowSet, HostError> {
        let mut set = no_rows();
        let mut bytes = 0u64;
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| self.map_result_err(e))?;
            if set.rows.len() >= self.max_rows {
                return Err(refuse(
                    &self.metrics,
                    &self.tenant,
                    SqlQuotas::NAMES.max_rows.as_str(),
                    format!("more than {} rows, the limit", self.max_rows),
                ));
            }
            if set.columns.is_empty() {
                set.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
            }
            let mut out = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let v = value(&row, i)?;
                bytes += match &v {
                    SqlValue::Text(t) => t.len() as u64,
                    SqlValue::Bytes(b) => b.len() as u64,
                    _ => 8,
                };
                out.push(v);
            }
            if bytes > self.max_bytes {
                return Err(self.too_many_bytes(bytes));
            }
            set.rows.push(out);
        }
        Ok(set)
    }

    fn too_many_bytes(&self, bytes: u64) -> HostError {
        refuse(
            &self.metrics,
            &self.tenant,
            SqlQuotas::NAMES.max_result_bytes.as_str(),
            format!(
                "over {} result bytes ({bytes} read), the limit",
                self.max_bytes
            ),
        )
    }

    /// The server-side row guard and SQLite's length limit speak as errors: they are quotas.
    fn map_result_err(&self, e: sqlx::Error) -> HostError {
        if let sqlx::Error::Database(db) = &e {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // 18 SQLITE_TOOBIG.
            if db.message().contains(ROW_GUARD) || code == "18" {
                return self.too_many_bytes(self.max_bytes + 1);
            }
        }
        map_err(e)
    }
}
