//! A tenant's Redis connection on this node: one multiplexed connection that all the tenant's
//! plugin calls share. Commands in flight at the same moment leave in one write and Redis reads
//! them in one read (pipelining). The pool this replaces lent each command a connection of its
//! own, so every command paid its own write, read and wake-ups on both sides (measured: 9,000 →
//! 12,200 requests a second for `redis-rate-limit`, see docs/benchmarks.md).
//!
//! Sharing is safe because nothing a plugin sends leaves state on a connection. Every command
//! runs inside Wharf's wrapper script (one atomic `EVALSHA`), and the allow-list has no `WATCH`,
//! `MULTI`, `SELECT`, `SUBSCRIBE` or blocking command.
//!
//! `redis_max_connections` caps the connections the tenant holds at once. That is the shared one,
//! plus ones retired after a failure while commands sent on them finish. A connection idle for
//! [`FRESH_FOR`] is checked with a `PING` before it serves: Redis may have restarted meanwhile.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::{
    self, aio::MultiplexedConnection, AsyncConnectionConfig, RedisError, Value,
};
use parking_lot::Mutex;
use prometheus::{Histogram, IntGauge};
use wharf_tenancy::RedisQuotas;

use super::{refuse, HostError, TenantRedis, COMMAND_TIMEOUT};

/// A connection used again within this long of its last use skips the check. A dead one then
/// fails its command (and is retired) instead of costing every command a round trip.
const FRESH_FOR: Duration = Duration::from_secs(1);

pub(super) struct Connections {
    client: redis::Client,
    max: u32,
    open: Arc<OpenCount>,
    current: Mutex<Option<Current>>,
    /// One connect at a time: callers that find no connection wait for it.
    opening: tokio::sync::Mutex<()>,
    /// Connects tried: a caller that waited behind a failed one fails too, at once, instead of
    /// trying again (with Redis unreachable, N callers would otherwise wait N connect timeouts).
    /// A connection's id is the number of the attempt that opened it.
    attempts: AtomicU64,
    wait: Histogram,
}

struct Current {
    lease: Lease,
    last_used: Instant,
}

/// A caller's handle on an open connection (a clone of the shared one).
#[derive(Clone)]
struct Lease {
    conn: MultiplexedConnection,
    id: u64,
    _held: Arc<Held>,
}

/// The tenant's open connections, and their gauge.
struct OpenCount {
    n: AtomicU32,
    gauge: IntGauge,
}

/// One open connection, counted until its last lease is gone (the socket closes then too).
struct Held(Arc<OpenCount>);

impl Drop for Held {
    fn drop(&mut self) {
        let left = self.0.n.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.gauge.set(i64::from(left));
    }
}

impl Connections {
    pub(super) fn new(
        url: &str,
        tenant: &str,
        max: u32,
        metrics: &wharf_metrics::Metrics,
    ) -> Result<Connections, RedisError> {
        let label = metrics.tenant(tenant);
        let gauge = |state| {
            metrics
                .pool_connections
                .with_label_values(&[&*label, "redis", state])
        };
        // A shared connection is never idle in a pool: every open one counts as in use.
        gauge("idle").set(0);
        metrics
            .pool_quota
            .with_label_values(&[&*label, "redis"])
            .set(i64::from(max));
        Ok(Connections {
            client: redis::Client::open(url)?,
            max,
            open: Arc::new(OpenCount {
                n: AtomicU32::new(0),
                gauge: gauge("in_use"),
            }),
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            wait: metrics.pool_wait.with_label_values(&[&*label, "redis"]),
        })
    }

    /// The shared connection, and whether it was idle long enough to need a check. Opens it
    /// when there is none.
    async fn lease(&self) -> Result<(Lease, bool), Opening> {
        if let Some(leased) = self.shared() {
            return Ok(leased);
        }
        // Opening's future (a connect and its handshake) is kilobytes: boxed, so every
        // command's future does not carry it.
        let open: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
            Box::pin(self.open_shared());
        open.await
    }

    /// Opens the shared connection, or finds the one another caller opened meanwhile.
    async fn open_shared(&self) -> Result<(Lease, bool), Opening> {
        let tried = self.attempts.load(Ordering::Acquire);
        let _one = self.opening.lock().await;
        if let Some(leased) = self.shared() {
            return Ok(leased);
        }
        if self.attempts.load(Ordering::Acquire) != tried {
            return Err(Opening::Failed);
        }
        if self.open.n.load(Ordering::Acquire) >= self.max {
            return Err(Opening::AtCap);
        }
        let id = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        // Each command's time is capped by the connection (one timer per command, not two).
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(COMMAND_TIMEOUT));
        let conn = tokio::time::timeout(
            COMMAND_TIMEOUT,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| Opening::Failed)?
        .map_err(|_| Opening::Failed)?;
        let n = self.open.n.fetch_add(1, Ordering::AcqRel) + 1;
        self.open.gauge.set(i64::from(n));
        let lease = Lease {
            conn,
            id,
            _held: Arc::new(Held(self.open.clone())),
        };
        *self.current.lock() = Some(Current {
            lease: lease.clone(),
            last_used: Instant::now(),
        });
        Ok((lease, false))
    }

    fn shared(&self) -> Option<(Lease, bool)> {
        let mut current = self.current.lock();
        let c = current.as_mut()?;
        let now = Instant::now();
        let stale = now.duration_since(c.last_used) >= FRESH_FOR;
        c.last_used = now;
        Some((c.lease.clone(), stale))
    }

    /// No new command goes to connection `id`; the next one opens another. Commands already
    /// sent on it finish (or time out) first.
    fn retire(&self, id: u64) {
        let mut current = self.current.lock();
        if current.as_ref().is_some_and(|c| c.lease.id == id) {
            *current = None;
        }
    }
}

enum Opening {
    AtCap,
    Failed,
}

/// Whether a command's failure was the connection's own, a timeout included (it is then
/// retired).
fn broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

impl TenantRedis {
    /// Sends `call` on the tenant's connection: the connection's and the time's failures, or
    /// Redis's answer (a server error included).
    pub(super) async fn query(
        &self,
        call: &redis::Cmd,
    ) -> Result<Result<Value, RedisError>, HostError> {
        let mut lease = self.leased().await?;
        let result = call.query_async::<Value>(&mut lease.conn).await;
        let dead = matches!(&result, Err(e) if broken(e));
        if dead {
            self.connections.retire(lease.id);
        }
        match result {
            Err(e) if e.is_timeout() => Err(HostError::Timeout),
            Err(_) if dead => Err(HostError::BackendUnavailable),
            r => Ok(r),
        }
    }

    /// The shared connection, checked first when it was idle: one that fails the check is
    /// retired and a new one opened.
    async fn leased(&self) -> Result<Lease, HostError> {
        let started = Instant::now();
        let c = &self.connections;
        let (mut lease, stale) = c.lease().await.map_err(|e| self.opening_error(e))?;
        if stale && !ping(&mut lease.conn).await {
            c.retire(lease.id);
            lease = c.lease().await.map_err(|e| self.opening_error(e))?.0;
        }
        c.wait.observe(started.elapsed().as_secs_f64());
        Ok(lease)
    }

    /// Opens the tenant's connection now, so no request's deadline pays for it.
    pub async fn warm(&self) -> Result<(), HostError> {
        self.leased().await.map(drop)
    }

    fn opening_error(&self, e: Opening) -> HostError {
        match e {
            Opening::AtCap => refuse(
                &self.metrics,
                &self.tenant,
                RedisQuotas::NAMES.max_connections.as_str(),
                format!(
                    "all {} Redis connections are held (commands on a failed one are finishing)",
                    self.connections.max
                ),
            ),
            Opening::Failed => HostError::BackendUnavailable,
        }
    }
}

/// A `PING` whose answer must be this connection's.
async fn ping(conn: &mut MultiplexedConnection) -> bool {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed).to_string();
    let answer = redis::cmd("PING").arg(&n).query_async::<String>(conn).await;
    matches!(answer, Ok(a) if a == n)
}
