//! Plugin upload (validated and compiled before it is stored), versions, rollback, delete.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use wharf_plugins::RejectError;
use wharf_tenancy::Store;

use super::uploads::UploadSlot;
use crate::oci::{self, OciError};
use crate::plugin_add::{add_plugin, AddPluginError};

use super::schema::{
    Changed, ErrorBody, OciSource, PluginList, PluginUploaded, PluginVersions, Rollback, RolledBack,
};
use super::{ApiError, ApiState, Principal};

/// Who may upload is settled before a byte of the body is read: an unauthenticated or
/// out-of-scope upload costs the gateway nothing but its headers (clients sending
/// `Expect: 100-continue`, as curl does for large bodies, never send the body at all). Bodies
/// being read are capped per tenant and per node. A JSON body (`{"oci": "oci://…"}`) names a
/// registry to pull the module from instead: this node pulls it under the egress policy, within
/// the same size limit and upload slot, and stores it like an upload.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/plugins/{plugin}", tag = "plugins",
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    request_body(description = "the plugin's binary .wasm (a component or a proxy-wasm module), or {\"oci\": REF} to pull it from a registry",
        content((Vec<u8> = "application/wasm"), (OciSource = "application/json"))),
    responses((status = 201, body = PluginUploaded),
        (status = 400, description = "a malformed body or OCI reference", body = ErrorBody),
        (status = 403, description = "over the tenant's plugin storage quota, or a registry address the egress policy refuses", body = ErrorBody),
        (status = 413, description = "over the tenant's plugin size limit", body = ErrorBody),
        (status = 422, description = "not a plugin Wharf runs; or the registry's error, no wasm layer, a digest mismatch", body = ErrorBody),
        (status = 429, description = "the tenant's compiles are queued full", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub(super) async fn upload(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
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
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        let (wasm, source, digest) = pull(&s, body, read_limit, limit, room).await?;
        let mut up = store_version(&s, &store, &tenant, &name, &wasm, limit, Some(&source)).await?;
        up.source = Some(source);
        up.digest = Some(digest);
        return Ok((StatusCode::CREATED, Json(up)));
    }
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
    let up = store_version(&s, &store, &tenant, &name, &bytes, limit, None).await?;
    Ok((StatusCode::CREATED, Json(up)))
}

/// The module a JSON body's `oci` reference names, pulled by this node (at most `read_limit`
/// bytes), with the pinned reference and manifest digest.
async fn pull(
    s: &ApiState,
    body: Body,
    read_limit: u64,
    limit: u64,
    room: u64,
) -> Result<(Vec<u8>, String, String), ApiError> {
    let bytes = axum::body::to_bytes(body, 8 << 10).await.map_err(|_| {
        ApiError::bad_request("a JSON upload is {\"oci\": \"oci://…\"}, at most 8 KiB").closing()
    })?;
    let src: OciSource = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("a JSON upload is {{\"oci\": \"oci://…\"}}: {e}"))
    })?;
    let node = s.capabilities.node();
    let dialer = oci::Dialer {
        policy: node.networking.policy().clone(),
        resolver: node.networking.resolver().clone(),
        tls: node.http.client_tls(),
    };
    let pulled = oci::pull(&dialer, &src.oci, read_limit)
        .await
        .map_err(|e| oci_error(e, limit, room))?;
    Ok((pulled.wasm, pulled.source, pulled.digest))
}

fn oci_error(e: OciError, limit: u64, room: u64) -> ApiError {
    let (status, code) = match &e {
        OciError::BadReference(_) => (StatusCode::BAD_REQUEST, "invalid"),
        OciError::Forbidden(_) => (StatusCode::FORBIDDEN, "egress_forbidden"),
        OciError::TooLarge { .. } if room < limit => (StatusCode::FORBIDDEN, "quota_exceeded"),
        OciError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        OciError::DigestMismatch { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "oci_digest_mismatch")
        }
        OciError::NoWasm(_) => (StatusCode::UNPROCESSABLE_ENTITY, "oci_no_wasm"),
        OciError::Registry(_) => (StatusCode::UNPROCESSABLE_ENTITY, "oci_registry_error"),
        OciError::Unreachable(_) | OciError::Timeout(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "oci_unreachable")
        }
    };
    let mut message = e.to_string();
    if code == "quota_exceeded" {
        message =
            format!("{message} (quota plugin_storage_bytes leaves room for {room} more bytes)");
    }
    ApiError::new(status, code, message)
}

/// Validates, compiles and stores `bytes` as the next version (uploads and pulls alike).
async fn store_version(
    s: &ApiState,
    store: &Store,
    tenant: &str,
    name: &str,
    bytes: &[u8],
    limit: u64,
    source: Option<&str>,
) -> Result<PluginUploaded, ApiError> {
    let added = add_plugin(store, s.runtime.get()?, tenant, name, bytes, limit, source)
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
    Ok(PluginUploaded {
        name: name.to_string(),
        version: added.version,
        sha256: added.sha256,
        config_version: added.config_version,
        source: None,
        digest: None,
    })
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
