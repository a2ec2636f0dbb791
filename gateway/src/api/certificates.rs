//! A tenant's TLS certificates for its own hostnames: uploaded as PEM (chain + key), validated,
//! the key sealed before it is stored. No endpoint ever returns a key.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use wharf_tenancy::TlsCertificate;

use super::schema::{
    CertificateInfo, CertificateList, CertificateStored, CertificateUpload, Changed, ErrorBody,
};
use super::{ApiError, ApiState, Principal};
use crate::tls::upload::{put_certificate, UploadError};

/// PEM text grows when JSON-escaped (one `\n` per 64 characters); twice the PEM cap is ample.
const MAX_UPLOAD_BYTES: usize = 2 * crate::tls::validate::MAX_PEM_BYTES;

fn info(c: TlsCertificate) -> CertificateInfo {
    CertificateInfo {
        name: c.name,
        hostnames: c.hostnames,
        not_after_ms: c.not_after_ms,
        fingerprint: c.fingerprint,
        updated_at_ms: c.updated_at_ms,
        // Certificates stored before bundles with keys were refused may still hold one.
        chain_pem: crate::tls::validate::without_keys(&c.chain_pem),
    }
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/certificates", tag = "certificates",
    params(("tenant" = String, Path)),
    responses((status = 200, body = CertificateList), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<CertificateList>, ApiError> {
    who.scope(&tenant)?;
    let certs = s.store().await?.tenant(&tenant).await?.certificates;
    Ok(Json(CertificateList {
        certificates: certs.into_iter().map(info).collect(),
    }))
}

/// Stores a certificate for the tenant's hostnames, or replaces the one of that name (rotation:
/// new handshakes on every node use it once they apply the change; open connections go on).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/certificates/{name}", tag = "certificates",
    params(("tenant" = String, Path), ("name" = String, Path)), request_body = CertificateUpload,
    responses((status = 200, body = CertificateStored), (status = "4XX", body = ErrorBody)))]
pub(super) async fn put(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, name)): Path<(String, String)>,
    body: axum::body::Body,
) -> Result<Json<CertificateStored>, ApiError> {
    who.scope(&tenant)?;
    // Read at most what a certificate upload can be (PEM, JSON-escaped) before parsing: the
    // listener's body limit is the plugin upload's, far larger.
    let bytes = axum::body::to_bytes(body, MAX_UPLOAD_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a certificate upload is at most {MAX_UPLOAD_BYTES} bytes"),
            )
        })?;
    let up: CertificateUpload = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "send {{\"chain_pem\": \"…\", \"key_pem\": \"…\"}} as JSON: {e}"
        ))
    })?;
    let store = s.store_as(&who).await?;
    let (version, stored) = put_certificate(
        &store,
        s.sealer.get()?,
        &tenant,
        &name,
        &up.chain_pem,
        &up.key_pem,
    )
    .await
    .map_err(|e| match e {
        UploadError::Invalid(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_certificate",
            e.to_string(),
        ),
        UploadError::Store(e) => e.into(),
        UploadError::Seal(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        ),
    })?;
    Ok(Json(CertificateStored {
        config_version: version,
        certificate: info(stored),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/certificates/{name}", tag = "certificates",
    params(("tenant" = String, Path), ("name" = String, Path)),
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
        .delete_certificate(&tenant, &name)
        .await?;
    Ok(Json(Changed { config_version: v }))
}
