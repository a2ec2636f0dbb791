//! The admin listener's start: its state from the control plane's, and where its socket comes
//! from (bound at start, handed over by an upgrade, or bound once an old process lets go).

use std::sync::Arc;
use std::time::Duration;

use pingora_core::server::ShutdownWatch;
use tokio::sync::OnceCell;
use wharf_tenancy::Store;

use super::{to_tokio, ControlPlane};
use crate::admin;
use crate::api::{ApiState, OnDemand};
use crate::upgrade::AdminSocket;

/// How long a new process waits for an old one to let go of the admin address it did not hand
/// over (its drain is bounded by its grace period).
const ADMIN_BIND_PATIENCE: Duration = Duration::from_secs(300);

impl ControlPlane {
    /// Serves the admin API and /metrics on `socket` on this runtime.
    pub(super) fn spawn_admin(
        &self,
        socket: AdminSocket,
        store_cell: Arc<OnceCell<Store>>,
        shutdown: &ShutdownWatch,
    ) {
        let state = admin::AdminState {
            in_flight: self.in_flight.clone(),
            config_version: {
                let live = self.live.clone();
                Arc::new(move || live.load().version)
            },
            metrics: self.metrics.clone(),
            store_up: self.store_up.clone(),
            draining: self.draining.clone(),
            listeners: self.listeners.clone(),
            operator_token: self.operator_token.clone(),
        };
        let api = ApiState {
            store: store_cell.clone(),
            runtime: OnDemand::ready(self.runtime.clone()),
            metrics: self.metrics.clone(),
            operator_token: self.operator_token.clone(),
            max_plugin_bytes: self.max_plugin_bytes,
            egress: Some(self.egress.clone()),
            uploads: Default::default(),
            sealer: OnDemand::ready(self.sealer.clone()),
            usage: self.usage.clone(),
            fleet_usage: self
                .usage_prometheus_url
                .as_deref()
                .map(|u| Arc::new(crate::usage_fleet::FleetUsage::new(u))),
            capabilities: self.capabilities.clone(),
            throttles: Arc::new(crate::api::throttle::AdminThrottles::new(
                &self.admin_limits,
            )),
        };
        let handed_over = crate::upgrade::handed_over(self.phases.lock().take(), shutdown.clone());
        tokio::spawn(async move {
            let served = match socket
                .listener(ADMIN_BIND_PATIENCE)
                .await
                .and_then(to_tokio)
            {
                Ok(l) => admin::serve(l, state, api, handed_over).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                tracing::error!("admin listener stopped: {e}");
            }
        });
    }
}
