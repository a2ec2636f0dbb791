//! What one client address may make the proxy spend before it has sent a request: new
//! connections per second on the proxy's listeners (HTTP and HTTPS). Over budget, a connection
//! is closed right after accept, before a TLS handshake (~1 ms of proxy CPU each) or any read.
//! An IPv6 client is budgeted by its /64, which one host typically holds whole. Load balancers
//! in front of the fleet go in `unlimited`. Per node. Idle HTTP/2 connections are closed too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::ConnectionFilter;
use serde::Deserialize;
use wharf_metrics::Metrics;

use crate::budget::Throttle;
use crate::egress::Cidr;

/// The `[clients]` table of the bootstrap file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientLimits {
    /// New connections per second from one address (0: no limit), and how many at once.
    pub new_connections_per_second: u32,
    pub new_connections_burst: u32,
    /// Addresses (CIDR) without a limit, e.g. the load balancers in front of the fleet.
    pub unlimited: Vec<String>,
    /// An HTTP/2 connection with no request for this long is closed (Pingora keeps an idle one
    /// forever otherwise; an idle HTTP/1.1 connection closes after 60 s).
    pub http2_idle_timeout_seconds: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            new_connections_per_second: 200,
            new_connections_burst: 400,
            unlimited: Vec::new(),
            http2_idle_timeout_seconds: 60,
        }
    }
}

pub struct ConnectionBudget {
    throttle: Throttle,
    unlimited: Vec<Cidr>,
    metrics: Arc<Metrics>,
}

/// Pingora's filter trait asks for `Debug`; the buckets are what there is to show.
impl std::fmt::Debug for ConnectionBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionBudget")
            .field("throttle", &self.throttle)
            .field("unlimited", &self.unlimited)
            .finish_non_exhaustive()
    }
}

impl ConnectionBudget {
    /// `None` when connections are not limited.
    pub fn new(
        l: &ClientLimits,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<ConnectionBudget>> {
        if l.new_connections_per_second == 0 {
            return Ok(None);
        }
        let unlimited = l
            .unlimited
            .iter()
            .map(|c| {
                Cidr::parse(c)
                    .ok_or_else(|| anyhow::anyhow!("[clients] unlimited: {c:?} is not a CIDR"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(ConnectionBudget {
            throttle: Throttle::new(l.new_connections_per_second, l.new_connections_burst),
            unlimited,
            metrics,
        }))
    }

    fn admits(&self, ip: IpAddr) -> bool {
        if self.unlimited.iter().any(|c| c.contains(ip)) {
            return true;
        }
        let admitted = self.throttle.take(&client_key(ip)).is_ok();
        if !admitted {
            self.metrics.client_connections_refused_total.inc();
        }
        admitted
    }
}

#[async_trait]
impl ConnectionFilter for ConnectionBudget {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        addr.is_none_or(|a| self.admits(a.ip()))
    }
}

/// The budget's key: the IPv4 address, or an IPv6 address's /64.
fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4).to_string(),
        v4 => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_per_address_with_v6_by_slash_64_and_exemptions() {
        let limits = ClientLimits {
            new_connections_per_second: 1,
            new_connections_burst: 2,
            unlimited: vec!["10.0.0.0/8".into()],
            ..ClientLimits::default()
        };
        let b = ConnectionBudget::new(&limits, Arc::new(Metrics::new()))
            .expect("valid")
            .expect("limited");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(b.admits(ip("192.0.2.1")) && b.admits(ip("192.0.2.1")));
        assert!(!b.admits(ip("192.0.2.1")), "third within the second");
        assert!(b.admits(ip("192.0.2.2")), "another address");
        assert!(b.admits(ip("2001:db8::1")) && b.admits(ip("2001:db8::2")));
        assert!(!b.admits(ip("2001:db8::ffff")), "same /64");
        assert!(b.admits(ip("2001:db8:0:1::1")), "another /64");
        assert!((0..10).all(|_| b.admits(ip("10.1.2.3"))), "unlimited range");
        assert!(b.admits(ip("::ffff:192.0.2.9")) && b.admits(ip("192.0.2.9")));
        assert!(
            !b.admits(ip("::ffff:192.0.2.9")),
            "a mapped address is its IPv4"
        );
        assert!(ConnectionBudget::new(
            &ClientLimits {
                unlimited: vec!["nonsense".into()],
                ..ClientLimits::default()
            },
            Arc::new(Metrics::new())
        )
        .is_err());
    }
}
