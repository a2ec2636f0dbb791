//! A route's TLS to its `https://` targets, ready for each connect: the CA bundle parsed once
//! (the system's roots when the route has none) and the server name, if the route sets one.
//! Verification is never off: Pingora skips it for an empty server name, so a connect without
//! one is refused before it starts.

use std::sync::Arc;

use pingora_core::utils::tls::{CertKey, WrappedX509};

use crate::tls::resolver::ServedCert;
use wharf_tenancy::target::TargetAddr;
use wharf_tenancy::Route;

pub struct UpstreamTls {
    /// SNI and the certificate's name; `None`: each target's own name.
    pub server_name: Option<String>,
    /// The route's CA bundle; `None`: the system's roots.
    pub ca: Option<Arc<[WrappedX509]>>,
    /// The client certificate to present, if the route names one: `Err(name)` when the tenant
    /// has no usable certificate of that name (the connect is refused, not made without it).
    pub client: Option<Result<Arc<CertKey>, String>>,
    /// Pooled connections are shared only between peers of the same trust: Pingora's pool key
    /// covers the address, SNI and verification flags but not the CA, so without this a
    /// connection verified against one route's private CA would serve a route trusting only the
    /// system's roots (or another tenant's CA).
    pub pool_key: u64,
}

impl UpstreamTls {
    /// `None` for a route without `https://` targets.
    pub fn of(route: &Route, certs: &[Arc<ServedCert>]) -> Option<Arc<UpstreamTls>> {
        let tls = route
            .upstreams
            .iter()
            .any(|u| TargetAddr::parse(&u.addr).is_ok_and(|t| t.tls));
        if !tls {
            return None;
        }
        let ca = route.upstream_tls.ca_pem.as_deref().map(|pem| {
            let certs = crate::tls::ca::parse_ca(pem);
            if certs.is_empty() {
                // The API refuses such a bundle; one stored otherwise trusts nothing.
                tracing::warn!(route = %route.id, "upstream_tls.ca_pem holds no certificate");
            }
            certs.into()
        });
        let pool_key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            route.upstream_tls.hash(&mut h);
            h.finish()
        };
        let client = route.upstream_tls.client_certificate.as_ref().map(|name| {
            certs
                .iter()
                .find(|c| &c.name == name)
                .map(|c| c.client.clone())
                .ok_or_else(|| name.clone())
        });
        Some(Arc::new(UpstreamTls {
            server_name: route.upstream_tls.server_name.clone(),
            ca,
            client,
            pool_key,
        }))
    }
}
