//! Idle connections given back. `http_max_connections` caps a tenant's open connections, in use
//! and idle in the pool, all destinations together; hyper's pool keeps idle ones per host for its
//! idle timeout. Without more, connections kept alive to a few hosts would lock the tenant out of
//! every other host for that timeout. So when the cap is reached and a call needs a new
//! connection, the connection idle the longest is closed for it; one in use never is.
//!
//! A connection is idle from the end of a response read whole ([`Tracked::idle`], called by the
//! sender with the [`Mark`] hyper hands back on each response) until the next write on it. The
//! two race through one atomic word, so a write that wins keeps the connection, and a close that
//! wins fails that write (hyper takes the most recently idle connection first, the close the
//! least recently: they rarely meet).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Waker};
use std::time::Instant;

use parking_lot::Mutex;

/// The high bit of a connection's state: closed. The rest counts its writes.
const CLOSED: u64 = 1 << 63;
/// `idle_after`'s value while the connection has not finished an exchange since its last write.
const IN_USE: u64 = u64::MAX;

/// One open connection as the tenant's cap sees it.
pub(super) struct Tracked {
    /// Writes so far, and [`CLOSED`].
    state: AtomicU64,
    /// The write count at the end of the last response read whole: idle while unchanged.
    idle_after: AtomicU64,
    idle_since: Mutex<Instant>,
    /// The connection's reader, woken to see the close.
    reader: Mutex<Option<Waker>>,
}

/// What hyper carries from a connection to each response made on it (`Connected::extra`).
#[derive(Clone)]
pub(super) struct Mark(pub(super) Arc<Tracked>);

impl Tracked {
    /// A write is about to happen; `false`: the connection was closed for another call.
    pub(super) fn writing(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & CLOSED != 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Its writes so far: taken when a response's head arrives (the request written), handed
    /// back to [`Tracked::idle`] once the response is read whole.
    pub(super) fn writes(&self) -> u64 {
        self.state.load(Ordering::Acquire) & !CLOSED
    }

    /// A response on this connection was read whole: idle until its next write. `writes` is
    /// the count when its head arrived: a write since (hyper reused the connection the moment
    /// the body ended) keeps it in use.
    pub(super) fn idle(&self, writes: u64) {
        *self.idle_since.lock() = Instant::now();
        self.idle_after.store(writes, Ordering::Release);
    }

    /// Whether it was closed for another call (the reader then sees the end of the stream).
    pub(super) fn closed(&self, cx: &Context<'_>) -> bool {
        let mut reader = self.reader.lock();
        if self.state.load(Ordering::Acquire) & CLOSED != 0 {
            return true;
        }
        if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *reader = Some(cx.waker().clone());
        }
        false
    }

    /// Closes it if no write came since it went idle.
    fn close_if_idle(&self) -> bool {
        let writes = self.idle_after.load(Ordering::Acquire);
        if writes == IN_USE
            || self
                .state
                .compare_exchange(writes, writes | CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        if let Some(reader) = self.reader.lock().take() {
            reader.wake();
        }
        true
    }

    fn idle_for(&self) -> Option<Instant> {
        let writes = self.idle_after.load(Ordering::Acquire);
        let state = self.state.load(Ordering::Acquire);
        (writes != IN_USE && state == writes).then(|| *self.idle_since.lock())
    }
}

/// A tenant's open connections.
#[derive(Default)]
pub(super) struct OpenConnections {
    conns: Mutex<Vec<Weak<Tracked>>>,
}

impl OpenConnections {
    /// A new connection, in use.
    pub(super) fn track(&self) -> Arc<Tracked> {
        let tracked = Arc::new(Tracked {
            state: AtomicU64::new(0),
            idle_after: AtomicU64::new(IN_USE),
            idle_since: Mutex::new(Instant::now()),
            reader: Mutex::new(None),
        });
        let mut conns = self.conns.lock();
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(&tracked));
        tracked
    }

    /// Closes the connection idle the longest; `false` when every open one is in use.
    pub(super) fn close_longest_idle(&self) -> bool {
        let mut candidates: Vec<(Instant, Arc<Tracked>)> = self
            .conns
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|c| Some((c.idle_for()?, c)))
            .collect();
        candidates.sort_by_key(|(since, _)| *since);
        // The oldest that is still idle when it is closed.
        candidates.iter().any(|(_, c)| c.close_if_idle())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idle_connections_are_closed_the_longest_idle_first() {
        let open = OpenConnections::default();
        let (a, b) = (open.track(), open.track());
        assert!(a.writing() && b.writing());
        assert!(!open.close_longest_idle(), "both in use");
        a.idle(a.writes());
        std::thread::sleep(std::time::Duration::from_millis(2));
        b.idle(b.writes());
        assert!(open.close_longest_idle());
        assert!(!a.writing(), "a, idle the longest, was closed");
        assert!(b.writing(), "b is in use again");
        assert!(!open.close_longest_idle(), "nothing idle left");
        // Reused between its response's head and its end: still in use.
        let head = b.writes();
        assert!(b.writing());
        b.idle(head);
        assert!(!open.close_longest_idle(), "b was written to since");
        b.idle(b.writes());
        assert!(open.close_longest_idle());
        assert!(!b.writing());
    }
}
