//! What happened: a tenant's usage counters on this node, and the audit log.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::schema::{AuditLog, ErrorBody, Usage};
use super::{ApiError, ApiState, Principal};

/// The tenant's counters on this node, from the same registry as /metrics.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/usage", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = Usage), (status = "4XX", body = ErrorBody)))]
pub async fn usage(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Usage>, ApiError> {
    who.scope(&tenant)?;
    s.store().await?.tenant(&tenant).await?;
    let wanted = [
        ("wharf_requests_total", "requests"),
        ("wharf_plugin_invocations_total", "plugin_invocations"),
        ("wharf_host_calls_total", "host_calls"),
        ("wharf_quota_rejections_total", "quota_rejections"),
    ];
    let mut out = Usage::new();
    for family in s.metrics.registry().gather() {
        let Some((_, key)) = wanted.iter().find(|(n, _)| *n == family.name()) else {
            continue;
        };
        let by = out.entry(key.to_string()).or_default();
        for m in family.get_metric() {
            let labels = m.get_label();
            if !labels
                .iter()
                .any(|l| l.name() == "tenant" && l.value() == tenant)
            {
                continue;
            }
            let breakdown: Vec<String> = labels
                .iter()
                .filter(|l| l.name() != "tenant")
                .map(|l| format!("{}={}", l.name(), l.value()))
                .collect();
            by.insert(breakdown.join(","), m.get_counter().get_value() as u64);
        }
    }
    Ok(Json(out))
}

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Newest entries first; 1-1000, default 100.
    limit: Option<i64>,
}

/// Every change to the config: who, what, when, and the version it produced (operator only).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditLog), (status = "4XX", body = ErrorBody)))]
pub async fn audit(
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
