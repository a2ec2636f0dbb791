//! A plugin's own time: wall time of its calls minus the time it waited for the CPU. Deadlines
//! are charged in this time, so a tenant never times out because other tenants kept it waiting.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::fair::CpuSlot;

/// Grace past the deadline for the outer guard: normally the epoch tick stops the plugin first
/// (an interrupt is more precise than cancelling a suspended call).
const GRACE: Duration = Duration::from_millis(5);

/// One call (instantiation, `on-request` or `on-response`) of one instance.
#[derive(Clone, Copy)]
pub struct CallClock {
    started: Instant,
    queued_at_start: Duration,
    /// Own time this call may use: what the request's budget has left.
    budget: Duration,
}

impl CallClock {
    pub fn start(slot: &CpuSlot, budget: Duration) -> Self {
        CallClock {
            started: Instant::now(),
            queued_at_start: slot.queued(),
            budget,
        }
    }

    /// Own time used by this call so far.
    pub fn used(&self, slot: &CpuSlot) -> Duration {
        let queued = slot.queued().saturating_sub(self.queued_at_start);
        self.started.elapsed().saturating_sub(queued)
    }

    /// Own time this call may still use (a host call's I/O must end within it).
    pub fn left(&self, slot: &CpuSlot) -> Duration {
        self.budget.saturating_sub(self.used(slot))
    }

    pub fn expired(&self, slot: &CpuSlot) -> bool {
        self.used(slot) >= self.budget
    }
}

/// Why [`guard`] stopped a call.
pub(crate) enum Overrun {
    /// The plugin used its own time budget (e.g. a host call held past it).
    Deadline,
    /// The request waited longer than the queueing cap.
    Queue,
}

/// Runs `call` until it ends, its own time passes the budget (plus a grace), or the instance's
/// total queueing passes `queue_cap`. Re-arms as waiting extends the wall-clock end.
///
/// `call` is pinned by the caller: a future taken by value would be held twice in this one's
/// state (the argument and its pinned move), and every future around it grows by as much.
pub(crate) async fn guard<F: Future>(
    slot: &Arc<CpuSlot>,
    clock: CallClock,
    queue_cap: Duration,
    mut call: std::pin::Pin<&mut F>,
) -> Result<F::Output, Overrun> {
    // Most calls end in their first poll: they need no timer. (Arming one costs a wake-up of
    // the runtime's driver per call, measurable at a few µs per plugin call.)
    if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        return Ok(out);
    }
    loop {
        let own_left = (clock.budget + GRACE).saturating_sub(clock.used(slot));
        if own_left.is_zero() {
            return Err(Overrun::Deadline);
        }
        let queue_left = (queue_cap + GRACE).saturating_sub(slot.queued());
        if queue_left.is_zero() {
            return Err(Overrun::Queue);
        }
        tokio::select! {
            biased;
            out = call.as_mut() => return Ok(out),
            _ = tokio::time::sleep(own_left.min(queue_left)) => {}
        }
    }
}
