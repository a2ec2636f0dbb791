//! Routes of a tenant. Every edit that reads a route and writes it back (attach, detach,
//! rollback, a PUT that keeps attachments) does both inside one transaction opened by
//! `begin_change`, whose version-row update serializes writers: concurrent edits apply one
//! after another and none is lost.

use sqlx::Row;

use super::{Store, Tx};
use crate::error::StoreError;
use crate::model::Route;

impl Store {
    /// Creates or replaces a route of `tenant`, attachments included.
    pub async fn put_route(&self, tenant: &str, mut route: Route) -> Result<i64, StoreError> {
        route.validate()?;
        let (mut tx, version) = self
            .begin_change("route.put", tenant, &format!("{tenant}/{}", route.id))
            .await?;
        Self::write_route(&mut tx, tenant, route).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Creates or replaces a route's definition, keeping the plugin chain it has now (read in
    /// the same transaction, so a concurrent attach is never undone).
    pub async fn put_route_keeping_plugins(
        &self,
        tenant: &str,
        mut route: Route,
    ) -> Result<i64, StoreError> {
        let (mut tx, version) = self
            .begin_change("route.put", tenant, &format!("{tenant}/{}", route.id))
            .await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        route.plugins = match Self::route_in(&mut tx, tenant, &route.id).await {
            Ok(existing) => existing.plugins,
            Err(StoreError::UnknownRoute { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        Self::write_route(&mut tx, tenant, route).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Reads a route, lets `edit` change it, and writes it back, all in one transaction.
    pub(super) async fn edit_route(
        &self,
        action: &str,
        tenant: &str,
        route_id: &str,
        edit: impl FnOnce(&mut Route),
    ) -> Result<i64, StoreError> {
        let (mut tx, version) = self
            .begin_change(action, tenant, &format!("{tenant}/{route_id}"))
            .await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        let mut route = Self::route_in(&mut tx, tenant, route_id).await?;
        edit(&mut route);
        Self::write_route(&mut tx, tenant, route).await?;
        tx.commit().await?;
        Ok(version)
    }

    pub async fn remove_route(&self, tenant: &str, route_id: &str) -> Result<i64, StoreError> {
        let (mut tx, version) = self
            .begin_change("route.remove", tenant, &format!("{tenant}/{route_id}"))
            .await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        let done = sqlx::query("DELETE FROM routes WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(route_id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownRoute {
                tenant: tenant.into(),
                route: route_id.into(),
            });
        }
        tx.commit().await?;
        Ok(version)
    }

    /// Every route of `tenant`, as the transaction sees them.
    pub(super) async fn routes_in(tx: &mut Tx, tenant: &str) -> Result<Vec<Route>, StoreError> {
        let rows = sqlx::query("SELECT spec FROM routes WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant.to_string())
            .fetch_all(&mut **tx)
            .await?;
        rows.iter()
            .map(|row| super::snapshot::route_from_spec(tenant, &row.try_get::<String, _>(0)?))
            .collect()
    }

    async fn route_in(tx: &mut Tx, tenant: &str, route_id: &str) -> Result<Route, StoreError> {
        Self::routes_in(tx, tenant)
            .await?
            .into_iter()
            .find(|r| r.id == route_id)
            .ok_or_else(|| StoreError::UnknownRoute {
                tenant: tenant.into(),
                route: route_id.into(),
            })
    }

    /// Validates `route` against the tenant's other routes and its plugin versions, then
    /// replaces the stored one.
    pub(super) async fn write_route(
        tx: &mut Tx,
        tenant: &str,
        mut route: Route,
    ) -> Result<(), StoreError> {
        route.validate()?;
        let quotas = Self::quotas_in(tx, tenant).await?;
        let others = Self::routes_in(tx, tenant).await?;
        for existing in &others {
            if route.conflicts_with(existing) {
                return Err(StoreError::RouteConflict {
                    new: route.id.clone(),
                    existing: existing.id.clone(),
                    prefix: route.path_prefix.clone(),
                });
            }
        }
        super::quota_use::check_route(&quotas.config, &route, &others)?;
        for a in &route.plugins {
            Self::ensure_plugin_version(tx, tenant, &a.plugin, a.version).await?;
        }
        let spec = serde_json::to_string(&route)
            .map_err(|e| StoreError::Corrupt(format!("route does not serialize: {e}")))?;
        sqlx::query("DELETE FROM routes WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(route.id.clone())
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO routes (tenant_id, id, spec) VALUES ($1, $2, $3)")
            .bind(tenant.to_string())
            .bind(route.id.clone())
            .bind(spec)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
