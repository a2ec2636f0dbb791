//! Tenants, hostnames and routes: the config an operator writes and the gateway serves.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
pub use crate::target::{HostHeader, UpstreamTls, MAX_CA_PEM_BYTES};

pub use crate::hostname::{normalize_host, HostPattern};
use crate::quotas::Quotas;
pub use crate::route::{
    path_has_prefix, HealthCheck, HealthCheckKind, Route, Timeouts, UpstreamProtocol,
    UpstreamTarget, DEFAULT_RETRIES, MAX_RETRIES,
};

/// Validated identifier for tenants and routes: stable, URL- and label-safe.
pub fn validate_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::BadId(id.to_string()))
    }
}

/// Tenant ids that would read as Wharf's own names (the store's `system` actor, the operator)
/// in audit logs, keys or labels.
pub const RESERVED_TENANT_IDS: &[&str] = &["system", "sys", "wharf", "operator", "admin", "root"];

/// A tenant id: a plain id that is not reserved.
pub fn validate_tenant_id(id: &str) -> Result<(), ValidationError> {
    validate_id(id)?;
    if RESERVED_TENANT_IDS.contains(&id) {
        return Err(ValidationError::ReservedId(id.to_string()));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: String,
    pub display_name: String,
    pub hostnames: Vec<HostPattern>,
    pub routes: Vec<Route>,
    pub quotas: Quotas,
    /// Every stored version of every plugin of this tenant, by name then version.
    #[serde(default)]
    pub plugins: Vec<PluginVersion>,
    /// TLS certificates for its hostnames, by name.
    #[serde(default)]
    pub certificates: Vec<TlsCertificate>,
}

impl Tenant {
    pub fn plugin_version(&self, name: &str, version: i64) -> Option<&PluginVersion> {
        self.plugins
            .iter()
            .find(|p| p.name == name && p.version == version)
    }
}

/// A tenant's TLS certificate, as stored: the chain in PEM and what was learned validating it.
/// The private key is sealed with the operator's key and never serialized.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TlsCertificate {
    pub name: String,
    /// Leaf first.
    pub chain_pem: String,
    /// The tenant's hostnames this certificate serves.
    pub hostnames: Vec<String>,
    pub not_after_ms: i64,
    /// SHA-256 of the leaf certificate (DER), hex.
    pub fingerprint: String,
    pub updated_at_ms: i64,
    #[serde(skip)]
    #[schema(ignore)]
    pub key_sealed: String,
}

impl std::fmt::Debug for TlsCertificate {
    /// Without the sealed key: logs never carry key material, even encrypted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("name", &self.name)
            .field("hostnames", &self.hostnames)
            .field("not_after_ms", &self.not_after_ms)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A stored, immutable version of one of a tenant's plugins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginVersion {
    pub name: String,
    pub version: i64,
    pub sha256: String,
    pub created_at_ms: i64,
    /// Where it was pulled from, when it came from an OCI registry: the reference pinned to
    /// its manifest digest (`oci://registry/repository:tag@sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A plugin in a route's chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginAttachment {
    pub plugin: String,
    pub version: i64,
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub on_error: OnError,
    /// Where the plugin may send HTTP requests (`https://auth.example.com`,
    /// `https://*.example.com`, `http://10.0.0.5:8080`); empty: nowhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub allowed_outbound_hosts: Vec<crate::outbound::OutboundHost>,
    /// A proxy-wasm plugin's configuration (`proxy_on_configure`): JSON, or a string passed as
    /// its text. Ignored by components (they read `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub plugin_config: Option<crate::proxy_config::ProxyConfig>,
    /// A proxy-wasm plugin's VM configuration (`proxy_on_vm_start`), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub vm_config: Option<crate::proxy_config::ProxyConfig>,
}

/// What a plugin failure does to the request.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// The request fails with the plugin's error (the safe default for auth plugins).
    #[default]
    FailClosed,
    /// The plugin is skipped and the request goes on.
    FailOpen,
}

impl PluginAttachment {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_id(&self.plugin)?;
        if self.config.len() > 64
            || self
                .config
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 4096)
        {
            return Err(ValidationError::BadPluginConfig);
        }
        for (field, config) in [
            ("plugin_config", &self.plugin_config),
            ("vm_config", &self.vm_config),
        ] {
            if let Some(c) = config {
                c.validate(field)?;
            }
        }
        crate::outbound::validate_list(&self.allowed_outbound_hosts)
    }
}

pub fn validate_display_name(name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() || name.chars().count() > 200 || has_control(name) {
        return Err(ValidationError::BadDisplayName);
    }
    Ok(())
}

/// Whether `s` holds a control character (NUL, newline, escape, DEL, C1 controls): no name or
/// label the API stores or shows may, since stores (Postgres refuses NUL), logs and terminals
/// each read them differently.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A free-form name a client sends (a path parameter, a label): non-empty, at most `max_bytes`,
/// no control characters. The error says which rule it broke.
pub fn validate_text(s: &str, max_bytes: usize) -> Result<(), TextError> {
    if s.is_empty() {
        Err(TextError::Empty)
    } else if s.len() > max_bytes {
        Err(TextError::TooLong(max_bytes))
    } else if has_control(s) {
        Err(TextError::Control)
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} bytes")]
    TooLong(usize),
    #[error("must not contain control characters (NUL, newlines, escapes)")]
    Control,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_parse_and_match() {
        let w = HostPattern::parse("*.Acme.test.").unwrap();
        assert_eq!(w, HostPattern::Wildcard("acme.test".into()));
        assert!(w.matches("api.acme.test"));
        assert!(w.matches("a.b.acme.test"));
        assert!(!w.matches("acme.test"));
        assert!(!w.matches("evilacme.test"));
        assert!(HostPattern::parse("api.acme.test:8080").is_err());
        assert!(HostPattern::parse("*").is_err());
        assert!(HostPattern::parse("a..b").is_err());
        assert!(HostPattern::parse("http://x").is_err());
    }

    #[test]
    fn overlap_covers_wildcards_both_ways() {
        let p = |s| HostPattern::parse(s).unwrap();
        assert!(p("api.acme.test").overlaps(&p("*.acme.test")));
        assert!(p("*.acme.test").overlaps(&p("api.acme.test")));
        assert!(p("*.acme.test").overlaps(&p("*.eu.acme.test")));
        assert!(!p("*.acme.test").overlaps(&p("acme.test")));
        assert!(!p("*.acme.test").overlaps(&p("*.other.test")));
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("API.Acme.Test:8080"), "api.acme.test");
        assert_eq!(normalize_host("api.acme.test."), "api.acme.test");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("[::1"), "[::1]");
        assert_eq!(normalize_host(" Api.Test.:443 "), "api.test");
        // Already normal: borrowed, not copied (a lookup runs on every request).
        assert!(matches!(
            normalize_host("api.acme.test:8080"),
            std::borrow::Cow::Borrowed("api.acme.test")
        ));
    }
}
