//! ACME certificates for a tenant's own hostnames: turned on per exact hostname the tenant
//! owns, within its hourly order quota and the fleet's; the order's state and last error
//! are the tenant's to read. Turning it off (or removing the hostname) stops renewals and
//! removes the issued certificate.

use axum::extract::{Path, State};
use axum::Json;

use super::schema::{AcmeEnabled, AcmeList, Changed, ErrorBody};
use super::{ApiError, ApiState, Principal};

#[utoipa::path(get, path = "/v1/tenants/{tenant}/acme", tag = "certificates",
    params(("tenant" = String, Path)),
    responses((status = 200, body = AcmeList), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<AcmeList>, ApiError> {
    who.scope(&tenant)?;
    let store = s.store().await?;
    // An unknown tenant is a 404, not an empty list.
    store.tenant(&tenant).await?;
    Ok(Json(AcmeList {
        hostnames: store.acme_hostnames(&tenant).await?,
    }))
}

/// Orders a certificate for one of the tenant's exact hostnames (the name must resolve to the
/// fleet: HTTP-01 or TLS-ALPN-01, as the operator set), then renews it. Over the tenant's `acme_orders_per_hour` or the
/// fleet's cap: 429, naming it.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/acme/{hostname}", tag = "certificates",
    params(("tenant" = String, Path), ("hostname" = String, Path)),
    responses((status = 200, body = AcmeEnabled), (status = "4XX", body = ErrorBody)))]
pub(super) async fn enable(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, hostname)): Path<(String, String)>,
) -> Result<Json<AcmeEnabled>, ApiError> {
    who.scope(&tenant)?;
    let (config_version, hostname) = s
        .store_as(&who)
        .await?
        .enable_acme(&tenant, &hostname, s.acme_orders_per_hour)
        .await?;
    Ok(Json(AcmeEnabled {
        config_version,
        hostname,
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/acme/{hostname}", tag = "certificates",
    params(("tenant" = String, Path), ("hostname" = String, Path)),
    responses((status = 200, body = Changed), (status = "4XX", body = ErrorBody)))]
pub(super) async fn disable(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, hostname)): Path<(String, String)>,
) -> Result<Json<Changed>, ApiError> {
    who.scope(&tenant)?;
    let v = s
        .store_as(&who)
        .await?
        .disable_acme(&tenant, &hostname.to_ascii_lowercase())
        .await?;
    Ok(Json(Changed { config_version: v }))
}
