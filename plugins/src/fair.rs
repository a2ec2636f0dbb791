//! Fair sharing of plugin CPU between tenants.
//!
//! Plugins run on a few dedicated threads; a job may execute wasm only while it holds one of
//! `slots` CPU slots (one per plugin thread). Waiting jobs queue per tenant, and free slots go to
//! tenants in round-robin order, so a tenant with 100 jobs waiting and a tenant with one take
//! turns. A running job gives its slot back at every epoch tick when anyone is waiting (a time
//! slice of one tick), before host-call I/O, and at the end of each call. Time spent waiting is
//! recorded per job, so deadlines can charge a tenant only for its own running time.

use crate::round_robin::RoundRobin;
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wharf_metrics::{Metrics, PluginSeries};

pub struct FairScheduler {
    state: Mutex<State>,
    /// Jobs waiting for a slot, all tenants: the epoch tick's cheap "is anyone waiting?".
    waiting: AtomicUsize,
    /// Slots held now: while none is, no wasm runs and the epoch ticker can rest.
    held: AtomicUsize,
    /// Origin of the `held_since` timestamps.
    epoch: Instant,
    /// A job keeps a slot at least this long once granted (one epoch tick), so a short call
    /// finishes in its first turn instead of yielding at a tick that falls just after it began.
    quantum_ns: u64,
    metrics: Arc<Metrics>,
    /// Woken when a slot is taken while none was held: the epoch ticker rests meanwhile.
    ticker: Arc<crate::engine::TickerRest>,
}

struct State {
    free: usize,
    /// Waiting jobs per tenant, the tenants in the order they get the next free slot.
    waiting: RoundRobin<Weak<CpuSlot>>,
}

/// One plugin instance's claim on the plugin CPU. `held` and `waiting` change only under the
/// scheduler's lock.
pub struct CpuSlot {
    sched: Arc<FairScheduler>,
    tenant: Arc<str>,
    held: AtomicBool,
    waiting: AtomicBool,
    notify: Notify,
    held_since_ns: AtomicU64,
    /// Waits that have ended, and the start of the one in progress (0: none).
    queued_ns: AtomicU64,
    waiting_since_ns: AtomicU64,
    /// The tenant's plugin series (CPU, queue wait, yields), resolved once per tenant.
    series: Arc<PluginSeries>,
}

impl FairScheduler {
    pub fn new(slots: usize, quantum: Duration, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(FairScheduler {
            state: Mutex::new(State {
                free: slots.max(1),
                waiting: RoundRobin::default(),
            }),
            waiting: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            epoch: Instant::now(),
            quantum_ns: u64::try_from(quantum.as_nanos()).unwrap_or(u64::MAX),
            metrics,
            ticker: Arc::default(),
        })
    }

    /// What wakes the epoch ticker from its rest (`engine::start_epoch_ticker`).
    pub fn ticker(&self) -> Arc<crate::engine::TickerRest> {
        self.ticker.clone()
    }

    /// A slot handle for one instance of `tenant`'s plugin (holds nothing yet).
    pub fn slot(self: &Arc<Self>, tenant: &Arc<str>) -> Arc<CpuSlot> {
        Arc::new(CpuSlot {
            sched: self.clone(),
            tenant: tenant.clone(),
            held: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            notify: Notify::new(),
            held_since_ns: AtomicU64::new(0),
            queued_ns: AtomicU64::new(0),
            waiting_since_ns: AtomicU64::new(0),
            series: self.metrics.plugin_series(tenant),
        })
    }

    /// Whether any plugin is running (holds a slot).
    pub fn busy(&self) -> bool {
        self.held.load(Ordering::Acquire) > 0
    }

    /// Whether any job is waiting for a slot.
    pub fn contended(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Hands free slots to waiting jobs, one tenant at a time in ring order. Returns the slots
    /// it upgraded, to be dropped after the lock is released (dropping the last reference to a
    /// slot takes the lock).
    fn dispatch(&self, st: &mut State) -> Vec<Arc<CpuSlot>> {
        let mut touched = Vec::new();
        while st.free > 0 {
            // A claim whose owner dropped it, or that stopped waiting, is skipped.
            let turn = st.waiting.next_turn(|weak| {
                let slot = weak.upgrade()?;
                if slot.waiting.load(Ordering::Acquire) {
                    return Some(slot);
                }
                touched.push(slot);
                None
            });
            let Some((_, granted)) = turn else {
                break;
            };
            if let Some(slot) = granted {
                st.free -= 1;
                slot.waiting.store(false, Ordering::Release);
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                slot.held_since_ns.store(self.now_ns(), Ordering::Relaxed);
                slot.held.store(true, Ordering::Release);
                if self.held.fetch_add(1, Ordering::AcqRel) == 0 {
                    self.ticker.wake();
                }
                slot.notify.notify_one();
                touched.push(slot);
            }
        }
        touched
    }
}

impl CpuSlot {
    /// The tenant's plugin series.
    pub fn series(&self) -> &Arc<PluginSeries> {
        &self.series
    }

    /// Total time this instance has waited for the CPU (and for its tenant's instance quota).
    pub fn queued(&self) -> Duration {
        let since = self.waiting_since_ns.load(Ordering::Acquire);
        let current = match since {
            0 => 0,
            s => self.sched.now_ns().saturating_sub(s),
        };
        Duration::from_nanos(
            self.queued_ns
                .load(Ordering::Acquire)
                .saturating_add(current),
        )
    }

    /// Counts time waited outside the scheduler (e.g. for an instance permit) as queueing.
    pub fn add_queued(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.queued_ns.fetch_add(ns, Ordering::Relaxed);
        self.series.queue_wait.observe(d.as_secs_f64());
    }

    /// Waits for a slot: at once when one is free and nobody is queued, else in the tenant's
    /// turn.
    pub async fn acquire(self: &Arc<Self>) {
        let touched = {
            let mut st = self.sched.lock();
            if self.held.load(Ordering::Acquire) {
                return;
            }
            if st.waiting.is_empty() && st.free > 0 {
                st.free -= 1;
                self.held_since_ns
                    .store(self.sched.now_ns(), Ordering::Relaxed);
                self.held.store(true, Ordering::Release);
                if self.sched.held.fetch_add(1, Ordering::AcqRel) == 0 {
                    self.sched.ticker.wake();
                }
                return;
            }
            self.enqueue(&mut st);
            self.sched.dispatch(&mut st)
        };
        drop(touched);
        self.wait().await;
    }

    /// Gives the slot back (end of a call, or before waiting on I/O).
    pub fn release(&self) {
        let touched = {
            let mut st = self.sched.lock();
            self.release_locked(&mut st);
            self.sched.dispatch(&mut st)
        };
        drop(touched);
    }

    /// The epoch tick: when other jobs wait, go to the back of the line; otherwise let the
    /// thread's other tasks (I/O completions that may become waiters) run.
    pub async fn yield_slice(self: Arc<Self>) {
        let held_for = self
            .sched
            .now_ns()
            .saturating_sub(self.held_since_ns.load(Ordering::Relaxed));
        if !self.sched.contended() || held_for < self.sched.quantum_ns {
            tokio::task::yield_now().await;
            return;
        }
        let touched = {
            let mut st = self.sched.lock();
            if !self.held.load(Ordering::Acquire) {
                return;
            }
            self.release_locked(&mut st);
            self.enqueue(&mut st);
            self.sched.dispatch(&mut st)
        };
        drop(touched);
        self.series.yields.inc();
        self.wait().await;
    }

    fn release_locked(&self, st: &mut State) {
        if self.held.swap(false, Ordering::AcqRel) {
            st.free += 1;
            self.sched.held.fetch_sub(1, Ordering::AcqRel);
            let since = self.held_since_ns.load(Ordering::Relaxed);
            let ran = self.sched.now_ns().saturating_sub(since);
            self.series.cpu_seconds.inc_by(ran as f64 / 1e9);
        }
    }

    fn enqueue(self: &Arc<Self>, st: &mut State) {
        if self.waiting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.sched.waiting.fetch_add(1, Ordering::AcqRel);
        st.waiting.push(&self.tenant, Arc::downgrade(self));
    }

    /// Runs `setup`, its time counted as queueing while it runs (deadlines see it as waiting,
    /// within the queueing cap): Wharf's own lazy set-up, which no plugin should pay for.
    pub async fn waiting_for<F: std::future::Future>(self: &Arc<Self>, setup: F) -> F::Output {
        let guard = self.start_waiting();
        let out = setup.await;
        guard.finish();
        out
    }

    /// From now until the guard finishes (or is dropped), this slot's time is queueing.
    fn start_waiting(self: &Arc<Self>) -> WaitGuard<'_> {
        self.waiting_since_ns
            .store(self.sched.now_ns().max(1), Ordering::Release);
        WaitGuard {
            slot: self,
            started: Instant::now(),
            done: false,
        }
    }

    async fn wait(self: &Arc<Self>) {
        let guard = self.start_waiting();
        while !self.held.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
        guard.finish();
    }
}

/// Records the time waited, and undoes the wait when the waiting future is dropped (the call
/// was cancelled): a slot granted meanwhile goes straight to the next job.
struct WaitGuard<'a> {
    slot: &'a Arc<CpuSlot>,
    started: Instant,
    done: bool,
}

impl WaitGuard<'_> {
    fn finish(mut self) {
        self.done = true;
        self.record();
    }

    fn record(&self) {
        // Add before clearing the start, so `queued()` never drops in between.
        self.slot.add_queued(self.started.elapsed());
        self.slot.waiting_since_ns.store(0, Ordering::Release);
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.record();
        let touched = {
            let mut st = self.slot.sched.lock();
            if self.slot.waiting.swap(false, Ordering::AcqRel) {
                self.slot.sched.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            self.slot.release_locked(&mut st);
            self.slot.sched.dispatch(&mut st)
        };
        drop(touched);
    }
}

impl Drop for CpuSlot {
    fn drop(&mut self) {
        let mut st = self.sched.lock();
        if self.waiting.swap(false, Ordering::AcqRel) {
            self.sched.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        if self.held.swap(false, Ordering::AcqRel) {
            st.free += 1;
            self.sched.held.fetch_sub(1, Ordering::AcqRel);
        }
        let touched = self.sched.dispatch(&mut st);
        drop(st);
        drop(touched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(slots: usize) -> Arc<FairScheduler> {
        FairScheduler::new(slots, Duration::from_millis(1), Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn free_slot_is_taken_at_once_and_returned() {
        let s = sched(1);
        let a = s.slot(&"a".into());
        a.acquire().await;
        assert!(a.held.load(Ordering::Acquire));
        a.release();
        let b = s.slot(&"b".into());
        b.acquire().await;
        assert!(b.held.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn tenants_take_turns_whatever_their_queue_length() {
        let s = sched(1);
        let running = s.slot(&"a".into());
        running.acquire().await;
        // Tenant a queues five jobs, then tenant b one.
        let mut waits = Vec::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..6 {
            let tenant: Arc<str> = if i < 5 { "a".into() } else { "b".into() };
            let slot = s.slot(&tenant);
            let order = order.clone();
            waits.push(tokio::spawn(async move {
                slot.acquire().await;
                order.lock().push(tenant.to_string());
                slot.release();
            }));
            // Let the job enqueue before the next, so the queue order is known.
            while s.waiting.load(Ordering::Acquire) < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        running.release();
        for w in waits {
            w.await.unwrap();
        }
        let order = order.lock().clone();
        assert_eq!(
            order[..2],
            ["a", "b"],
            "b is served second, not sixth: {order:?}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_waiter_passes_its_grant_on() {
        let s = sched(1);
        let running = s.slot(&"a".into());
        running.acquire().await;
        let cancelled = s.slot(&"b".into());
        let c2 = cancelled.clone();
        let waiter = tokio::spawn(async move { c2.acquire().await });
        while !s.contended() {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        running.release();
        let next = s.slot(&"c".into());
        tokio::time::timeout(Duration::from_secs(1), next.acquire())
            .await
            .expect("the slot was not leaked to the cancelled waiter");
        assert!(!cancelled.held.load(Ordering::Acquire));
    }
}
