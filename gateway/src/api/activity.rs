//! What happened: a tenant's usage counters on this node, and the audit log.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::schema::{AuditLog, ErrorBody, Usage};
use super::{ApiError, ApiState, Principal};
use crate::usage::UsageHistoryBody;

/// The tenant's counters on this node, from the same registry as /metrics.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/usage", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = Usage), (status = "4XX", body = ErrorBody)))]
pub(super) async fn usage(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Usage>, ApiError> {
    who.scope(&tenant)?;
    s.store().await?.tenant(&tenant).await?;
    let mut out = s.usage.counters(&tenant);
    // Every counter is named, counted or not.
    for key in [
        "requests",
        "plugin_invocations",
        "host_calls",
        "quota_rejections",
    ] {
        out.entry(key.to_string()).or_default();
    }
    Ok(Json(out))
}

#[derive(Deserialize, IntoParams)]
pub(super) struct AuditQuery {
    /// Newest entries first; 1-1000, default 100.
    limit: Option<i64>,
}

/// Every change to the config: who, what, when, and the version it produced (operator only).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditLog), (status = "4XX", body = ErrorBody)))]
pub(super) async fn audit(
    State(s): State<ApiState>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    who.operator()?;
    let entries = s
        .store()
        .await?
        .audit_log(q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(AuditLog { entries }))
}

/// The tenant's usage over the last hour, per minute: the whole fleet's from Prometheus when
/// `usage_prometheus_url` is set, else this node's own (the last minute: so far). What the
/// console graphs.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/usage/history", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = UsageHistoryBody), (status = "4XX", body = ErrorBody)))]
pub(super) async fn usage_history(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<UsageHistoryBody>, ApiError> {
    who.scope(&tenant)?;
    s.store().await?.tenant(&tenant).await?;
    if let Some(fleet) = &s.fleet_usage {
        match fleet.history(&tenant).await {
            Ok(h) => return Ok(Json(h)),
            Err(e) => {
                tracing::warn!("fleet usage from Prometheus unavailable, showing this node's: {e}");
                let mut h = s.usage.history(&tenant);
                h.source = format!("this node ({e})");
                return Ok(Json(h));
            }
        }
    }
    Ok(Json(s.usage.history(&tenant)))
}

/// The changes made to one tenant's config: who, what, when, the version it produced.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit", tag = "tenants",
    params(("tenant" = String, Path), AuditQuery),
    responses((status = 200, body = AuditLog), (status = "4XX", body = ErrorBody)))]
pub(super) async fn tenant_audit(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    who.scope(&tenant)?;
    let store = s.store().await?;
    store.tenant(&tenant).await?;
    let entries = store
        .tenant_audit_log(&tenant, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(AuditLog { entries }))
}

/// Who the caller is: the console signs in with it.
#[utoipa::path(get, path = "/v1/whoami", tag = "audit",
    responses((status = 200, body = WhoAmI), (status = "4XX", body = ErrorBody)))]
pub(super) async fn whoami(who: Principal) -> Json<WhoAmI> {
    Json(match who {
        Principal::Operator => WhoAmI {
            operator: true,
            tenant: None,
        },
        Principal::Tenant(t) => WhoAmI {
            operator: false,
            tenant: Some(t),
        },
    })
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct WhoAmI {
    operator: bool,
    tenant: Option<String>,
}

/// The gateway nodes sharing this store and the config version each serves (operator only).
#[utoipa::path(get, path = "/v1/nodes", tag = "audit",
    responses((status = 200, body = NodeList), (status = "4XX", body = ErrorBody)))]
pub(super) async fn nodes(
    State(s): State<ApiState>,
    who: Principal,
) -> Result<Json<NodeList>, ApiError> {
    who.operator()?;
    let store = s.store().await?;
    Ok(Json(NodeList {
        store_version: store.version().await?.0,
        nodes: store.nodes().await?,
    }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct NodeList {
    /// The newest config version in the store: nodes serving less are behind.
    store_version: i64,
    nodes: Vec<wharf_tenancy::NodeReport>,
}
