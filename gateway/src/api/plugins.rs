//! Plugin upload (validated and compiled before it is stored), versions, rollback, delete.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use wharf_plugins::RejectError;
use wharf_tenancy::Store;

use super::uploads::UploadSlot;
use crate::plugin_add::{add_plugin, AddPluginError};

use super::{ApiError, ApiState, Principal};

/// Who may upload is settled before a byte of the body is read: an unauthenticated or
/// out-of-scope upload costs the gateway nothing but its headers (clients sending
/// `Expect: 100-continue`, as curl does for large bodies, never send the body at all). Bodies
/// being read are capped per tenant and per node.
pub async fn upload(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (store, limit, _slot) = admit_upload(&s, &who, &tenant, &name)
        .await
        .map_err(ApiError::closing)?;
    let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("upload refused: the limit is {limit} bytes"),
            )
            .closing()
        })?;
    let added = add_plugin(&store, &s.runtime, &tenant, &name, bytes.to_vec(), limit)
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
        Json(json!({
            "name": name,
            "version": added.version,
            "sha256": added.sha256,
            "config_version": added.config_version,
        })),
    ))
}

/// Everything decided before the body is read: scope, name, size limit, a place in line.
async fn admit_upload(
    s: &ApiState,
    who: &Principal,
    tenant: &str,
    name: &str,
) -> Result<(Store, u64, UploadSlot), ApiError> {
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
    let slot = s.uploads.admit(tenant).await?;
    Ok((store, limit, slot))
}

pub async fn list(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, ApiError> {
    who.scope(&tenant)?;
    Ok(Json(
        json!({ "plugins": s.store().await?.tenant(&tenant).await?.plugins }),
    ))
}

pub async fn versions(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    who.scope(&tenant)?;
    let t = s.store().await?.tenant(&tenant).await?;
    let versions: Vec<_> = t.plugins.iter().filter(|p| p.name == name).collect();
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "plugin {name:?} does not exist"
        )));
    }
    Ok(Json(json!({ "name": name, "versions": versions })))
}

pub async fn remove(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    who.scope(&tenant)?;
    let v = s
        .store_as(&who)
        .await?
        .remove_plugin(&tenant, &name)
        .await?;
    Ok(Json(json!({ "config_version": v })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    version: i64,
}

/// Moves every route running this plugin to `version`, keeping each attachment's config.
pub async fn rollback(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
    Json(b): Json<Rollback>,
) -> Result<Json<Value>, ApiError> {
    who.scope(&tenant)?;
    let (moved, config_version) = s
        .store_as(&who)
        .await?
        .rollback_plugin(&tenant, &name, b.version)
        .await?;
    Ok(Json(
        json!({ "routes": moved, "version": b.version, "config_version": config_version }),
    ))
}
