//! The admin API under /v1 (axum, JSON): operators manage tenants, hostnames, quotas and keys;
//! tenants manage their own routes and plugins. The OpenAPI document at /v1/openapi.json is
//! generated from the same handlers and types the router uses, so it cannot drift from them.

mod access;
mod acme;
mod activity;
mod auth;
mod certificates;
mod error;
mod on_demand;
mod params;
mod plugins;
mod routes;
pub mod schema;
mod tenants;
pub mod throttle;
pub mod uploads;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio::sync::OnceCell;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wharf_metrics::Metrics;
use wharf_plugins::PluginRuntime;
use wharf_tenancy::Store;

pub use auth::Principal;
pub use error::ApiError;
pub use on_demand::OnDemand;

#[derive(Clone)]
pub struct ApiState {
    /// Set once the control plane has connected to the store.
    pub store: Arc<OnceCell<Store>>,
    /// Compiles uploads.
    pub runtime: OnDemand<PluginRuntime>,
    pub metrics: Arc<Metrics>,
    pub operator_token: Option<String>,
    pub max_plugin_bytes: usize,
    /// Checks route targets as they are written (a clear 400 rather than a target the nodes
    /// leave out); `None` in the CLI's in-process API, whose operator is trusted.
    pub egress: Option<Arc<wharf_plugins::capabilities::networking::EgressPolicy>>,
    pub uploads: uploads::Uploads,
    /// Per-minute usage of the last hour, for the console.
    pub usage: Arc<crate::usage::UsageHistory>,
    /// The fleet's usage from Prometheus, when configured.
    pub fleet_usage: Option<Arc<crate::usage_fleet::FleetUsage>>,
    /// Seals tenants' TLS private keys before they are stored.
    pub sealer: OnDemand<crate::tls::seal::KeySealer>,
    /// Tenants' Redis and SQL, for purging a removed tenant's data.
    pub capabilities: Arc<wharf_plugins::capabilities::Capabilities>,
    /// The proxy's live view of routes' targets (`None`: no proxy in this process).
    pub live: Option<Arc<dyn LiveRoutes>>,
    /// Per-key and per-address budgets, checked before the store is asked anything.
    pub throttles: Arc<throttle::AdminThrottles>,
    /// The fleet's ACME orders per hour (`[acme] orders_per_hour`): no tenant's request is
    /// taken past it.
    pub acme_orders_per_hour: u32,
}

/// What the API may ask of the proxy's live routing table (kept narrow: the table lives in
/// `control/`, which builds on this module).
pub trait LiveRoutes: Send + Sync {
    /// The route's targets as this node sees them, if the node serves the route.
    fn targets(&self, tenant: &str, route: &str) -> Vec<schema::TargetState>;
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

/// Every route of the API with its documentation; `router` serves both.
fn api() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(schema::ApiDoc::openapi())
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::get, tenants::update, tenants::remove))
        .routes(routes!(tenants::set_quotas))
        .routes(routes!(tenants::quota_table))
        .routes(routes!(access::add_hostname))
        .routes(routes!(access::remove_hostname))
        .routes(routes!(access::list_keys, access::create_key))
        .routes(routes!(access::revoke_key))
        .routes(routes!(activity::usage))
        .routes(routes!(activity::audit))
        .routes(routes!(activity::usage_history))
        .routes(routes!(activity::tenant_audit))
        .routes(routes!(activity::whoami))
        .routes(routes!(activity::nodes))
        .routes(routes!(routes::list))
        .routes(routes!(routes::get, routes::put, routes::remove))
        .routes(routes!(routes::attach, routes::detach))
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::upload, plugins::versions, plugins::remove))
        .routes(routes!(plugins::rollback))
        .routes(routes!(certificates::list))
        .routes(routes!(certificates::put, certificates::remove))
        .routes(routes!(acme::list))
        .routes(routes!(acme::enable, acme::disable))
}

/// The API's OpenAPI document, as served at /v1/openapi.json.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api().split_for_parts();
    doc.paths.paths.insert(
        "/v1/openapi.json".into(),
        utoipa::openapi::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .response("200", utoipa::openapi::Response::new("OpenAPI 3.1 JSON")),
        ),
    );
    doc
}

pub fn router(state: ApiState) -> Router {
    let upload_limit = state.max_plugin_bytes.saturating_add(1);
    let (router, _) = api().split_for_parts();
    let doc = openapi().to_pretty_json().unwrap_or_default();
    router
        .route_layer(axum::middleware::from_fn(params::check))
        .route(
            "/v1/openapi.json",
            get(move || async move { ([("content-type", "application/json")], doc) }),
        )
        .layer(DefaultBodyLimit::max(upload_limit))
        .with_state(state)
}
