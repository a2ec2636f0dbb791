//! The control plane: keeps the live routing table in step with the store, runs upstream health
//! checks, and serves the admin listener. It runs as a Pingora background service on its own
//! runtime, so the store pool and the admin server live and die with that runtime.

pub mod balancer;
pub mod in_flight;
pub mod outliers;
pub mod periodic;
pub mod plugin_ref;
pub mod rate;
pub mod resolve;
pub mod retry_budget;
mod shards;
pub mod sync;
pub mod table;
pub mod targets;
pub mod upstream_tls;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use tokio::sync::OnceCell;
use wharf_tenancy::Store;

use crate::admin_server::AdminServer;
use crate::control::periodic::StoreTasks;
use crate::control::sync::ConfigSync;
use crate::control::table::RoutingTable;

/// The control plane's jobs, on its own runtime: config sync, the admin server, and the small
/// periodic tasks; plus, with `--demo`, the demo's echo upstream.
pub struct ControlPlane {
    pub store_url: String,
    /// The store once connected; the admin API waits on it at start-up.
    pub store: Arc<OnceCell<Store>>,
    pub sync: ConfigSync,
    pub admin: AdminServer,
    pub tasks: StoreTasks,
    /// This node's ACME worker, started once the store is connected (`None`: no `[acme]`).
    pub acme: Mutex<Option<crate::acme::worker::AcmeWorker>>,
    /// Per-minute usage snapshots for the console.
    pub usage: Arc<crate::usage::UsageHistory>,
    pub poll_interval: Duration,
    /// The demo's echo upstream, when `--demo` is on.
    pub echo_listener: Mutex<Option<std::net::TcpListener>>,
    pub store_up: Arc<AtomicBool>,
    /// Set when shutdown begins (`/readyz` answers 503).
    pub draining: Arc<AtomicBool>,
    /// Requests being handled (the proxy's and the admin API's), for draining on shutdown.
    pub in_flight: crate::drain::InFlight,
}

#[async_trait]
impl Service for ControlPlane {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        self.admin.spawn(fds.as_ref(), &shutdown);
        self.run(shutdown).await;
    }

    fn name(&self) -> &str {
        "wharf control plane"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.admin.addr.clone()])
    }
}

impl ControlPlane {
    async fn run(&mut self, mut shutdown: ShutdownWatch) {
        let sync = &self.sync;
        for hc in sync
            .live
            .load()
            .upkeep(sync.capabilities.node().networking.resolver())
        {
            hc.spawn();
        }
        sync.export_cert_expiry(&RoutingTable::default(), &sync.live.load(), None);
        if let Some(listener) = take_listener(&self.echo_listener, "demo echo upstream") {
            tokio::spawn(async move {
                if let Err(e) = crate::echo::serve(listener, "demo-echo".into()).await {
                    tracing::error!("demo echo upstream stopped: {e}");
                }
            });
        }
        periodic::spawn_usage_ticker(self.usage.clone());
        periodic::spawn_capability_upkeep(sync.capabilities.clone(), sync.live.clone());
        let mut store: Option<Store> = None;
        let mut first = true;
        loop {
            // Connect at once on start (the admin API needs the store), then poll.
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(self.poll_interval) => {}
                    _ = shutdown.changed() => {
                        self.draining.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
            first = false;
            if store.is_none() {
                match Store::connect(&self.store_url).await {
                    Ok(s) => {
                        let _ = self.store.set(s.clone());
                        sync.blobs.connect(&s);
                        if let Some(worker) = self.acme.lock().take() {
                            worker.spawn(s.clone());
                        }
                        store = Some(s);
                    }
                    Err(e) => {
                        self.mark_store(false, &e.to_string());
                        continue;
                    }
                }
            }
            if let Some(s) = &store {
                let version = sync.live.load().version;
                self.tasks.run(s, version, &sync.runtime).await;
            }
            periodic::export_target_health(&sync.live, &sync.metrics);
            // Plugins the last table change let go of leave memory once over budget.
            sync.runtime.trim_compiled();
            if let Some(s) = &store {
                match sync.poll(s).await {
                    Ok(()) => self.mark_store(true, ""),
                    Err(e) => self.mark_store(false, &e.to_string()),
                }
            }
        }
        // Admin requests still running (an upload compiling, a write committing) need the
        // store: it closes once they are done (the drain ends the process then, or at the grace
        // period's end).
        while self.in_flight.count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(s) = store {
            s.close().await;
        }
    }
}

impl ControlPlane {
    /// Logs only transitions: a store outage must not flood the log every poll.
    fn mark_store(&self, up: bool, why: &str) {
        self.sync.metrics.config_store_up.set(up as i64);
        let was_up = self.store_up.swap(up, Ordering::Relaxed);
        if was_up && !up {
            tracing::warn!(
                "config store unreachable, serving last good config (version {}): {why}",
                self.sync.live.load().version
            );
        } else if !was_up && up {
            tracing::info!("config store reachable again");
        }
    }
}

/// The listener bound at start-up, moved onto this runtime; `None` if there is none. A listener
/// that cannot move is logged: the service it was for is not running.
fn take_listener(
    slot: &Mutex<Option<std::net::TcpListener>>,
    what: &str,
) -> Option<tokio::net::TcpListener> {
    match crate::upgrade::to_tokio(slot.lock().take()?) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!("the {what} cannot start: {e}");
            None
        }
    }
}
