//! Tenants, hostnames, quotas, API keys, usage and the audit log.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use wharf_tenancy::StoreError;

use super::{ApiError, ApiState, Principal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    id: String,
    display_name: Option<String>,
    #[serde(default)]
    hostnames: Vec<String>,
}

pub async fn create(
    State(s): State<ApiState>,
    who: Principal,
    Json(t): Json<NewTenant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.operator()?;
    let hosts: Vec<&str> = t.hostnames.iter().map(String::as_str).collect();
    let v = s
        .store_as(&who)
        .await?
        .create_tenant(&t.id, t.display_name.as_deref().unwrap_or(&t.id), &hosts)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": t.id, "config_version": v })),
    ))
}

pub async fn list(State(s): State<ApiState>, who: Principal) -> Result<Json<Value>, ApiError> {
    let snap = s.store().await?.load().await?;
    let visible: Vec<Value> = snap
        .tenants
        .iter()
        .filter(|t| who.scope(&t.id).is_ok())
        .map(|t| json!({ "id": t.id, "display_name": t.display_name, "hostnames": t.hostnames }))
        .collect();
    Ok(Json(json!({ "tenants": visible })))
}

pub async fn get(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, ApiError> {
    who.scope(&tenant)?;
    let t = s.store().await?.tenant(&tenant).await?;
    Ok(Json(json!({
        "id": t.id,
        "display_name": t.display_name,
        "hostnames": t.hostnames,
        "quotas": t.quotas,
        "routes": t.routes.iter().map(|r| &r.id).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    display_name: String,
}

pub async fn update(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    Json(u): Json<TenantUpdate>,
) -> Result<Json<Value>, ApiError> {
    who.operator()?;
    let v = s
        .store_as(&who)
        .await?
        .rename_tenant(&tenant, &u.display_name)
        .await?;
    Ok(Json(json!({ "config_version": v })))
}

pub async fn remove(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, ApiError> {
    who.operator()?;
    let store = s.store_as(&who).await?;
    // A tenant that is already gone may still have data left by a failed purge: purge again.
    let removed = store.remove_tenant(&tenant).await;
    if matches!(removed, Err(StoreError::UnknownTenant(_))) {
        wharf_tenancy::model::validate_tenant_id(&tenant)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    // Its data goes before the answer, so an id re-created afterwards starts empty.
    let purged = s.backends.purge(&tenant).await;
    let outcome = match &purged {
        Ok(()) => "tenant.purge".to_string(),
        Err(e) => format!("tenant.purge_failed: {e}"),
    };
    store.audit(&outcome, &tenant).await?;
    if let Err(e) = purged {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "purge_failed",
            format!("the tenant's data could not be deleted ({e}); repeat the DELETE"),
        ));
    }
    let v = removed?;
    Ok(Json(json!({ "config_version": v })))
}

/// A partial update: only the given fields change.
pub async fn set_quotas(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    Json(patch): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    who.operator()?;
    let store = s.store_as(&who).await?;
    let (v, quotas) = store.patch_quotas(&tenant, &patch).await?;
    Ok(Json(json!({ "quotas": quotas, "config_version": v })))
}

#[derive(Deserialize)]
pub struct NewHostname {
    hostname: String,
}

pub async fn add_hostname(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    Json(h): Json<NewHostname>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.operator()?;
    let v = s
        .store_as(&who)
        .await?
        .add_hostname(&tenant, &h.hostname)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "config_version": v }))))
}

pub async fn remove_hostname(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, host)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    who.operator()?;
    let v = s
        .store_as(&who)
        .await?
        .remove_hostname(&tenant, &host)
        .await?;
    Ok(Json(json!({ "config_version": v })))
}

pub async fn create_key(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.operator()?;
    let (id, secret) = s.store_as(&who).await?.create_api_key(&tenant).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "key": secret, "note": "the key is shown once; store it now" })),
    ))
}

pub async fn list_keys(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, ApiError> {
    who.operator()?;
    s.store().await?.tenant(&tenant).await?;
    Ok(Json(
        json!({ "keys": s.store().await?.list_api_keys(&tenant).await? }),
    ))
}

pub async fn revoke_key(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    who.operator()?;
    s.store_as(&who)
        .await?
        .revoke_api_key(&tenant, &key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's counters on this node, from the same registry as /metrics.
pub async fn usage(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, ApiError> {
    who.scope(&tenant)?;
    s.store().await?.tenant(&tenant).await?;
    let wanted = [
        ("wharf_requests_total", "requests"),
        ("wharf_plugin_invocations_total", "plugin_invocations"),
        ("wharf_host_calls_total", "host_calls"),
        ("wharf_quota_rejections_total", "quota_rejections"),
    ];
    let mut out = serde_json::Map::new();
    for family in s.metrics.registry().gather() {
        let Some((_, key)) = wanted.iter().find(|(n, _)| *n == family.name()) else {
            continue;
        };
        let mut by: serde_json::Map<String, Value> = serde_json::Map::new();
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
            by.insert(
                breakdown.join(","),
                json!(m.get_counter().get_value() as u64),
            );
        }
        out.insert(key.to_string(), Value::Object(by));
    }
    Ok(Json(Value::Object(out)))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

pub async fn audit(
    State(s): State<ApiState>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    who.operator()?;
    let entries = s
        .store()
        .await?
        .audit_log(q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(json!({ "entries": entries })))
}
