//! Every path parameter of every API route (tenant, route, plugin, certificate, key, host) is
//! checked here once, before a handler or the store sees it: a NUL or another control character
//! is a client's mistake (400 naming the parameter), not a query the store must refuse with its
//! own error text. Names that are valid but unknown still reach the handler and answer 404.

use axum::extract::{RawPathParams, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use wharf_tenancy::model::validate_text;

/// The longest path parameter: a hostname (253) is the longest name the API stores.
pub(super) const MAX_PARAM_BYTES: usize = 253;

/// Middleware (a route layer, so the route's parameters are known).
pub(super) async fn check(
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let params = match params {
        Ok(p) => p,
        // Percent-encoding that does not decode to UTF-8.
        Err(_) => {
            return ApiError::bad_request("a path parameter is not valid UTF-8 once decoded")
                .into_response()
        }
    };
    for (name, value) in &params {
        if let Err(why) = validate_text(value, MAX_PARAM_BYTES) {
            return ApiError::bad_request(format!("path parameter {name}: {why}")).into_response();
        }
    }
    next.run(req).await
}
