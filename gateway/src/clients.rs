//! What one client address may make the proxy spend before it has sent a request: new
//! connections per second on the proxy's listeners (HTTP and HTTPS) — over budget, a connection
//! is closed right after accept, before a TLS handshake (~1 ms of proxy CPU each) or any read —
//! and connections held open at once (`PerAddress`, which wraps the proxy application and so
//! sees each connection's whole life). An IPv6 client is budgeted by its /64, which one host
//! typically holds whole. Load balancers in front of the fleet go in `unlimited`. Per node.
//! Idle HTTP/2 connections are closed too.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::ConnectionFilter;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use serde::Deserialize;
use wharf_metrics::Metrics;

use crate::throttle::Throttle;
use ipnet::IpNet;
use wharf_plugins::capabilities::networking::egress;

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
    /// forever otherwise).
    pub http2_idle_timeout_seconds: u64,
    /// Connections one address may hold open at once (0: no limit); a slow sender cannot pile
    /// up connections and descriptors.
    pub max_connections_per_address: u32,
    /// An HTTP/1 request head must be complete this long after its first byte (0: no limit;
    /// Pingora times each read only, so a byte a second would do forever).
    pub request_head_timeout_seconds: u64,
    /// A request body must arrive at this rate on average once the grace below is used up, as
    /// Apache's mod_reqtimeout `body=GRACE,MinRate=RATE` (0: no minimum). A body stalled
    /// outright fails after the grace.
    pub request_body_min_bytes_per_second: u64,
    pub request_body_grace_seconds: u64,
    /// An idle HTTP/1.1 connection between requests is closed after this long (Pingora waits
    /// forever for a second request on a kept-alive connection).
    pub keepalive_idle_timeout_seconds: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            new_connections_per_second: 200,
            new_connections_burst: 400,
            unlimited: Vec::new(),
            http2_idle_timeout_seconds: 60,
            max_connections_per_address: 256,
            request_head_timeout_seconds: 10,
            request_body_min_bytes_per_second: 500,
            request_body_grace_seconds: 20,
            keepalive_idle_timeout_seconds: 60,
        }
    }
}

pub struct ConnectionThrottle {
    throttle: Throttle,
    unlimited: Vec<IpNet>,
    metrics: Arc<Metrics>,
}

/// Pingora's filter trait asks for `Debug`; the buckets are what there is to show.
impl std::fmt::Debug for ConnectionThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionThrottle")
            .field("throttle", &self.throttle)
            .field("unlimited", &self.unlimited)
            .finish_non_exhaustive()
    }
}

impl ConnectionThrottle {
    /// `None` when connections are not limited.
    pub fn new(
        l: &ClientLimits,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<ConnectionThrottle>> {
        if l.new_connections_per_second == 0 {
            return Ok(None);
        }
        let unlimited = parse_ranges(&l.unlimited)?;
        Ok(Some(ConnectionThrottle {
            throttle: Throttle::new(l.new_connections_per_second, l.new_connections_burst),
            unlimited,
            metrics,
        }))
    }

    fn admits(&self, ip: IpAddr) -> bool {
        if egress::contains(&self.unlimited, ip) {
            return true;
        }
        let admitted = self.throttle.take(&client_key(ip)).is_ok();
        if !admitted {
            self.metrics
                .client_connections_refused_total
                .with_label_values(&["new_connection_rate"])
                .inc();
        }
        admitted
    }
}

#[async_trait]
impl ConnectionFilter for ConnectionThrottle {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        addr.is_none_or(|a| self.admits(a.ip()))
    }
}

/// The proxy application, with the connections each client address holds open counted: one
/// over `max` is closed before it is served (and before its TLS handshake, on the TLS
/// listener).
pub struct PerAddress<A> {
    inner: Arc<A>,
    max: u32,
    /// Each connection's request heads must be complete within this (zero: untimed).
    head_timeout: std::time::Duration,
    unlimited: Vec<IpNet>,
    /// Shared by the plain and the TLS listener's apps: one budget per address.
    open: Arc<Mutex<HashMap<String, u32>>>,
    metrics: Arc<Metrics>,
    /// The TLS listener's: each connection is handshaken before it is served.
    tls: Option<Arc<crate::tls::terminate::TlsTerminator>>,
}

/// One open connection of an address; released when the connection ends.
struct Held<'a, A> {
    app: &'a PerAddress<A>,
    key: String,
}

impl<A> PerAddress<A> {
    /// `max` 0: no limit.
    pub fn new(inner: A, l: &ClientLimits, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        Ok(PerAddress {
            inner: Arc::new(inner),
            max: l.max_connections_per_address,
            head_timeout: std::time::Duration::from_secs(l.request_head_timeout_seconds),
            unlimited: parse_ranges(&l.unlimited)?,
            open: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            tls: None,
        })
    }

    /// The same app and per-address budget for the TLS listener, terminating TLS with `tls`.
    pub fn with_tls(&self, tls: crate::tls::terminate::TlsTerminator) -> Self {
        PerAddress {
            inner: self.inner.clone(),
            max: self.max,
            head_timeout: self.head_timeout,
            unlimited: self.unlimited.clone(),
            open: self.open.clone(),
            metrics: self.metrics.clone(),
            tls: Some(Arc::new(tls)),
        }
    }

    /// A hold on one of `ip`'s connections; `Err(())` when it already holds `max`.
    fn hold(&self, ip: IpAddr) -> Result<Option<Held<'_, A>>, ()> {
        if self.max == 0 || egress::contains(&self.unlimited, ip) {
            return Ok(None);
        }
        let key = client_key(ip);
        let mut open = self.open.lock();
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return Err(());
        }
        *n += 1;
        Ok(Some(Held { app: self, key }))
    }
}

impl<A> Drop for Held<'_, A> {
    fn drop(&mut self) {
        let mut open = self.app.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for PerAddress<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = session
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let held = match ip.map(|ip| self.hold(ip)) {
            Some(Err(())) => {
                self.metrics
                    .client_connections_refused_total
                    .with_label_values(&["open_connections"])
                    .inc();
                return None; // dropping the stream closes it
            }
            Some(Ok(held)) => held,
            None => None,
        };
        let session = match &self.tls {
            // A handshake stalled by the client (TCP open, hello never finished) would hold its
            // connection and task without end: it gets the head's deadline.
            Some(tls) if !self.head_timeout.is_zero() => {
                tokio::time::timeout(self.head_timeout, tls.accept(session))
                    .await
                    .ok()
                    .flatten()?
            }
            Some(tls) => tls.accept(session).await?,
            None => session,
        };
        let session = crate::head_deadline::wrap(session, self.head_timeout);
        let reused = self.inner.process_new(session, shutdown).await;
        drop(held);
        reused
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

fn parse_ranges(ranges: &[String]) -> anyhow::Result<Vec<IpNet>> {
    ranges
        .iter()
        .map(|c| {
            egress::parse_range(c)
                .ok_or_else(|| anyhow::anyhow!("[clients] unlimited: {c:?} is not a CIDR"))
        })
        .collect()
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
        let b = ConnectionThrottle::new(&limits, Arc::new(Metrics::new()))
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
        assert!(ConnectionThrottle::new(
            &ClientLimits {
                unlimited: vec!["nonsense".into()],
                ..ClientLimits::default()
            },
            Arc::new(Metrics::new())
        )
        .is_err());
    }
}
