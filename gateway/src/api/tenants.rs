//! Tenants and their quotas (operator only, except reading one's own tenant).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use wharf_tenancy::{StoreError, Tenant};

use super::schema::{
    Changed, ErrorBody, NewTenant, QuotaTable, QuotasChanged, TenantCreated, TenantDetail,
    TenantList, TenantSummary, TenantUpdate,
};
use super::{ApiError, ApiState, Principal};

/// Creates a tenant with its hostnames, all or nothing.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, body = TenantCreated), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create(
    State(s): State<ApiState>,
    who: Principal,
    Json(t): Json<NewTenant>,
) -> Result<(StatusCode, Json<TenantCreated>), ApiError> {
    who.operator()?;
    let hosts: Vec<&str> = t.hostnames.iter().map(String::as_str).collect();
    let v = s
        .store_as(&who)
        .await?
        .create_tenant(&t.id, t.display_name.as_deref().unwrap_or(&t.id), &hosts)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            id: t.id,
            config_version: v,
        }),
    ))
}

/// The tenants the caller may see: all for the operator, its own for a tenant.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, body = TenantList), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list(
    State(s): State<ApiState>,
    who: Principal,
) -> Result<Json<TenantList>, ApiError> {
    let store = s.store().await?;
    let visible = match &who {
        Principal::Operator => store.load().await?.tenants,
        Principal::Tenant(own) => vec![store.tenant(own).await?],
    };
    let tenants = visible.into_iter().map(summary).collect();
    Ok(Json(TenantList { tenants }))
}

fn summary(t: Tenant) -> TenantSummary {
    TenantSummary {
        id: t.id,
        display_name: t.display_name,
        hostnames: t.hostnames,
        route_count: t.routes.len(),
    }
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path)),
    responses((status = 200, body = TenantDetail), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<TenantDetail>, ApiError> {
    who.scope(&tenant)?;
    let t = s.store().await?.tenant(&tenant).await?;
    Ok(Json(TenantDetail {
        routes: t.routes.iter().map(|r| r.id.clone()).collect(),
        id: t.id,
        display_name: t.display_name,
        hostnames: t.hostnames,
        quotas: t.quotas,
    }))
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path)),
    request_body = TenantUpdate,
    responses((status = 200, body = Changed), (status = "4XX", body = ErrorBody)))]
pub(super) async fn update(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    Json(u): Json<TenantUpdate>,
) -> Result<Json<Changed>, ApiError> {
    who.operator()?;
    let v = s
        .store_as(&who)
        .await?
        .rename_tenant(&tenant, &u.display_name)
        .await?;
    Ok(Json(Changed { config_version: v }))
}

/// Removes the tenant and purges its data (Redis keys, SQL database); repeat on 503.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path)),
    responses((status = 200, body = Changed), (status = "4XX", body = ErrorBody),
        (status = 503, description = "the data could not be purged yet: repeat", body = ErrorBody)))]
pub(super) async fn remove(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Changed>, ApiError> {
    who.operator()?;
    let store = s.store_as(&who).await?;
    // A tenant that is already gone may still have data left by a failed purge: purge again.
    let removed = store.remove_tenant(&tenant).await;
    if matches!(removed, Err(StoreError::UnknownTenant(_))) {
        wharf_tenancy::model::validate_tenant_id(&tenant)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    // Its data goes before the answer, so an id re-created afterwards starts empty.
    let purged = s.capabilities.purge(&tenant).await;
    let outcome = match &purged {
        Ok(()) => "tenant.purge".to_string(),
        Err(e) => format!("tenant.purge_failed: {e}"),
    };
    store.audit(&outcome, &tenant).await?;
    if let Err(e) = purged {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "purge_failed",
            format!("the tenant's data could not be deleted ({e}); repeat the DELETE"),
        ));
    }
    Ok(Json(Changed {
        config_version: removed?,
    }))
}

/// What each quota means, its default and its bounds (every caller may read it).
#[utoipa::path(get, path = "/v1/quotas", tag = "tenants",
    responses((status = 200, body = QuotaTable), (status = "4XX", body = ErrorBody)))]
pub(super) async fn quota_table(_who: Principal) -> Json<QuotaTable> {
    Json(QuotaTable {
        quotas: wharf_tenancy::Quotas::table(),
    })
}

/// A partial update: only the quotas named in the body change (names as in `Quotas`).
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/quotas", tag = "tenants",
    params(("tenant" = String, Path)),
    request_body(content = serde_json::Value, description = "quota name → new value, e.g. {\"plugin_deadline_ms\": 50}"),
    responses((status = 200, body = QuotasChanged), (status = "4XX", body = ErrorBody)))]
pub(super) async fn set_quotas(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    Json(patch): Json<serde_json::Value>,
) -> Result<Json<QuotasChanged>, ApiError> {
    who.operator()?;
    let store = s.store_as(&who).await?;
    let (v, quotas) = store.patch_quotas(&tenant, &patch).await?;
    Ok(Json(QuotasChanged {
        quotas,
        config_version: v,
    }))
}
