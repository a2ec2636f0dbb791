//! What an upstream target names: `ip:port`, `host:port`, `http://host[:port]` or
//! `https://host[:port]` (TLS, the certificate verified). A name is resolved off the request
//! path (the gateway's resolver) and every address it resolves to passes the egress policy
//! when it is dialled.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::model::Route;

/// The addresses of one name a route uses, at most (the resolver keeps the first, in order);
/// the health-check quota counts a named target as this many.
pub const MAX_ADDRESSES_PER_NAME: usize = 16;

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetAddr {
    pub host: TargetHost,
    pub port: u16,
    /// `https://`: TLS to the upstream, its certificate verified.
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetHost {
    Ip(IpAddr),
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
}

impl TargetAddr {
    pub fn parse(s: &str) -> Result<TargetAddr, ValidationError> {
        let bad = || ValidationError::BadUpstream(s.to_string());
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(TargetAddr {
                host: TargetHost::Ip(addr.ip()),
                port: addr.port(),
                tls: false,
            });
        }
        let (rest, default_port, tls) = match s.split_once("://") {
            Some(("http", rest)) => (rest, Some(80), false),
            Some(("https", rest)) => (rest, Some(443), true),
            Some(_) => return Err(bad()),
            None => (s, None, false),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (rest, default_port.ok_or_else(bad)?),
        };
        if port == 0 {
            return Err(bad());
        }
        // `[::1]` in a URL form.
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(TargetAddr {
                host: TargetHost::Ip(ip),
                port,
                tls,
            });
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if !is_dns_name(&name) {
            return Err(bad());
        }
        Ok(TargetAddr {
            host: TargetHost::Name(name),
            port,
            tls,
        })
    }

    /// The literal address, when the target is one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            TargetHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            TargetHost::Name(_) => None,
        }
    }
}

/// Letters, digits and hyphens in labels of 1-63, 253 at most, not all digits at the end (that
/// reads as a mistyped address).
fn is_dns_name(name: &str) -> bool {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(ok_label)
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// The Host header sent upstream (Kong's `preserve_host`, Envoy's `auto_host_rewrite`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HostHeader {
    /// As the client sent it.
    #[default]
    Client,
    /// The target's name (or address), with its port unless it is the scheme's default.
    Upstream,
}

/// TLS to a route's `https://` targets: the certificate is always verified, against the
/// system's roots or the route's own CA bundle, for the target's name or `server_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTls {
    /// SNI, and the name the certificate must carry; default: each target's own name (needed
    /// for an `https://` target given as an address).
    pub server_name: Option<String>,
    /// PEM certificates that sign the upstream's certificate (a private CA); default: the
    /// system's roots.
    pub ca_pem: Option<String>,
    /// One of the tenant's certificates (by name), presented to the upstream as a client
    /// certificate (mTLS).
    pub client_certificate: Option<String>,
}

/// Largest CA bundle a route may carry.
pub const MAX_CA_PEM_BYTES: usize = 64 << 10;

/// All of a route's targets speak TLS or none does; an `https://` address needs a `server_name`.
pub(crate) fn validate_tls(route: &Route) -> Result<(), ValidationError> {
    let targets: Vec<TargetAddr> = route
        .upstreams
        .iter()
        .filter_map(|u| crate::target::TargetAddr::parse(&u.addr).ok())
        .collect();
    let tls = targets.iter().filter(|t| t.tls).count();
    let bad = |why: &str| Err(ValidationError::TlsUpstream(why.to_string()));
    if tls > 0 && tls < targets.len() {
        return bad("a route's targets are all https:// or none is");
    }
    let t = &route.upstream_tls;
    if tls == 0 && (t.server_name.is_some() || t.ca_pem.is_some() || t.client_certificate.is_some())
    {
        return bad("server_name, ca_pem and client_certificate are for https:// targets");
    }
    if let Some(name) = &t.client_certificate {
        crate::model::validate_id(name)?;
    }
    let named = t.server_name.is_some();
    if tls > 0 && !named && targets.iter().any(|t| t.socket_addr().is_some()) {
        return bad("an https:// target given as an address needs upstream_tls.server_name");
    }
    if let Some(name) = &t.server_name {
        let dns = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
        if name.is_empty() || name.len() > 253 || !name.bytes().all(dns) {
            return bad("server_name must be a DNS name");
        }
    }
    if let Some(pem) = &t.ca_pem {
        if pem.len() > MAX_CA_PEM_BYTES || !pem.contains("-----BEGIN CERTIFICATE-----") {
            return bad("ca_pem must be PEM certificates, 64 KiB at most");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> (String, u16) {
        match TargetAddr::parse(s).unwrap() {
            TargetAddr {
                host: TargetHost::Name(n),
                port,
                ..
            } => (n, port),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn targets_are_addresses_or_names_with_ports() {
        assert_eq!(
            TargetAddr::parse("10.0.0.5:8080").unwrap().socket_addr(),
            Some("10.0.0.5:8080".parse().unwrap())
        );
        assert_eq!(
            TargetAddr::parse("http://[::1]:81").unwrap().socket_addr(),
            Some("[::1]:81".parse().unwrap())
        );
        assert_eq!(name("api.internal:8080"), ("api.internal".into(), 8080));
        assert_eq!(
            name("http://Orders.Shop.svc.cluster.local"),
            ("orders.shop.svc.cluster.local".into(), 80)
        );
        assert_eq!(name("http://api.test.:9000/"), ("api.test".into(), 9000));
        assert_eq!(name("redis:6379"), ("redis".into(), 6379));
        for bad in [
            "api.internal",
            "ftp://x:1",
            "-bad.test:80",
            "a..b:80",
            "10.0.0.300:80",
            "x.test:0",
            "x.test:99999",
            "with space:80",
            "http://",
        ] {
            assert!(TargetAddr::parse(bad).is_err(), "{bad} should be refused");
        }
        let tls = TargetAddr::parse("https://API.example.com").unwrap();
        assert_eq!((tls.tls, tls.port), (true, 443));
        assert_eq!(
            name("https://api.example.com:8443"),
            ("api.example.com".into(), 8443)
        );
    }
}
