//! Who is calling: the operator (token from the bootstrap file or WHARF_OPERATOR_TOKEN) or a
//! tenant (its API key). Every handler scopes by this principal, never by the URL alone.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::Method;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::ApiState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    Tenant(String),
}

impl Principal {
    /// Operators reach every tenant; a tenant only itself. Others' tenants look nonexistent.
    pub fn scope(&self, tenant: &str) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant(own) if own == tenant => Ok(()),
            Principal::Tenant(_) => Err(ApiError::not_found(format!(
                "tenant {tenant:?} does not exist"
            ))),
        }
    }

    pub fn operator(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant(_) => Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "only the operator may do this",
            )),
        }
    }

    /// The name written to the audit log.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::Tenant(t) => format!("tenant:{t}"),
        }
    }
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Principal, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "send Authorization: Bearer <operator token or tenant API key>",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let digest = Sha256::digest(token.as_bytes());
        if let Some(op) = &state.operator_token {
            // Compare digests: constant-time with respect to the secret's content.
            if Sha256::digest(op.as_bytes()) == digest {
                return Ok(Principal::Operator);
            }
        }
        // Budgets first: a caller over one costs the store nothing.
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let t = &state.throttles;
        t.failed_auth.peek(&client).map_err(|wait| {
            ApiError::too_many(
                "too_many_failed_authentications",
                "too many failed authentications from this address; retry later",
                wait,
            )
        })?;
        let key = hex::encode(digest);
        let write = !matches!(parts.method, Method::GET | Method::HEAD);
        let over = |wait, what| {
            ApiError::too_many(
                "rate_limited",
                format!("this API key's {what} budget is used up"),
                wait,
            )
        };
        // Peeked before the lookup, taken after it: only authenticated keys enter the budgets.
        t.calls.peek(&key).map_err(|w| over(w, "call"))?;
        if write {
            t.writes.peek(&key).map_err(|w| over(w, "write"))?;
        }
        let tenant = match looks_like_api_key(token) {
            true => state.store().await?.authenticate(token).await?,
            false => None,
        };
        let Some(tenant) = tenant else {
            let _ = t.failed_auth.take(&client);
            return Err(ApiError::unauthorized("unknown or revoked token"));
        };
        t.calls.take(&key).map_err(|w| over(w, "call"))?;
        if write {
            t.writes.take(&key).map_err(|w| over(w, "write"))?;
        }
        Ok(Principal::Tenant(tenant))
    }
}

/// Tenant API keys are `wharf_` and 48 hex digits: anything else is refused without a query.
fn looks_like_api_key(token: &str) -> bool {
    token
        .strip_prefix("wharf_")
        .is_some_and(|h| h.len() == 48 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}
