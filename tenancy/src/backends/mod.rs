//! Per-tenant Redis and SQL for plugins' host calls: pools sized by the tenant's quotas, rate
//! limits, and isolation (Redis key namespaces; a Postgres schema and role, or a SQLite file,
//! per tenant). Pools are created lazily on first use, inside the runtime that uses them.

mod error;
pub mod postgres;
mod quota;
pub mod redis;
mod redis_script;
pub mod sql;
pub mod sqlite;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use wharf_metrics::Metrics;

pub use error::HostError;

use crate::model::Quotas;

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
    /// Tenants whose Postgres role and schema exist at their current quotas.
    provisioned: Arc<Mutex<HashSet<(String, u32)>>>,
    budget: quota::ResultBudget,
}

/// The node's default memory for host-call results in flight.
pub const DEFAULT_RESULT_BUDGET_BYTES: u64 = 256 << 20;

/// One tenant's Redis and SQL, at its quotas.
pub struct TenantBackends {
    pub tenant: String,
    pub quotas: Quotas,
    redis: OnceCell<Option<redis::TenantRedis>>,
    sql: OnceCell<sql::TenantSql>,
    settings: BackendSettings,
    metrics: Arc<Metrics>,
    provisioned: Arc<Mutex<HashSet<(String, u32)>>>,
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
            provisioned: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Provisions a tenant's SQL ahead of its first host call (Postgres role and schema), so the
    /// first request does not pay for it inside its plugin's deadline. Idempotent.
    pub async fn prepare(&self, tenant: &str, quotas: &Quotas) -> Result<(), HostError> {
        let SqlBackend::Postgres(admin_url) = &self.settings.sql else {
            return Ok(());
        };
        let key = (tenant.to_string(), quotas.sql_max_connections);
        if lock(&self.provisioned).contains(&key) {
            return Ok(());
        }
        postgres::provision(tenant, admin_url, quotas).await?;
        lock(&self.provisioned).insert(key);
        Ok(())
    }

    /// The tenant's backends; rebuilt (new pools) when its quotas changed.
    pub fn tenant(&self, tenant: &str, quotas: &Quotas) -> Arc<TenantBackends> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
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
        lock(&self.provisioned).retain(|(t, _)| t != tenant);
        if let Some(url) = &self.settings.redis_url {
            redis::purge(url, tenant).await?;
        }
        match &self.settings.sql {
            SqlBackend::Disabled => {}
            SqlBackend::Postgres(admin) => postgres::purge(tenant, admin).await?,
            SqlBackend::Sqlite(dir) => sqlite::purge(tenant, dir)?,
        }
        Ok(())
    }

    /// Drops the pools of tenants that no longer exist.
    pub fn retain(&self, live: &[&str]) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.retain(|id, _| live.contains(&id.as_str()));
    }
}

impl TenantBackends {
    pub async fn redis(&self) -> Result<&redis::TenantRedis, HostError> {
        let r = self
            .redis
            .get_or_init(|| async {
                let url = self.settings.redis_url.as_deref()?;
                let budget = self.budget.clone();
                match redis::TenantRedis::new(
                    &self.tenant,
                    url,
                    &self.quotas,
                    self.metrics.clone(),
                    budget,
                ) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::error!(tenant = %self.tenant, "cannot build Redis pool: {e}");
                        None
                    }
                }
            })
            .await;
        r.as_ref().ok_or(HostError::BackendUnavailable)
    }

    pub async fn sql(&self) -> Result<&sql::TenantSql, HostError> {
        // Only success is kept: a backend that was down at first use is retried on the next call.
        self.sql
            .get_or_try_init(|| async {
                let key = (self.tenant.clone(), self.quotas.sql_max_connections);
                let provisioned = lock(&self.provisioned).contains(&key);
                let opened = sql::TenantSql::open(
                    &self.tenant,
                    &self.settings.sql,
                    &self.quotas,
                    provisioned,
                    self.metrics.clone(),
                    self.budget.clone(),
                )
                .await?;
                lock(&self.provisioned).insert(key);
                Ok(opened)
            })
            .await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
