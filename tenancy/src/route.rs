//! A tenant's route: which requests it matches (path prefix, methods), where it sends them
//! (targets, protocol, TLS, timeouts, retries, health checks) and what runs on the way.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::model::{validate_id, PluginAttachment};
use crate::target::{HostHeader, UpstreamTls};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Route {
    pub id: String,
    /// Matched on whole path segments: `/api` serves `/api` and `/api/x`, not `/apix`.
    pub path_prefix: String,
    /// Upper-case method tokens; empty means every method.
    #[serde(default)]
    pub methods: Vec<String>,
    pub upstreams: Vec<UpstreamTarget>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// The plugin chain, run in order on requests and in reverse on responses.
    #[serde(default)]
    pub plugins: Vec<PluginAttachment>,
    /// How the gateway speaks to the upstream.
    #[serde(default)]
    pub upstream_protocol: UpstreamProtocol,
    /// A request whose connection to a target failed goes to another target, this many times
    /// at most (and within the route's retry budget).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How TLS to `https://` targets is verified.
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// The Host the upstream gets: the client's (default) or the target's own name.
    #[serde(default)]
    pub host_header: HostHeader,
}

/// More retries than this multiply an outage rather than hide one.
pub const MAX_RETRIES: u32 = 5;

/// Retries of a route that does not say.
pub const DEFAULT_RETRIES: u32 = 2;

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// The protocol between the gateway and a route's upstream (clients may use either).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (WebSocket upgrades included).
    #[default]
    Http1,
    /// HTTP/2 without TLS (prior knowledge): gRPC services, trailers kept end to end.
    Http2,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpstreamTarget {
    /// `ip:port`, `host:port` or `http://host[:port]` (`target.rs`); names are resolved off
    /// the request path.
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Timeouts {
    pub connect_ms: u64,
    /// Longest wait for each read from the upstream, the response header included.
    pub read_ms: u64,
    pub write_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 2_000,
            read_ms: 30_000,
            write_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthCheck {
    #[serde(default)]
    pub kind: HealthCheckKind,
    /// For `http`: the path probed with GET; any 2xx is healthy.
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_interval")]
    pub interval_ms: u64,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    #[default]
    Tcp,
    Http,
}

fn default_health_path() -> String {
    "/".to_string()
}

fn default_health_interval() -> u64 {
    1_000
}

impl Route {
    pub fn validate(&mut self) -> Result<(), ValidationError> {
        validate_id(&self.id)?;
        validate_path_prefix(&self.path_prefix)?;
        for m in &mut self.methods {
            if m.is_empty() || m.len() > 20 || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ValidationError::BadMethod(m.clone()));
            }
            m.make_ascii_uppercase();
        }
        self.methods.sort();
        self.methods.dedup();
        if self.upstreams.is_empty() {
            return Err(ValidationError::NoUpstreams(self.id.clone()));
        }
        for u in &self.upstreams {
            crate::target::TargetAddr::parse(&u.addr)?;
            if !(1..=1000).contains(&u.weight) {
                return Err(ValidationError::BadWeight(u.weight));
            }
        }
        if self.retries > MAX_RETRIES {
            return Err(ValidationError::BadRetries(self.retries));
        }
        crate::target::validate_tls(self)?;
        let t = self.timeouts;
        for (name, value) in [
            ("connect_ms", t.connect_ms),
            ("read_ms", t.read_ms),
            ("write_ms", t.write_ms),
        ] {
            if !(1..=3_600_000).contains(&value) {
                return Err(ValidationError::BadTimeout { name, value });
            }
        }
        if self.plugins.len() > 16 {
            return Err(ValidationError::ChainTooLong(self.plugins.len()));
        }
        for p in &self.plugins {
            p.validate()?;
        }
        if let Some(hc) = &self.health_check {
            validate_path_prefix(&hc.path)?;
            if !(100..=3_600_000).contains(&hc.interval_ms) {
                return Err(ValidationError::BadTimeout {
                    name: "health_check.interval_ms",
                    value: hc.interval_ms,
                });
            }
        }
        Ok(())
    }

    /// Does this route serve `path` (no query) for `method`?
    pub fn matches(&self, method: &str, path: &str) -> bool {
        path_has_prefix(path, &self.path_prefix)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }

    /// Could a request match both routes equally well? Such a pair is ambiguous.
    pub fn conflicts_with(&self, other: &Route) -> bool {
        self.id != other.id
            && self.path_prefix == other.path_prefix
            && (self.methods.is_empty()
                || other.methods.is_empty()
                || self.methods.iter().any(|m| other.methods.contains(m)))
    }
}

fn validate_path_prefix(p: &str) -> Result<(), ValidationError> {
    let ok = p.starts_with('/')
        && p.len() <= 1024
        && !p
            .bytes()
            .any(|b| b == b'?' || b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control())
        && !p.split('/').any(|seg| seg == "..");
    if ok {
        Ok(())
    } else {
        Err(ValidationError::BadPathPrefix(p.to_string()))
    }
}

/// Segment-aware prefix test.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_segment_aware() {
        assert!(path_has_prefix("/api", "/api"));
        assert!(path_has_prefix("/api/v1", "/api"));
        assert!(path_has_prefix("/api/v1", "/api/"));
        assert!(!path_has_prefix("/apix", "/api"));
        assert!(path_has_prefix("/anything", "/"));
    }

    #[test]
    fn route_validation_explains() {
        let mut r = Route {
            id: "api".into(),
            path_prefix: "/api".into(),
            methods: vec!["get".into()],
            upstreams: vec![UpstreamTarget {
                addr: "127.0.0.1:80".into(),
                weight: 1,
            }],
            timeouts: Timeouts::default(),
            health_check: None,
            upstream_protocol: Default::default(),
            retries: DEFAULT_RETRIES,
            upstream_tls: Default::default(),
            host_header: Default::default(),
            plugins: vec![],
        };
        r.validate().unwrap();
        assert_eq!(r.methods, vec!["GET"]);
        r.upstreams[0].addr = "example.com".into();
        assert_eq!(
            r.validate(),
            Err(ValidationError::BadUpstream("example.com".into()))
        );
        r.upstreams.clear();
        assert!(matches!(r.validate(), Err(ValidationError::NoUpstreams(_))));
    }
}
