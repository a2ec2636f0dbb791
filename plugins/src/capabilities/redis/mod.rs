//! A tenant's Redis: its own connection (shared by its calls, `connection.rs`), a command
//! allow-list with known key positions, and every key argument prefixed with the tenant's
//! namespace, so a plugin can reach only its tenant's keys. No allowed command returns key
//! names, so there is nothing to strip from replies.

mod host;
pub use host::{Redis, RedisSettings};
mod connection;
mod eval;
mod recount;
pub use recount::{done_key, marker_key, recount, Pace, Recounted};
mod reply;
mod script;
mod trusted;
pub use trusted::{sha1_hex, TrustedScripts};

use std::sync::Arc;
use std::time::Duration;

use connection::Connections;
use deadpool_redis::redis::{self, Value};
use wharf_metrics::Metrics;

use super::quota::{refuse, CallThrottle, ResultBudget};
use super::HostError;
pub use crate::bindings::wharf::plugin::redis::{RedisScalar, RedisValue};
use reply::convert;
use script::{class_of, SCRIPT, SCRIPT_SHA1};
use wharf_tenancy::{Quotas, RedisQuotas};

/// How a command's arguments hold keys.
#[derive(Clone, Copy)]
enum Keys {
    None,
    First,
    FirstTwo,
    All,
    /// key value key value … (MSET)
    Alternate,
}

/// The allow-list. EVAL and EVALSHA run only the operator's trusted scripts (`trusted.rs`).
/// Everything else is denied: KEYS, SCAN, EVAL_RO, FUNCTION, SCRIPT, SELECT, FLUSH*,
/// CONFIG, CLIENT, DEBUG, MONITOR, SUBSCRIBE, MIGRATE, MOVE, OBJECT, SORT, COPY, WAIT, …
const COMMANDS: &[(&str, Keys)] = &[
    ("PING", Keys::None),
    // strings and counters
    ("GET", Keys::First),
    ("SET", Keys::First),
    ("SETNX", Keys::First),
    ("SETEX", Keys::First),
    ("PSETEX", Keys::First),
    ("GETSET", Keys::First),
    ("GETDEL", Keys::First),
    ("GETEX", Keys::First),
    ("APPEND", Keys::First),
    ("STRLEN", Keys::First),
    ("GETRANGE", Keys::First),
    ("SETRANGE", Keys::First),
    ("INCR", Keys::First),
    ("INCRBY", Keys::First),
    ("INCRBYFLOAT", Keys::First),
    ("DECR", Keys::First),
    ("DECRBY", Keys::First),
    ("MGET", Keys::All),
    ("MSET", Keys::Alternate),
    ("MSETNX", Keys::Alternate),
    // keys and expiry
    ("DEL", Keys::All),
    ("UNLINK", Keys::All),
    ("EXISTS", Keys::All),
    ("TOUCH", Keys::All),
    ("TYPE", Keys::First),
    ("EXPIRE", Keys::First),
    ("PEXPIRE", Keys::First),
    ("EXPIREAT", Keys::First),
    ("PEXPIREAT", Keys::First),
    ("TTL", Keys::First),
    ("PTTL", Keys::First),
    ("PERSIST", Keys::First),
    ("RENAME", Keys::FirstTwo),
    ("RENAMENX", Keys::FirstTwo),
    // hashes
    ("HGET", Keys::First),
    ("HSET", Keys::First),
    ("HSETNX", Keys::First),
    ("HMGET", Keys::First),
    ("HMSET", Keys::First),
    ("HDEL", Keys::First),
    ("HEXISTS", Keys::First),
    ("HGETALL", Keys::First),
    ("HKEYS", Keys::First),
    ("HVALS", Keys::First),
    ("HLEN", Keys::First),
    ("HINCRBY", Keys::First),
    ("HINCRBYFLOAT", Keys::First),
    // lists
    ("LPUSH", Keys::First),
    ("RPUSH", Keys::First),
    ("LPUSHX", Keys::First),
    ("RPUSHX", Keys::First),
    ("LPOP", Keys::First),
    ("RPOP", Keys::First),
    ("LLEN", Keys::First),
    ("LRANGE", Keys::First),
    ("LINDEX", Keys::First),
    ("LSET", Keys::First),
    ("LREM", Keys::First),
    ("LTRIM", Keys::First),
    // sets
    ("SADD", Keys::First),
    ("SREM", Keys::First),
    ("SMEMBERS", Keys::First),
    ("SISMEMBER", Keys::First),
    ("SCARD", Keys::First),
    ("SPOP", Keys::First),
    ("SRANDMEMBER", Keys::First),
    ("SINTER", Keys::All),
    ("SUNION", Keys::All),
    ("SDIFF", Keys::All),
    // sorted sets
    ("ZADD", Keys::First),
    ("ZREM", Keys::First),
    ("ZSCORE", Keys::First),
    ("ZINCRBY", Keys::First),
    ("ZCARD", Keys::First),
    ("ZCOUNT", Keys::First),
    ("ZRANGE", Keys::First),
    ("ZRANGEBYSCORE", Keys::First),
    ("ZREVRANGE", Keys::First),
    ("ZRANK", Keys::First),
    ("ZREVRANK", Keys::First),
    ("ZREMRANGEBYSCORE", Keys::First),
    ("ZREMRANGEBYRANK", Keys::First),
];

const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_ARGS: usize = 1024;

pub struct TenantRedis {
    tenant: String,
    prefix: Vec<u8>,
    connections: Connections,
    rate: CallThrottle,
    max_reply: u64,
    max_memory: u64,
    /// Wharf's key counting the bytes this tenant's keys use.
    usage_key: String,
    /// Wharf's key holding the tenant's recount while one runs (`recount.rs`).
    marker_key: String,
    budget: ResultBudget,
    metrics: Arc<Metrics>,
    trusted: Arc<TrustedScripts>,
}

/// A tenant's key namespace. Tenants live under `wharf:t:`, Wharf's own keys under `wharf:sys:`:
/// no tenant id can name a key of Wharf's.
pub fn key_prefix(tenant: &str) -> String {
    format!("{TENANT_KEYS}{tenant}:")
}

/// Where every tenant's keys start.
const TENANT_KEYS: &str = "wharf:t:";

/// Wharf's own key `name` (e.g. the fleet rate limiter's state of a tenant).
pub fn system_key(name: &str) -> String {
    format!("wharf:sys:{name}")
}

/// Deletes every key of a tenant, and Wharf's keys about it, a batch at a time (SCAN, never
/// KEYS: Redis keeps serving everyone else meanwhile).
pub async fn purge(url: &str, tenant: &str) -> Result<(), HostError> {
    let mut conn = connect_own(url).await?;
    let pattern = format!("{}*", key_prefix(tenant));
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(backend)?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    redis::cmd("UNLINK")
        .arg(usage_key(tenant))
        .arg(marker_key(tenant))
        .arg(system_key(&format!("ratelimit:{tenant}")))
        .query_async::<i64>(&mut conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// A connection of Wharf's own, for work outside any tenant's calls (a purge, a recount).
async fn connect_own(url: &str) -> Result<redis::aio::MultiplexedConnection, HostError> {
    let client = redis::Client::open(url).map_err(backend)?;
    tokio::time::timeout(COMMAND_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| HostError::Timeout)?
        .map_err(|_| HostError::BackendUnavailable)
}

/// Redis's error, as the host reports it (operators' logs; never a client's answer).
fn backend(e: redis::RedisError) -> HostError {
    HostError::Backend(e.to_string())
}

/// Wharf's count of the bytes a tenant's keys use (see the script).
pub fn usage_key(tenant: &str) -> String {
    system_key(&format!("usage:{tenant}"))
}

/// Which arguments of a command are keys.
fn key_positions(keys: Keys, n: usize) -> Vec<usize> {
    match keys {
        Keys::None => vec![],
        Keys::First => vec![0],
        Keys::FirstTwo => vec![0, 1],
        Keys::All => (0..n).collect(),
        Keys::Alternate => (0..n).step_by(2).collect(),
    }
}

impl TenantRedis {
    pub fn new(
        tenant: &str,
        url: &str,
        q: &Quotas,
        metrics: Arc<Metrics>,
        budget: ResultBudget,
        trusted: Arc<TrustedScripts>,
    ) -> Result<TenantRedis, HostError> {
        let connections = Connections::new(url, tenant, q.redis.max_connections, &metrics)
            .map_err(|e| HostError::Backend(format!("Redis: {e}")))?;
        Ok(TenantRedis {
            tenant: tenant.to_string(),
            prefix: key_prefix(tenant).into_bytes(),
            connections,
            rate: CallThrottle::per_second(
                q.redis.commands_per_second,
                tenant,
                RedisQuotas::NAMES.commands_per_second.as_str(),
                metrics.clone(),
            ),
            max_reply: q.redis.max_reply_bytes,
            max_memory: q.redis.max_memory_bytes,
            usage_key: usage_key(tenant),
            marker_key: marker_key(tenant),
            budget,
            metrics,
            trusted,
        })
    }

    /// Runs one allow-listed command inside the tenant's namespace.
    pub async fn command(&self, name: &str, args: Vec<Vec<u8>>) -> Result<RedisValue, HostError> {
        let upper = name.to_ascii_uppercase();
        if upper == "EVAL" || upper == "EVALSHA" {
            return self.eval(&upper, args).await;
        }
        let keys = COMMANDS
            .iter()
            .find(|(c, _)| *c == upper)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                HostError::Denied(format!("command {upper:?} is not available to plugins"))
            })?;
        if args.len() > MAX_ARGS {
            return Err(HostError::Invalid(format!(
                "{} arguments, at most {MAX_ARGS}",
                args.len()
            )));
        }
        let positions = key_positions(keys, args.len());
        let args = self.namespace(&positions, args)?;
        let class = class_of(&upper);
        self.rate.check()?;
        let _reserved = self.budget.reserve(&self.tenant, self.max_reply)?;
        let call = |verb: &str, script: &str| {
            let mut call = redis::cmd(verb);
            call.arg(script)
                .arg(2 + positions.len())
                .arg(&self.usage_key)
                .arg(&self.marker_key);
            for &i in &positions {
                call.arg(&args[i][..]);
            }
            call.arg(self.max_reply)
                .arg(self.max_memory)
                .arg(class)
                .arg(&upper);
            for a in &args {
                call.arg(&a[..]);
            }
            call
        };
        let value = self
            .run_script(&SCRIPT_SHA1, SCRIPT, call)
            .await?
            .map_err(|e| self.script_error(e))?;
        convert(value)
    }

    /// Runs a script Wharf wraps commands in by its digest (`EVALSHA`: Redis neither receives
    /// nor hashes the text again), and by its text when Redis does not know it yet (first use,
    /// a restart, `SCRIPT FLUSH`). `call(verb, script)` builds the command.
    async fn run_script(
        &self,
        sha1: &str,
        text: &str,
        call: impl Fn(&str, &str) -> redis::Cmd,
    ) -> Result<Result<Value, redis::RedisError>, HostError> {
        let answer = self.query(&call("EVALSHA", sha1)).await?;
        if matches!(&answer, Err(e) if e.code() == Some("NOSCRIPT")) {
            return self.query(&call("EVAL", text)).await;
        }
        Ok(answer)
    }

    /// The script's own refusals are quotas; anything else is the command's error.
    fn script_error(&self, e: redis::RedisError) -> HostError {
        match e.code() {
            Some("WHARF_TOO_LARGE") => refuse(
                &self.metrics,
                &self.tenant,
                RedisQuotas::NAMES.max_reply_bytes.as_str(),
                format!(
                    "reply of {} bytes, the limit is {}",
                    e.detail().unwrap_or("?"),
                    self.max_reply
                ),
            ),
            Some("WHARF_QUOTA") => refuse(
                &self.metrics,
                &self.tenant,
                RedisQuotas::NAMES.max_memory_bytes.as_str(),
                format!("Redis memory quota: {}", e.detail().unwrap_or("")),
            ),
            _ => HostError::Backend(e.to_string()),
        }
    }

    fn namespace(
        &self,
        positions: &[usize],
        mut args: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, HostError> {
        for &i in positions {
            let Some(key) = args.get_mut(i) else {
                return Err(HostError::Invalid("missing key argument".into()));
            };
            let mut namespaced = self.prefix.clone();
            namespaced.extend_from_slice(key);
            *key = namespaced;
        }
        Ok(args)
    }
}
