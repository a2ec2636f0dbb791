//! The admin listener (/metrics, health, the admin API) as the control plane's runtime runs it:
//! its state is built by `serve` from the node's parts; its socket is bound at start, handed
//! over by an upgrade, or bound once an old process lets go of it.

use parking_lot::Mutex;
use std::time::Duration;

use pingora_core::server::{ExecutionPhase, ListenFds, ShutdownWatch};

use crate::admin::{self, AdminState};
use crate::api::ApiState;

/// How long a new process waits for an old one to let go of the admin address it did not hand
/// over (its drain is bounded by its grace period).
const ADMIN_BIND_PATIENCE: Duration = Duration::from_secs(300);

pub struct AdminServer {
    /// Where it listens; also its key in the table of sockets an upgrade hands over.
    pub addr: String,
    /// Bound before start-up so a busy port fails `wharf serve` at once; `None` when the
    /// listener comes from the process this one upgrades.
    pub bound: Mutex<Option<std::net::TcpListener>>,
    /// The server's phases: after handing its sockets to a new process, this one stops
    /// accepting admin connections at shutdown (the new process answers on the same socket).
    pub phases: Mutex<Option<tokio::sync::broadcast::Receiver<ExecutionPhase>>>,
    pub admin: AdminState,
    pub api: ApiState,
}

impl AdminServer {
    /// Serves on the current runtime until shutdown (or until an upgrade took the socket over).
    pub fn spawn(&self, fds: Option<&ListenFds>, shutdown: &ShutdownWatch) {
        let bound = self.bound.lock().take();
        let socket = match crate::upgrade::admin_listener(fds, &self.addr, bound) {
            Ok(socket) => socket,
            Err(e) => {
                tracing::error!("the admin listener cannot start: {e}");
                return;
            }
        };
        let (state, api) = (self.admin.clone(), self.api.clone());
        let handed_over = crate::upgrade::handed_over(self.phases.lock().take(), shutdown.clone());
        tokio::spawn(async move {
            let served = match socket
                .listener(ADMIN_BIND_PATIENCE)
                .await
                .and_then(crate::upgrade::to_tokio)
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
