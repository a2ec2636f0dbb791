//! SQL as a capability: its settings, linking, tenant state, provisioning and purge, and the
//! `wharf:plugin/sql` binding: a plugin's statement goes to its tenant's [`super::TenantSql`]
//! off the plugin CPU, counted and traced as a host call.

use std::collections::HashMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use wasmtime::component::{HasSelf, Linker};
use wharf_tenancy::{Quotas, SqlQuotas};

use super::{mysql, postgres, sqlite, TenantSql};
use crate::bindings::wharf::plugin::sql::{add_to_linker, Host, RowSet, SqlValue};
use crate::bindings::wharf::plugin::types::HostError as WitError;
use crate::capabilities::{
    Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext,
};
use crate::state::{off_cpu, PluginState};

/// Where tenants' databases live: `sql = …` in the bootstrap file.
#[derive(Debug, Clone, Default)]
pub enum SqlBackend {
    #[default]
    Disabled,
    /// One database file per tenant in this directory.
    Sqlite(PathBuf),
    /// A URL whose user may create roles and schemas; tenants get their own of each.
    Postgres(String),
    /// A MariaDB URL (`mysql://` or `mariadb://`) whose user may create databases and users
    /// and grant on them; tenants get their own of each.
    Mysql(String),
}

/// The capability: the node's database server, a database and pool per tenant.
pub struct Sql {
    backend: SqlBackend,
    /// Tenants whose Postgres or MariaDB role and database exist, at which connection limit,
    /// under which name.
    provisioned: Mutex<HashMap<String, (u32, String)>>,
    /// On MariaDB: the node's admin pool that measures tenants' storage, made on first use
    /// (inside the runtime its connections belong to).
    mysql_admin: std::sync::OnceLock<sqlx::MySqlPool>,
}

impl Capability for Sql {
    const NAME: &'static str = "sql";
    type Settings = SqlBackend;
    type Quotas = SqlQuotas;
    type TenantState = TenantSql;
    type InstanceState = ();

    fn new(backend: SqlBackend, _: &NodeContext) -> Result<Self, SettingsError> {
        Ok(Sql {
            backend,
            provisioned: Mutex::new(HashMap::new()),
            mysql_admin: std::sync::OnceLock::new(),
        })
    }

    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
    }

    fn quotas(all: &Quotas) -> &SqlQuotas {
        &all.sql
    }

    fn instance(_: &InstanceContext<'_>) {}

    async fn open(&self, ctx: TenantContext<'_, Self>) -> Result<TenantSql, HostError> {
        let limit = ctx.quotas().max_connections;
        let provisioned = self.provisioned(ctx.tenant, limit);
        let mysql_admin = match &self.backend {
            SqlBackend::Mysql(url) => Some(match self.mysql_admin.get() {
                Some(pool) => pool.clone(),
                None => {
                    let pool = mysql::admin_pool(url)?;
                    self.mysql_admin.get_or_init(|| pool).clone()
                }
            }),
            _ => None,
        };
        let opened = TenantSql::open(
            ctx.tenant,
            &self.backend,
            ctx.all_quotas,
            provisioned,
            mysql_admin,
            ctx.metrics().clone(),
            ctx.results().clone(),
        )
        .await?;
        if let Err(e) = opened.warm().await {
            tracing::debug!(tenant = %ctx.tenant, "first SQL connection failed: {e}");
        }
        if let Some(name) = opened.provisioned_name() {
            self.provisioned
                .lock()
                .insert(ctx.tenant.to_string(), (limit, name.to_string()));
        }
        Ok(opened)
    }

    /// On Postgres and MariaDB: the tenant's role and database, so its first request does not
    /// pay for them inside its plugin's deadline.
    async fn prepare(&self, tenant: &str, quotas: &Quotas) -> Result<(), HostError> {
        let limit = quotas.sql.max_connections;
        if self.provisioned(tenant, limit).is_some() {
            return Ok(());
        }
        let name = match &self.backend {
            SqlBackend::Postgres(admin_url) => {
                postgres::provision(tenant, admin_url, quotas).await?
            }
            SqlBackend::Mysql(admin_url) => mysql::provision(tenant, admin_url, quotas).await?,
            SqlBackend::Disabled | SqlBackend::Sqlite(_) => return Ok(()),
        };
        self.provisioned
            .lock()
            .insert(tenant.to_string(), (limit, name));
        Ok(())
    }

    /// Its Postgres or MariaDB database and role, or its SQLite file.
    async fn purge(&self, tenant: &str) -> Result<(), HostError> {
        self.provisioned.lock().remove(tenant);
        match &self.backend {
            SqlBackend::Disabled => Ok(()),
            SqlBackend::Postgres(admin) => postgres::purge(tenant, admin).await,
            SqlBackend::Mysql(admin) => mysql::purge(tenant, admin).await,
            SqlBackend::Sqlite(dir) => sqlite::purge(tenant, dir),
        }
    }
}

impl Sql {
    /// The tenant's database name if it is provisioned at this connection limit.
    fn provisioned(&self, tenant: &str, limit: u32) -> Option<String> {
        self.provisioned
            .lock()
            .get(tenant)
            .filter(|(l, _)| *l == limit)
            .map(|(_, name)| name.clone())
    }
}

impl Host for PluginState {
    async fn query(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<RowSet, WitError> {
        let call = self.host_call("sql.query");
        let io = async {
            let sql = self.capability::<Sql>().await?;
            sql.query(&statement, params).await
        };
        let result = off_cpu(self, io).await;
        call.finish(self, &result);
        result.map_err(Into::into)
    }

    async fn execute(&mut self, statement: String, params: Vec<SqlValue>) -> Result<u64, WitError> {
        let call = self.host_call("sql.execute");
        let io = async {
            let sql = self.capability::<Sql>().await?;
            sql.execute(&statement, params).await
        };
        let result = off_cpu(self, io).await;
        call.finish(self, &result);
        result.map_err(Into::into)
    }
}
