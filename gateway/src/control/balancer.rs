//! Upstream load balancers: one per route, its targets filtered by the egress policy, with
//! optional health checks that run in the background for as long as a table uses the balancer.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use pingora_load_balancing::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{discovery, Backend, Backends, LoadBalancer};
use wharf_tenancy::{HealthCheck, HealthCheckKind, Route};

use wharf_plugins::capabilities::networking::EgressPolicy;

pub type Balancer = LoadBalancer<RoundRobin>;

pub fn hc_interval(hc: &HealthCheck) -> Duration {
    Duration::from_millis(hc.interval_ms)
}

/// Targets the egress policy refuses are left out: never dialled, never health-checked.
pub fn build_balancer(route: &Route, egress: &EgressPolicy) -> Balancer {
    let mut set = BTreeSet::new();
    for u in &route.upstreams {
        if let Err(why) = egress.check_target(&u.addr) {
            tracing::warn!(route = %route.id, addr = %u.addr, "upstream refused by the egress policy: {why}");
            continue;
        }
        match Backend::new_with_weight(&u.addr, u.weight as usize) {
            Ok(b) => {
                set.insert(b);
            }
            Err(e) => tracing::warn!(route = %route.id, addr = %u.addr, "skipping upstream: {e}"),
        }
    }
    let mut backends = Backends::new(discovery::Static::new(set));
    if let Some(hc) = &route.health_check {
        match hc.kind {
            HealthCheckKind::Tcp => backends.set_health_check(TcpHealthCheck::new()),
            HealthCheckKind::Http => {
                let mut check = HttpHealthCheck::new("wharf-health-check", false);
                if let Ok(mut req) =
                    pingora_http::RequestHeader::build("GET", hc.path.as_bytes(), None)
                {
                    match req.insert_header("Host", "wharf-health-check") {
                        Ok(()) => check.req = req,
                        Err(e) => tracing::warn!(route = %route.id, "health check request: {e}"),
                    }
                }
                backends.set_health_check(Box::new(check));
            }
        }
    }
    let lb = LoadBalancer::from_backends(backends);
    // Static discovery never blocks, so this completes on the first poll.
    let updated = futures_now(lb.update());
    if let Some(Err(e)) = updated {
        tracing::warn!(route = %route.id, "load balancer update failed: {e}");
    }
    lb
}

/// Polls a future once; static discovery resolves immediately.
fn futures_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// A balancer whose targets are probed in the background while it is in use.
pub struct HealthChecked {
    pub lb: Weak<Balancer>,
    pub interval: Duration,
}

impl HealthChecked {
    /// Runs on the caller's runtime until the balancer is dropped with the last table using it.
    pub fn spawn(self) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            loop {
                tick.tick().await;
                let Some(lb) = self.lb.upgrade() else { break };
                lb.backends().run_health_check(true).await;
            }
        });
    }
}
