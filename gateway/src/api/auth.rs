//! Who is calling: the operator (token from the bootstrap file or WHARF_OPERATOR_TOKEN) or a
//! tenant (its API key). Every handler scopes by this principal, never by the URL alone.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
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
        if let Some(op) = &state.operator_token {
            // Compare digests: constant-time with respect to the secret's content.
            if Sha256::digest(op.as_bytes()) == Sha256::digest(token.as_bytes()) {
                return Ok(Principal::Operator);
            }
        }
        let store = state.store().await?;
        match store.authenticate(token).await? {
            Some(tenant) => Ok(Principal::Tenant(tenant)),
            None => Err(ApiError::unauthorized("unknown or revoked token")),
        }
    }
}
