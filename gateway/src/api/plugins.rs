//! Plugin upload (validated and compiled before it is stored), versions, rollback, delete.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use wharf_plugins::RejectError;
use wharf_tenancy::Store;

use super::uploads::UploadSlot;
use crate::plugin_add::{add_plugin, AddPluginError};

use super::schema::{
    Changed, ErrorBody, PluginList, PluginUploaded, PluginVersions, Rollback, RolledBack,
};
use super::{ApiError, ApiState, Principal};

/// Who may upload is settled before a byte of the body is read: an unauthenticated or
/// out-of-scope upload costs the gateway nothing but its headers (clients sending
/// `Expect: 100-continue`, as curl does for large bodies, never send the body at all). Bodies
/// being read are capped per tenant and per node.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/plugins/{plugin}", tag = "plugins",
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "the plugin's binary .wasm component"),
    responses((status = 201, body = PluginUploaded),
        (status = 403, description = "over the tenant's plugin storage quota", body = ErrorBody),
        (status = 413, description = "over the tenant's plugin size limit", body = ErrorBody),
        (status = 422, description = "not a component of the Wharf world", body = ErrorBody),
        (status = 429, description = "the tenant's compiles are queued full", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub(super) async fn upload(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
    body: Body,
) -> Result<(StatusCode, Json<PluginUploaded>), ApiError> {
    let (store, limit, room, _slot) = admit_upload(&s, &who, &tenant, &name)
        .await
        .map_err(ApiError::closing)?;
    let over_room = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "quota_exceeded",
            format!(
                "quota plugin_storage_bytes leaves room for {room} more bytes: remove plugins                  or versions first, or ask the operator to raise it"
            ),
        )
        .closing()
    };
    if room == 0 {
        return Err(over_room());
    }
    let read_limit = limit.min(room);
    let bytes = axum::body::to_bytes(body, usize::try_from(read_limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| {
            if room < limit {
                return over_room();
            }
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("upload refused: the limit is {limit} bytes"),
            )
            .closing()
        })?;
    let added = add_plugin(&store, s.runtime.get()?, &tenant, &name, &bytes, limit)
        .await
        .map_err(|e| match e {
            AddPluginError::Empty => {
                ApiError::bad_request("the request body must be the plugin's .wasm component")
            }
            AddPluginError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            AddPluginError::Rejected(RejectError::Busy) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "compile_busy", e.to_string())
            }
            AddPluginError::Rejected(RejectError::Unavailable(_)) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "compile_unavailable",
                e.to_string(),
            ),
            AddPluginError::Rejected(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_plugin",
                e.to_string(),
            ),
            AddPluginError::Store(e) => e.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(PluginUploaded {
            name,
            version: added.version,
            sha256: added.sha256,
            config_version: added.config_version,
        }),
    ))
}

/// Everything decided before the body is read: scope, name, size limit, room left under the
/// storage quota, a place in line.
async fn admit_upload(
    s: &ApiState,
    who: &Principal,
    tenant: &str,
    name: &str,
) -> Result<(Store, u64, u64, UploadSlot), ApiError> {
    who.scope(tenant)?;
    wharf_tenancy::model::validate_id(name)
        .map_err(|e| ApiError::bad_request(format!("plugin name: {e}")))?;
    let store = s.store_as(who).await?;
    let limit = store
        .tenant(tenant)
        .await?
        .quotas
        .plugin
        .max_bytes
        .min(s.max_plugin_bytes as u64);
    let room = store.plugin_upload_room(tenant, name).await?;
    let slot = s.uploads.admit(tenant).await?;
    Ok((store, limit, room, slot))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/plugins", tag = "plugins",
    params(("tenant" = String, Path)),
    responses((status = 200, body = PluginList), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<PluginList>, ApiError> {
    who.scope(&tenant)?;
    let plugins = s.store().await?.tenant(&tenant).await?.plugins;
    Ok(Json(PluginList { plugins }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/plugins/{plugin}", tag = "plugins",
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    responses((status = 200, body = PluginVersions), (status = "4XX", body = ErrorBody)))]
pub(super) async fn versions(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Json<PluginVersions>, ApiError> {
    who.scope(&tenant)?;
    let t = s.store().await?.tenant(&tenant).await?;
    let versions: Vec<_> = t.plugins.into_iter().filter(|p| p.name == name).collect();
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "plugin {name:?} does not exist"
        )));
    }
    Ok(Json(PluginVersions { name, versions }))
}

/// Deletes every version of a plugin no route uses any more.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/plugins/{plugin}", tag = "plugins",
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    responses((status = 200, body = Changed), (status = "4XX", body = ErrorBody)))]
pub(super) async fn remove(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Json<Changed>, ApiError> {
    who.scope(&tenant)?;
    let v = s
        .store_as(&who)
        .await?
        .remove_plugin(&tenant, &name)
        .await?;
    Ok(Json(Changed { config_version: v }))
}

/// Moves every route running this plugin to `version`, keeping each attachment's config.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/plugins/{plugin}/rollback", tag = "plugins",
    params(("tenant" = String, Path), ("plugin" = String, Path)), request_body = Rollback,
    responses((status = 200, body = RolledBack), (status = "4XX", body = ErrorBody)))]
pub(super) async fn rollback(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
    Json(b): Json<Rollback>,
) -> Result<Json<RolledBack>, ApiError> {
    who.scope(&tenant)?;
    let (routes, config_version) = s
        .store_as(&who)
        .await?
        .rollback_plugin(&tenant, &name, b.version)
        .await?;
    Ok(Json(RolledBack {
        routes,
        version: b.version,
        config_version,
    }))
}
