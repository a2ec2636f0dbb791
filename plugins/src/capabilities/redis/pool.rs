//! A tenant's Redis connections: a pool of multiplexed connections that checks a connection
//! with a round trip only when it may have gone stale.
//!
//! deadpool-redis's own manager sends `UNWATCH` + `PING` each time a connection is taken from
//! the pool: a second round trip, and a second wake-up of Redis and of the gateway, for every
//! command a plugin makes (measured: one `INCR` from a plugin cost Redis 46–53 µs of CPU, see
//! docs/benchmarks.md). A connection used within [`FRESH_FOR`] is handed out as it is; one
//! idle longer (Redis may have restarted or closed it meanwhile) is pinged first, as before. A
//! connection whose command failed on the connection itself is never handed out again
//! ([`discard`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_redis::redis::{self, aio::MultiplexedConnection, RedisError};

pub(super) use deadpool::managed::TimeoutType;
pub(super) use deadpool::{managed::Timeouts, Runtime};

pub(super) type Pool = managed::Pool<Manager>;
pub(super) type Conn = managed::Object<Manager>;
pub(super) type PoolError = managed::PoolError<RedisError>;

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
pub(super) fn discard(conn: Conn) {
    drop(managed::Object::take(conn));
}
