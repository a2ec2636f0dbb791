//! Host capabilities: what a plugin may import besides computing. Each capability is one module
//! of one shape:
//!
//! | module | binding (`host.rs` or inline) | tenant-level state | per-request state |
//! |---|---|---|---|
//! | `log` | `wharf:plugin/log` | — | lines left ([`log::LogBudget`]) |
//! | `config` | `wharf:plugin/config` | — | the attachment's key/values |
//! | `redis` | `wharf:plugin/redis` | [`redis::TenantRedis`]: pool, allow-list, namespace, rate, memory quota | — |
//! | `sql` | `wharf:plugin/sql` | [`sql::TenantSql`]: pool, own database, rate, row/byte/storage caps | — |
//!
//! Per-request state lives in [`crate::state::PluginState`]; quotas come from the tenant's
//! [`wharf_tenancy::Quotas`]; metrics and the `host_call` span are recorded by
//! [`crate::state::HostCall`] for every capability alike. Tenant-level state is built lazily on
//! first use by [`lazy`], which keeps only successes: a backend that was down is retried on the
//! next call, for every capability the same way. Adding a capability: a module here with its
//! binding and state, a `OnceCell` in [`TenantBackends`], its interface in `wit/`.

pub mod config;
mod error;
pub mod log;
mod quota;
pub mod redis;
pub mod sql;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;
use wharf_metrics::Metrics;

pub use error::HostError;

use wharf_tenancy::Quotas;

/// Where tenants' data lives; from the bootstrap file.
#[derive(Debug, Clone, Default)]
pub struct BackendSettings {
    /// `redis://…`; `None`: Redis calls fail with `backend-unavailable`.
    pub redis_url: Option<String>,
    pub sql: SqlBackend,
}

#[derive(Debug, Clone, Default)]
pub enum SqlBackend {
    #[default]
    Disabled,
    /// One database file per tenant in this directory.
    Sqlite(PathBuf),
    /// A URL whose user may create roles and schemas; tenants get their own of each.
    Postgres(String),
}

/// All tenants' backends on this node.
pub struct Backends {
    settings: BackendSettings,
    metrics: Arc<Metrics>,
    tenants: Mutex<HashMap<String, Arc<TenantBackends>>>,
    provisioned: Provisioned,
    budget: quota::ResultBudget,
}

/// Tenants whose Postgres role and database exist, at which connection limit, under which name.
type Provisioned = Arc<Mutex<HashMap<String, (u32, String)>>>;

/// The node's default memory for host-call results in flight.
pub const DEFAULT_RESULT_BUDGET_BYTES: u64 = 256 << 20;

/// One tenant's Redis and SQL, at its quotas.
pub struct TenantBackends {
    pub tenant: String,
    pub quotas: Quotas,
    redis: OnceCell<redis::TenantRedis>,
    sql: OnceCell<sql::TenantSql>,
    settings: BackendSettings,
    metrics: Arc<Metrics>,
    provisioned: Provisioned,
    budget: quota::ResultBudget,
}

impl Backends {
    pub fn new(settings: BackendSettings, metrics: Arc<Metrics>) -> Arc<Backends> {
        Self::with_result_budget(settings, metrics, DEFAULT_RESULT_BUDGET_BYTES)
    }

    /// `budget_bytes`: the node's memory for host-call results in flight, all tenants.
    pub fn with_result_budget(
        settings: BackendSettings,
        metrics: Arc<Metrics>,
        budget_bytes: u64,
    ) -> Arc<Backends> {
        Arc::new(Backends {
            budget: quota::ResultBudget::new(budget_bytes, metrics.clone()),
            settings,
            metrics,
            tenants: Mutex::new(HashMap::new()),
            provisioned: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Provisions a tenant's SQL ahead of its first host call (Postgres role and schema), so the
    /// first request does not pay for it inside its plugin's deadline. Idempotent.
    pub async fn prepare(&self, tenant: &str, quotas: &Quotas) -> Result<(), HostError> {
        let SqlBackend::Postgres(admin_url) = &self.settings.sql else {
            return Ok(());
        };
        let limit = quotas.sql.max_connections;
        if lock(&self.provisioned)
            .get(tenant)
            .is_some_and(|(l, _)| *l == limit)
        {
            return Ok(());
        }
        let name = sql::postgres::provision(tenant, admin_url, quotas).await?;
        lock(&self.provisioned).insert(tenant.to_string(), (limit, name));
        Ok(())
    }

    /// The tenant's backends; rebuilt (new pools) when its quotas changed.
    pub fn tenant(&self, tenant: &str, quotas: &Quotas) -> Arc<TenantBackends> {
        let mut tenants = self.tenants.lock();
        if let Some(t) = tenants.get(tenant) {
            if t.quotas == *quotas {
                return t.clone();
            }
        }
        let t = Arc::new(TenantBackends {
            tenant: tenant.to_string(),
            quotas: quotas.clone(),
            redis: OnceCell::new(),
            sql: OnceCell::new(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            provisioned: self.provisioned.clone(),
            budget: self.budget.clone(),
        });
        tenants.insert(tenant.to_string(), t.clone());
        t
    }

    /// Deletes everything a removed tenant kept in the backends: its Redis keys (and Wharf's
    /// keys about it), its Postgres database and role, its SQLite file. A tenant created later
    /// with the same id starts empty. Idempotent; safe to retry after a failure.
    pub async fn purge(&self, tenant: &str) -> Result<(), HostError> {
        lock(&self.tenants).remove(tenant);
        lock(&self.provisioned).remove(tenant);
        if let Some(url) = &self.settings.redis_url {
            redis::purge(url, tenant).await?;
        }
        match &self.settings.sql {
            SqlBackend::Disabled => {}
            SqlBackend::Postgres(admin) => sql::postgres::purge(tenant, admin).await?,
            SqlBackend::Sqlite(dir) => sql::sqlite::purge(tenant, dir)?,
        }
        Ok(())
    }

    /// Drops the pools of tenants that no longer exist.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        let mut tenants = self.tenants.lock();
        tenants.retain(|id, _| live(id));
    }
}

impl TenantBackends {
    pub async fn redis(&self) -> Result<&redis::TenantRedis, HostError> {
        let url = self
            .settings
            .redis_url
            .as_deref()
            .ok_or(HostError::BackendUnavailable)?;
        lazy(&self.tenant, "redis", &self.redis, || async {
            let redis = redis::TenantRedis::new(
                &self.tenant,
                url,
                &self.quotas,
                self.metrics.clone(),
                self.budget.clone(),
            )?;
            // Best effort: with Redis down the pool is kept, and calls report the outage.
            if let Err(e) = redis.warm().await {
                tracing::debug!(tenant = %self.tenant, "first Redis connection failed: {e}");
            }
            Ok(redis)
        })
        .await
    }

    /// Whether the tenant's Redis (pool and first connection) is built on this node.
    pub fn redis_ready(&self) -> bool {
        self.redis.initialized()
    }

    /// Whether the tenant's SQL (provisioning, pool and first connection) is built on this node.
    pub fn sql_ready(&self) -> bool {
        self.sql.initialized()
    }

    pub async fn sql(&self) -> Result<&sql::TenantSql, HostError> {
        lazy(&self.tenant, "sql", &self.sql, || async {
            let limit = self.quotas.sql.max_connections;
            let provisioned = lock(&self.provisioned)
                .get(&self.tenant)
                .filter(|(l, _)| *l == limit)
                .map(|(_, name)| name.clone());
            let opened = sql::TenantSql::open(
                &self.tenant,
                &self.settings.sql,
                &self.quotas,
                provisioned,
                self.metrics.clone(),
                self.budget.clone(),
            )
            .await?;
            if let Err(e) = opened.warm().await {
                tracing::debug!(tenant = %self.tenant, "first SQL connection failed: {e}");
            }
            if let Some(name) = opened.pg_name() {
                lock(&self.provisioned).insert(self.tenant.clone(), (limit, name.to_string()));
            }
            Ok(opened)
        })
        .await
    }
}

/// A capability's tenant-level state, built on first use. Only success is kept: a backend that
/// was down at first use is retried on the next call.
async fn lazy<'a, T, F, Fut>(
    tenant: &str,
    capability: &'static str,
    cell: &'a OnceCell<T>,
    build: F,
) -> Result<&'a T, HostError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, HostError>>,
{
    // Debug, not warn: while a backend is down every call lands here; the host-call metrics
    // (outcome `backend_unavailable`) are what operators watch.
    cell.get_or_try_init(build).await.inspect_err(|e| {
        tracing::debug!(
            tenant,
            capability,
            "cannot open the tenant's {capability}: {e}"
        );
    })
}

fn lock<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
}
