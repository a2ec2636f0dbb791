//! Why a host call failed, for metrics and logs, and as the plugin sees it.

use thiserror::Error;

/// Why a host call failed; mirrors the WIT `host-error`.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum HostError {
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error("the backend did not answer in time")]
    Timeout,
    #[error("denied: {0}")]
    Denied(String),
    #[error("the backend is unavailable")]
    BackendUnavailable,
    #[error("invalid call: {0}")]
    Invalid(String),
    #[error("backend error: {0}")]
    Backend(String),
}

impl HostError {
    /// Metric outcome label.
    pub fn outcome(&self) -> &'static str {
        match self {
            HostError::QuotaExceeded(_) => "quota_exceeded",
            HostError::Timeout => "timeout",
            HostError::Denied(_) => "denied",
            HostError::BackendUnavailable => "backend_unavailable",
            HostError::Invalid(_) => "invalid",
            HostError::Backend(_) => "backend_error",
        }
    }
}

impl From<HostError> for crate::bindings::types::HostError {
    /// The error as the WIT `host-error` a plugin receives.
    fn from(e: HostError) -> Self {
        use crate::bindings::types::HostError as W;
        match e {
            HostError::QuotaExceeded(m) => W::QuotaExceeded(m),
            HostError::Timeout => W::Timeout,
            HostError::Denied(m) => W::Denied(m),
            HostError::BackendUnavailable => W::BackendUnavailable,
            HostError::Invalid(m) => W::Invalid(m),
            HostError::Backend(m) => W::Backend(m),
        }
    }
}
