//! A tenant's Redis connections: a pool of multiplexed connections that checks a connection
//! with a round trip only when it may have gone stale.
//!
//! deadpool-redis's own manager sends `UNWATCH` + `PING` each time a connection is taken from
//! the pool: a second round trip, and a second wake-up of Redis and of the gateway, for every
//! command a plugin makes (measured: one `INCR` from a plugin cost Redis 40–53 µs of CPU, see
//! docs/benchmarks.md). A connection used within [`FRESH_FOR`] is handed out as it is; one
//! idle longer (Redis may have restarted or closed it meanwhile) is pinged first, as before. A
//! connection whose command failed on the connection itself is never handed out again
//! ([`discard`]). And a tenant's commands on its connections: [`TenantRedis::query`], its
//! pool's gauges and refusals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_redis::redis::{self, aio::MultiplexedConnection, RedisError, Value};
use wharf_tenancy::RedisQuotas;

use super::{reject, HostError, TenantRedis, COMMAND_TIMEOUT};

use deadpool::managed::TimeoutType;
pub(super) use deadpool::{managed::Timeouts, Runtime};

pub(super) type Pool = managed::Pool<Manager>;
type Conn = managed::Object<Manager>;
type PoolError = managed::PoolError<RedisError>;

/// A connection taken again within this long of its last use skips the check: a dead one then
/// fails its command (and is discarded) instead of costing every command a round trip.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(1);

pub(super) struct Manager {
    client: redis::Client,
    ping: AtomicU64,
}

impl Manager {
    pub(super) fn new(url: &str) -> Result<Manager, RedisError> {
        Ok(Manager {
            client: redis::Client::open(url)?,
            ping: AtomicU64::new(0),
        })
    }
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client.get_multiplexed_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        m: &Metrics,
    ) -> RecycleResult<RedisError> {
        if m.last_used() < FRESH_FOR {
            return Ok(());
        }
        // As deadpool-redis does: UNWATCH in the same round trip, and a PING whose answer must
        // be this connection's.
        let n = self.ping.fetch_add(1, Ordering::Relaxed).to_string();
        let (answer,) = redis::Pipeline::with_capacity(2)
            .cmd("UNWATCH")
            .ignore()
            .cmd("PING")
            .arg(&n)
            .query_async::<(String,)>(conn)
            .await?;
        if answer == n {
            Ok(())
        } else {
            Err(RecycleError::message("wrong PING answer"))
        }
    }
}

/// Drops a connection whose command failed on the connection (I/O, dropped, timed out): the
/// pool opens a new one when it needs it.
fn discard(conn: Conn) {
    drop(managed::Object::take(conn));
}

impl TenantRedis {
    /// Sends `call` on one of the tenant's connections: the connection's and the time's
    /// failures, or Redis's answer (a server error included).
    pub(super) async fn query(
        &self,
        call: &redis::Cmd,
    ) -> Result<Result<Value, redis::RedisError>, HostError> {
        let waited = Instant::now();
        let conn = self.pool.get().await;
        self.metrics
            .pool_wait
            .with_label_values(&[&*self.metrics.tenant(&self.tenant), "redis"])
            .observe(waited.elapsed().as_secs_f64());
        let mut conn = conn.map_err(|e| self.pool_error(e))?;
        self.update_pool_gauges();
        let result =
            tokio::time::timeout(COMMAND_TIMEOUT, call.query_async::<Value>(&mut *conn)).await;
        let broken = match &result {
            Err(_) => true,
            Ok(Err(e)) => e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal(),
            Ok(Ok(_)) => false,
        };
        if broken {
            // Not handed out again: the pool skips its check on a connection used moments ago.
            discard(conn);
        } else {
            drop(conn);
        }
        self.update_pool_gauges();
        match result {
            Err(_) => Err(HostError::Timeout),
            Ok(Err(_)) if broken => Err(HostError::BackendUnavailable),
            Ok(r) => Ok(r),
        }
    }

    /// Opens the pool's first connection (back to the pool at once), so no request's deadline
    /// pays for it.
    pub async fn warm(&self) -> Result<(), HostError> {
        let conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        drop(conn);
        self.update_pool_gauges();
        Ok(())
    }

    fn pool_error(&self, e: PoolError) -> HostError {
        match e {
            PoolError::Timeout(TimeoutType::Wait) => {
                reject(
                    &self.metrics,
                    &self.tenant,
                    RedisQuotas::NAMES.max_connections.as_str(),
                );
                HostError::QuotaExceeded(format!(
                    "all {} Redis connections busy for {} ms",
                    self.pool.status().max_size,
                    self.wait.as_millis()
                ))
            }
            _ => HostError::BackendUnavailable,
        }
    }

    fn update_pool_gauges(&self) {
        let s = self.pool.status();
        let in_use = s.size.saturating_sub(s.available);
        let tenant = self.metrics.tenant(&self.tenant);
        self.metrics
            .pool_connections
            .with_label_values(&[&tenant, "redis", "in_use"])
            .set(in_use as i64);
        self.metrics
            .pool_connections
            .with_label_values(&[&tenant, "redis", "idle"])
            .set(s.available as i64);
    }
}
