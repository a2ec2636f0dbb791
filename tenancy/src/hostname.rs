//! Hostnames a tenant owns, exact or wildcard, and how a request's Host is normalized before
//! it is looked up.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// A hostname a tenant owns: `api.acme.test` or `*.acme.test`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HostPattern {
    Exact(String),
    /// Matches any name ending in `.{suffix}`, at any depth, but not the bare suffix.
    Wildcard(String),
}

/// On the wire a hostname is a string: `api.acme.test` or `*.acme.test`.
impl utoipa::PartialSchema for HostPattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "a hostname (api.acme.test) or a wildcard (*.acme.test)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for HostPattern {}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::BadHostname(raw.to_string());
        let lower = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        if !is_dns_name(&name) {
            return Err(bad());
        }
        Ok(if wild {
            HostPattern::Wildcard(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// Does this pattern serve `host` (already normalized: lowercase, no port)?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    /// Could one request host be served by both patterns? Overlap across tenants is refused.
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(a), w @ HostPattern::Wildcard(_))
            | (w @ HostPattern::Wildcard(_), HostPattern::Exact(a)) => w.matches(a),
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => {
                a == b
                    || HostPattern::Wildcard(a.clone()).matches(b)
                    || HostPattern::Wildcard(b.clone()).matches(a)
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        HostPattern::parse(&s)
    }
}

impl From<HostPattern> for String {
    fn from(p: HostPattern) -> String {
        p.to_string()
    }
}

/// The longest DNS name: a longer Host can match no tenant's hostname.
pub const MAX_HOSTNAME_LEN: usize = 253;

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOSTNAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Normalize a request's Host / :authority for lookup: lowercase, no port, no trailing dot.
/// Borrowed from `raw` when that is already its normal form (a lookup runs on every request).
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets' content as is.
        match raw.find(']') {
            Some(end) => &raw[..=end],
            // Unclosed: closed here (it ends in `]`, so there is no dot to trim).
            None => return Cow::Owned(format!("{raw}]").to_ascii_lowercase()),
        }
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                raw
            }
        })
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}
