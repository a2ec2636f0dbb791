//! Draining on shutdown: after SIGTERM (or after an upgrade handed the sockets over) the node has
//! stopped accepting; requests in flight finish, and the process exits as soon as none remain.
//!
//! Pingora's grace period is a fixed sleep followed by dropping every task, so on its own a node
//! either cuts requests in flight (short grace) or always waits the whole period (long grace).
//! `grace_period_seconds` is therefore the *bound*: the drain watcher ends the process early once
//! the proxy has no request in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_core::server::ExecutionPhase;
use tokio::sync::broadcast::{error::TryRecvError, Receiver};

/// Requests being handled now: the proxy's (header read, answer not yet finished) and the admin
/// API's.
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// Held by a request's context for its whole life.
pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Watches the server's phases on a thread of its own; once the grace period begins (listeners
/// closed), exits the process when no request is in flight. If requests outlast the grace
/// period, Pingora ends them and exits itself.
pub fn exit_when_drained(mut phases: Receiver<ExecutionPhase>, in_flight: InFlight) {
    let spawned = std::thread::Builder::new()
        .name("wharf-drain".into())
        .spawn(move || {
            loop {
                match phases.try_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                    Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(20)),
                    Err(TryRecvError::Closed) => return,
                }
            }
            let started = Instant::now();
            while in_flight.count() > 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            tracing::info!(
                "drained: no request in flight after {:?}, exiting",
                started.elapsed()
            );
            wharf_metrics::tracing_setup::flush();
            std::process::exit(0);
        });
    if let Err(e) = spawned {
        tracing::warn!("no drain watcher ({e}): shutdown waits the whole grace period");
    }
}
