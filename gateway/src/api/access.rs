//! Who reaches a tenant: its hostnames and its API keys (operator only).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::schema::{Changed, ErrorBody, KeyCreated, KeyList, NewHostname};
use super::{ApiError, ApiState, Principal};

#[utoipa::path(post, path = "/v1/tenants/{tenant}/hostnames", tag = "tenants",
    params(("tenant" = String, Path)), request_body = NewHostname,
    responses((status = 201, body = Changed), (status = "4XX", body = ErrorBody)))]
pub(super) async fn add_hostname(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    Json(h): Json<NewHostname>,
) -> Result<(StatusCode, Json<Changed>), ApiError> {
    who.operator()?;
    let v = s
        .store_as(&who)
        .await?
        .add_hostname(&tenant, &h.hostname)
        .await?;
    Ok((StatusCode::CREATED, Json(Changed { config_version: v })))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/hostnames/{host}", tag = "tenants",
    params(("tenant" = String, Path), ("host" = String, Path)),
    responses((status = 200, body = Changed), (status = "4XX", body = ErrorBody)))]
pub(super) async fn remove_hostname(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, host)): Path<(String, String)>,
) -> Result<Json<Changed>, ApiError> {
    who.operator()?;
    let v = s
        .store_as(&who)
        .await?
        .remove_hostname(&tenant, &host)
        .await?;
    Ok(Json(Changed { config_version: v }))
}

/// Issues a tenant API key; the secret is in this answer only.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/api-keys", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 201, body = KeyCreated), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create_key(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
    who.operator()?;
    let (id, key) = s.store_as(&who).await?.create_api_key(&tenant).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyCreated {
            id,
            key,
            note: "the key is shown once; store it now".into(),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/api-keys", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = KeyList), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_keys(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    who.operator()?;
    let store = s.store().await?;
    store.tenant(&tenant).await?;
    Ok(Json(KeyList {
        keys: store.list_api_keys(&tenant).await?,
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/api-keys/{key}", tag = "tenants",
    params(("tenant" = String, Path), ("key" = String, Path, description = "the key's id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub(super) async fn revoke_key(
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
