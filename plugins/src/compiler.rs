//! Compiling uploads off the request and API threads, fairly: one background thread (so
//! compiles use at most one core) takes queued compiles from
//! tenants in round-robin order, and a tenant may have only a few queued, so one tenant's
//! compile bombs delay another tenant's upload by at most one compile. Identical bytes queued
//! twice compile once.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::cache::{CompiledPlugin, ComponentCache};
use crate::error::RejectError;
use crate::round_robin::RoundRobin;

type Outcome = Result<Arc<CompiledPlugin>, RejectError>;

/// Compiles a tenant may have queued (the running one included).
const MAX_QUEUED_PER_TENANT: usize = 4;

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

pub(crate) struct Compiler {
    shared: Arc<(Mutex<Queue>, Condvar)>,
}

impl Compiler {
    pub(crate) fn start(cache: Arc<ComponentCache>) -> std::io::Result<Self> {
        let shared: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("wharf-compile".into())
            .spawn(move || {
                while let Some((sha, bytes)) = next(&worker) {
                    let outcome = cache.get_or_compile_hashed(&sha, &bytes);
                    let waiters = {
                        let mut q = lock(&worker.0);
                        q.running = None;
                        q.jobs.remove(&sha).map(|j| j.waiters).unwrap_or_default()
                    };
                    for w in waiters {
                        let _ = w.send(outcome.clone());
                    }
                }
            })?;
        Ok(Compiler { shared })
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
            let mut q = lock(&self.shared.0);
            if let Some(job) = q.jobs.get_mut(&sha) {
                job.waiters.push(reply);
            } else {
                let key: Arc<str> = tenant.unwrap_or(CONTROL_PLANE).into();
                let queued = q.waiting.queued(&key);
                let running = usize::from(q.running.as_ref() == Some(&key));
                if tenant.is_some() && queued + running >= MAX_QUEUED_PER_TENANT {
                    return Err(RejectError::Busy);
                }
                q.waiting.push(&key, sha.clone());
                q.jobs.insert(
                    sha,
                    Job {
                        bytes,
                        waiters: vec![reply],
                    },
                );
                self.shared.1.notify_one();
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
        lock(&self.shared.0).stopped = true;
        self.shared.1.notify_all();
    }
}

/// The next compile, from the tenant whose turn it is; `None` once stopped.
fn next(shared: &(Mutex<Queue>, Condvar)) -> Option<(String, Vec<u8>)> {
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
            if job.is_some() {
                q.running = Some(tenant);
                return job;
            }
            continue;
        }
        shared.1.wait(&mut q);
    }
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock()
}
