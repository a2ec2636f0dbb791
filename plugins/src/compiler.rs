//! Compiling uploads off the request and API threads, fairly: one background thread (so
//! compiles use at most one core) takes queued compiles from tenants in round-robin order, and a
//! tenant may have only a few queued, so one tenant's compile bombs delay another tenant's
//! upload by at most one compile. Identical bytes queued twice compile once.
//!
//! A proxy-wasm module comes back from that thread with baseline (Winch) code, which serves at
//! once; its optimized (Cranelift) compile is queued for a second thread, the optimizer, which
//! runs at the lowest priority (nice 19: it gets the CPU the proxy, the plugins and the upload
//! compiles leave) and takes tenants in turn as well. Uploads never wait behind an
//! optimization, and compiles use at most two cores, one of them only when idle.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::cache::{CompiledPlugin, ComponentCache, Tier};
use crate::error::RejectError;
use crate::round_robin::RoundRobin;

type Outcome = Result<Arc<CompiledPlugin>, RejectError>;

/// Compiles a tenant may have queued (the running one included), in each lane.
const MAX_QUEUED_PER_TENANT: usize = 4;

/// Optimizations queued on the node at most (each holds its module's bytes until it runs).
/// Past either bound an optimization is dropped: that module serves baseline code until it is
/// next loaded (a restart, or an eviction from memory), which queues it again.
const MAX_OPTIMIZATIONS_QUEUED: usize = 16;

/// The optimizer's priority (Linux nice): below everything else on the node.
const OPTIMIZER_NICE: i32 = 19;

/// The queue key of compiles the control plane asks for (stored plugins): never refused.
const CONTROL_PLANE: &str = "";

struct Job {
    bytes: Vec<u8>,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

#[derive(Default)]
struct Queue {
    /// Content hashes waiting, per tenant, the tenants in turn order.
    waiting: RoundRobin<String>,
    /// Queued or compiling, by content hash.
    jobs: HashMap<String, Job>,
    /// The tenant whose compile is running.
    running: Option<Arc<str>>,
    stopped: bool,
}

impl Queue {
    /// Queues `sha` (not queued yet) for `key` unless that tenant (not the control plane) has
    /// `per_tenant` queued or running already, or `total` are queued. False when refused.
    fn push(&mut self, key: &Arc<str>, sha: &str, per_tenant: usize, total: usize) -> bool {
        let queued = self.waiting.queued(key);
        let running = usize::from(self.running.as_ref() == Some(key));
        if (&**key != CONTROL_PLANE && queued + running >= per_tenant) || self.jobs.len() >= total {
            return false;
        }
        self.waiting.push(key, sha.to_string());
        true
    }
}

/// A queue and the thread that works it.
type Lane = Arc<(Mutex<Queue>, Condvar)>;

pub(crate) struct Compiler {
    uploads: Lane,
    optimizer: Lane,
}

impl Compiler {
    pub(crate) fn start(cache: Arc<ComponentCache>) -> std::io::Result<Self> {
        let uploads: Lane = Arc::default();
        let optimizer: Lane = Arc::default();
        let (worker, optimize, compiles) = (uploads.clone(), optimizer.clone(), cache.clone());
        std::thread::Builder::new()
            .name("wharf-compile".into())
            .spawn(move || {
                while let Some((tenant, sha, bytes)) = next(&worker) {
                    let outcome = compiles.get_or_compile_hashed(&sha, &bytes);
                    if let Ok(p) = &outcome {
                        if p.tier == Tier::Baseline && !p.superseded() {
                            queue_optimization(&optimize, &compiles, tenant, sha.clone(), bytes);
                        }
                    }
                    for w in finish(&worker, &sha) {
                        let _ = w.send(outcome.clone());
                    }
                }
            })?;
        let worker = optimizer.clone();
        std::thread::Builder::new()
            .name("wharf-optimize".into())
            .spawn(move || {
                crate::executor::lower_priority(OPTIMIZER_NICE);
                while let Some((_, sha, bytes)) = next(&worker) {
                    cache.optimize(&sha, &bytes);
                    finish(&worker, &sha);
                }
            })?;
        Ok(Compiler { uploads, optimizer })
    }

    /// Compiles `bytes` on the compile thread. With a tenant (an upload), refuses with
    /// [`RejectError::Busy`] while that tenant has [`MAX_QUEUED_PER_TENANT`] compiles queued;
    /// without (the control plane loading stored plugins), always queues.
    pub(crate) async fn compile(
        &self,
        tenant: Option<&str>,
        sha: String,
        bytes: Vec<u8>,
    ) -> Outcome {
        let (reply, result) = oneshot::channel();
        {
            let mut q = lock(&self.uploads.0);
            if let Some(job) = q.jobs.get_mut(&sha) {
                job.waiters.push(reply);
            } else {
                let key: Arc<str> = tenant.unwrap_or(CONTROL_PLANE).into();
                if !q.push(&key, &sha, MAX_QUEUED_PER_TENANT, usize::MAX) {
                    return Err(RejectError::Busy);
                }
                q.jobs.insert(
                    sha,
                    Job {
                        bytes,
                        waiters: vec![reply],
                    },
                );
                self.uploads.1.notify_one();
            }
        }
        result.await.unwrap_or_else(|_| {
            Err(RejectError::Unavailable(
                "the compile thread has stopped".into(),
            ))
        })
    }
}

impl Drop for Compiler {
    fn drop(&mut self) {
        for lane in [&self.uploads, &self.optimizer] {
            lock(&lane.0).stopped = true;
            lane.1.notify_all();
        }
    }
}

/// Queues a module's optimized compile for the optimizer thread, in its tenant's turn, or
/// drops it past the bounds (counted: `wharf_plugin_compiles_total{compiler="dropped"}`).
fn queue_optimization(
    lane: &Lane,
    cache: &ComponentCache,
    tenant: Arc<str>,
    sha: String,
    bytes: Vec<u8>,
) {
    let mut q = lock(&lane.0);
    if q.stopped || q.jobs.contains_key(&sha) {
        return;
    }
    if !q.push(
        &tenant,
        &sha,
        MAX_QUEUED_PER_TENANT,
        MAX_OPTIMIZATIONS_QUEUED,
    ) {
        tracing::warn!(
            tenant = %tenant,
            "too many optimizations pending: plugin {sha} serves its baseline code until it is \
             next loaded"
        );
        cache.count_dropped_optimization();
        return;
    }
    q.jobs.insert(
        sha,
        Job {
            bytes,
            waiters: Vec::new(),
        },
    );
    lane.1.notify_one();
}

/// Ends the running job: who waits for its outcome.
fn finish(lane: &Lane, sha: &str) -> Vec<oneshot::Sender<Outcome>> {
    let mut q = lock(&lane.0);
    q.running = None;
    q.jobs.remove(sha).map(|j| j.waiters).unwrap_or_default()
}

/// The next compile, from the tenant whose turn it is; `None` once stopped.
fn next(shared: &(Mutex<Queue>, Condvar)) -> Option<(Arc<str>, String, Vec<u8>)> {
    let mut q = lock(&shared.0);
    loop {
        if q.stopped {
            return None;
        }
        if let Some((tenant, sha)) = q.waiting.next_turn(Some) {
            // The job stays in `jobs` while it compiles, so identical uploads join it.
            let job = sha.and_then(|s| {
                let bytes = std::mem::take(&mut q.jobs.get_mut(&s)?.bytes);
                Some((s, bytes))
            });
            if let Some((sha, bytes)) = job {
                q.running = Some(tenant.clone());
                return Some((tenant, sha, bytes));
            }
            continue;
        }
        shared.1.wait(&mut q);
    }
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock()
}
