//! API errors: a status, a stable code, and a message that says what to do.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use wharf_tenancy::StoreError;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Answered before the request body was read: the connection cannot be reused, so say so.
    pub close: bool,
    /// Seconds until a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            close: false,
            retry_after: None,
        }
    }

    /// Over a budget (429), refused before the body is read; retry after `wait`.
    pub fn too_many(code: &'static str, message: impl Into<String>, wait: Duration) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).closing();
        e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        e
    }

    /// This error is sent while the client may still be sending a body we will not read.
    pub fn closing(mut self) -> ApiError {
        self.close = true;
        self
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.code, "message": self.message }));
        if let Some(secs) = self.retry_after {
            return (
                self.status,
                [
                    (axum::http::header::CONNECTION, "close".to_string()),
                    (axum::http::header::RETRY_AFTER, secs.to_string()),
                ],
                body,
            )
                .into_response();
        }
        // Unauthenticated requests are refused before their body is read, whatever the route.
        if self.close || self.status == StatusCode::UNAUTHORIZED {
            return (
                self.status,
                [(axum::http::header::CONNECTION, "close")],
                body,
            )
                .into_response();
        }
        (self.status, body).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if let Some(e) = backend_failure(&e) {
            return e;
        }
        if let StoreError::QuotaExceeded { .. } | StoreError::BelowQuota { .. } = e {
            // As Kubernetes answers a ResourceQuota: the request is fine, this tenant may not.
            return ApiError::new(StatusCode::FORBIDDEN, "quota_exceeded", e.to_string());
        }
        if let StoreError::OrderCap { .. } = e {
            // A rate over the hour: the same request succeeds later.
            return ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string());
        }
        let status = match &e {
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::UnknownTenant(_)
            | StoreError::UnknownRoute { .. }
            | StoreError::UnknownCertificate { .. }
            | StoreError::UnknownPlugin { .. }
            | StoreError::UnknownApiKey(_) => StatusCode::NOT_FOUND,
            StoreError::TenantExists(_)
            | StoreError::HostnameTaken { .. }
            | StoreError::RouteConflict { .. }
            | StoreError::PluginInUse { .. } => StatusCode::CONFLICT,
            StoreError::QuotaExceeded { .. } | StoreError::BelowQuota { .. } => {
                StatusCode::FORBIDDEN
            }
            StoreError::OrderCap { .. } => StatusCode::TOO_MANY_REQUESTS,
            StoreError::Database(_) | StoreError::Migrate(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::BadUrl(_) | StoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let code = match status {
            StatusCode::BAD_REQUEST => "invalid",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::SERVICE_UNAVAILABLE => "store_unavailable",
            _ => "internal_error",
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// A failure of the store itself: its text (SQL, driver and server messages) is logged for the
/// operator and never sent to a client, which gets a stable code. A value the database refuses
/// to hold (Postgres: NUL in text) is the client's input, so 400, though the API checks names
/// before they get this far.
fn backend_failure(e: &StoreError) -> Option<ApiError> {
    match e {
        e if e.is_unstorable_value() => Some(ApiError::bad_request(
            "a value holds a character the config store cannot keep (such as NUL)",
        )),
        StoreError::Database(_) | StoreError::Migrate(_) => {
            tracing::warn!(error = %e, "config store failed an admin request");
            Some(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the config store failed this request; retry shortly (the node's log has the cause)",
            ))
        }
        StoreError::BadUrl(_) | StoreError::Corrupt(_) => {
            tracing::error!(error = %e, "config store failed an admin request");
            Some(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the config store holds data this node cannot read; the node's log has the cause",
            ))
        }
        _ => None,
    }
}
