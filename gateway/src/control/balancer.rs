//! Upstream load balancers: one per route over its targets (`targets.rs`), with optional health
//! checks and re-discovery of named targets in the background while a table uses the balancer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use pingora_load_balancing::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backends, LoadBalancer};
use tokio::sync::watch;
use wharf_tenancy::{HealthCheck, HealthCheckKind, Route};

use super::targets::{Discovery, Targets};
use wharf_plugins::capabilities::networking::{Name, Resolver};

pub type Balancer = LoadBalancer<RoundRobin>;

pub fn hc_interval(hc: &HealthCheck) -> Duration {
    Duration::from_millis(hc.interval_ms)
}

/// The route's balancer over its targets (`targets.rs`: names resolved, every address checked
/// against the egress policy), with its health check.
pub fn build_balancer(route: &Route, targets: &Arc<Targets>) -> Balancer {
    let mut backends = Backends::new(Box::new(Discovery(targets.clone())));
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
    // Discovery reads the resolver's last answers and never waits, so this completes at once.
    let updated = futures_now(lb.update());
    if let Some(Err(e)) = updated {
        tracing::warn!(route = %route.id, "load balancer update failed: {e}");
    }
    lb
}

/// Polls a future once; discovery here never waits.
pub(crate) fn update_now(lb: &Balancer) {
    if let Some(Err(e)) = futures_now(lb.update()) {
        tracing::warn!("load balancer update failed: {e}");
    }
}

/// Polls a future once.
fn futures_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// A balancer's upkeep while a table uses it: its targets probed every health-check interval,
/// and its named targets discovered again whenever the resolver's answers change.
pub struct Upkeep {
    pub lb: Weak<Balancer>,
    pub health: Option<Duration>,
    /// Named targets: re-discover on every answer the resolver changes.
    pub names: Option<watch::Receiver<u64>>,
    /// Those names, which a new table waits on briefly before it goes live.
    pub waits_on: Vec<Arc<Name>>,
}

impl Upkeep {
    /// Waits (at most `patience`) until every name of `upkeeps` has a first answer, then has
    /// their balancers discover again: a table goes live with its new names resolved.
    pub async fn settle(upkeeps: &[Upkeep], resolver: &Resolver, patience: Duration) {
        let names: Vec<Arc<Name>> = upkeeps.iter().flat_map(|u| u.waits_on.clone()).collect();
        if names.is_empty() {
            return;
        }
        resolver.settled(&names, patience).await;
        for lb in upkeeps.iter().filter_map(|u| u.lb.upgrade()) {
            update_now(&lb);
        }
    }
}

impl Upkeep {
    /// Runs on the caller's runtime until the balancer is dropped with the last table using it.
    pub fn spawn(self) {
        let Upkeep {
            lb,
            health,
            mut names,
            ..
        } = self;
        tokio::spawn(async move {
            // Without a health check the tick only bounds how long a dropped balancer's task
            // lingers.
            let mut tick = tokio::time::interval(health.unwrap_or(Duration::from_secs(5)));
            loop {
                let changed = async {
                    match &mut names {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                let probe = tokio::select! {
                    _ = tick.tick() => health.is_some(),
                    alive = changed => {
                        if !alive {
                            names = None;
                        }
                        false
                    }
                };
                let Some(lb) = lb.upgrade() else { break };
                if names.is_some() {
                    update_now(&lb);
                }
                if probe {
                    lb.backends().run_health_check(true).await;
                }
            }
        });
    }
}
