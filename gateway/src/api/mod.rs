//! The admin API under /v1 (axum, JSON): operators manage tenants, hostnames, quotas and keys;
//! tenants manage their own routes and plugins. See `openapi.json` (served at /v1/openapi.json).

mod auth;
mod error;
mod plugins;
mod routes;
mod tenants;
pub mod uploads;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use tokio::sync::OnceCell;
use wharf_metrics::Metrics;
use wharf_plugins::PluginRuntime;
use wharf_tenancy::Store;

pub use auth::Principal;
pub use error::ApiError;

#[derive(Clone)]
pub struct ApiState {
    /// Set once the control plane has connected to the store.
    pub store: Arc<OnceCell<Store>>,
    pub runtime: Arc<PluginRuntime>,
    pub metrics: Arc<Metrics>,
    pub operator_token: Option<String>,
    pub max_plugin_bytes: usize,
    pub egress: Arc<crate::egress::EgressPolicy>,
    pub uploads: uploads::Uploads,
    /// Tenants' Redis and SQL, for purging a removed tenant's data.
    pub backends: Arc<wharf_plugins::capabilities::Backends>,
}

impl ApiState {
    /// The store, waiting briefly while the control plane connects at start-up.
    pub async fn store(&self) -> Result<&Store, ApiError> {
        for _ in 0..50 {
            if let Some(s) = self.store.get() {
                return Ok(s);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the config store is not reachable; retry shortly",
        ))
    }

    /// The store, recording `who` in the audit log.
    pub async fn store_as(&self, who: &Principal) -> Result<Store, ApiError> {
        Ok(self.store().await?.with_actor(&who.actor()))
    }
}

pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: ApiState) -> Router {
    let upload_limit = state.max_plugin_bytes.saturating_add(1);
    Router::new()
        .route(
            "/v1/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
        .route("/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/v1/tenants/{tenant}",
            get(tenants::get)
                .patch(tenants::update)
                .delete(tenants::remove),
        )
        .route("/v1/tenants/{tenant}/quotas", patch(tenants::set_quotas))
        .route(
            "/v1/tenants/{tenant}/hostnames",
            post(tenants::add_hostname),
        )
        .route(
            "/v1/tenants/{tenant}/hostnames/{host}",
            delete(tenants::remove_hostname),
        )
        .route(
            "/v1/tenants/{tenant}/api-keys",
            get(tenants::list_keys).post(tenants::create_key),
        )
        .route(
            "/v1/tenants/{tenant}/api-keys/{key}",
            delete(tenants::revoke_key),
        )
        .route("/v1/tenants/{tenant}/usage", get(tenants::usage))
        .route("/v1/audit", get(tenants::audit))
        .route("/v1/tenants/{tenant}/routes", get(routes::list))
        .route(
            "/v1/tenants/{tenant}/routes/{route}",
            get(routes::get).put(routes::put).delete(routes::remove),
        )
        .route(
            "/v1/tenants/{tenant}/routes/{route}/plugins/{plugin}",
            put(routes::attach).delete(routes::detach),
        )
        .route("/v1/tenants/{tenant}/plugins", get(plugins::list))
        .route(
            "/v1/tenants/{tenant}/plugins/{plugin}",
            put(plugins::upload)
                .get(plugins::versions)
                .delete(plugins::remove),
        )
        .route(
            "/v1/tenants/{tenant}/plugins/{plugin}/rollback",
            post(plugins::rollback),
        )
        .layer(DefaultBodyLimit::max(upload_limit))
        .with_state(state)
}
