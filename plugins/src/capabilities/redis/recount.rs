//! Recounting what each tenant's keys use in Redis.
//!
//! The wrapper script adds each write's change in memory to the tenant's usage (`script.rs`).
//! A key that expires changes memory without a write, so its bytes stayed counted. A rate
//! limiter making one key per caller and window (`redis-rate-limit`: 72 bytes each) therefore
//! filled its tenant's quota with keys long gone: the default 64 MiB in about 15 hours at 1,000
//! callers a minute, after which every write of the tenant's plugins was refused.
//!
//! A recount walks the keyspace a batch at a time (`SCAN`: Redis keeps serving everyone
//! meanwhile), sums each tenant's live keys, and replaces the tenant's usage with the sum.
//! Writes go on during the walk. While a tenant's recount is open (its marker key exists) the
//! wrapper adds each write's growth to the recount as well, and leaves out its shrinkage. A key
//! the walk has not reached yet, deleted meanwhile, is then counted by neither; one it has
//! passed keeps its count until the next recount. So a recount never ends below what the
//! tenant's keys use. It may end above, by what changed during the walk, never the other way:
//! a quota is never loosened by a write racing the walk.
//!
//! One node walks at a time: a lock key, renewed with each batch. Every batch and the final
//! swap check that this walk still holds it, inside Redis, so a walk that stalled past its lock
//! can neither add to nor finish another's.

use std::time::Duration;

use deadpool_redis::redis::{self, aio::MultiplexedConnection};

use super::{backend, connect_own, system_key, usage_key, HostError, TENANT_KEYS};

/// How fast a walk goes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Keys one batch looks at (`SCAN … COUNT`).
    pub batch: u32,
    /// The pause between batches.
    pub pause: Duration,
    /// No walk when one ended less than this long ago, on any node: the fleet walks once per
    /// period, not once per node. Zero: walk whenever the lock is free.
    pub every: Duration,
}

impl Default for Pace {
    /// 200 keys a batch and 10 ms between batches. Redis runs a batch for no one else: 0.87 ms
    /// of its time (measured on 400,000 keys; 1.8 ms for 500 keys a batch), which is as long as
    /// another tenant's command may wait behind it. A walk takes about 7 % of Redis while it
    /// runs: 400,000 keys in 25 s.
    fn default() -> Self {
        Pace {
            batch: 200,
            pause: Duration::from_millis(10),
            every: Duration::ZERO,
        }
    }
}

/// How long the lock holds without a batch renewing it.
const LOCK_MS: u64 = 60_000;
/// How long a marker lives: a walk still running past it recounts nothing (its markers are
/// gone, so the swap leaves the usage as it was).
const MARKER_SECONDS: u64 = 3_600;

/// Wharf's key marking `tenant`'s recount open; it holds the recount so far.
pub fn marker_key(tenant: &str) -> String {
    system_key(&format!("recount:{tenant}"))
}

fn lock_key() -> String {
    system_key("recount-lock")
}

/// When the last walk ended (ms, Redis's clock): a node walks again once its [`Pace::every`] has
/// passed since.
pub fn done_key() -> String {
    system_key("recount-done")
}

/// What one walk did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recounted {
    /// Keys the walk looked at.
    pub keys: u64,
    /// Tenants whose usage was replaced.
    pub tenants: u64,
    /// Bytes the tenants' usage fell by, all together (negative: it rose).
    pub released: i64,
}

/// One batch: the tenants' keys among `COUNT` of the keyspace, summed per tenant into the open
/// markers. KEYS: [lock]; ARGV: [token, cursor, count, tenant prefix, marker prefix, lock ms].
const WALK: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('WHARF_LOCK lost') end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local r = redis.call('SCAN', ARGV[2], 'MATCH', ARGV[4] .. '*', 'COUNT', ARGV[3])
local sums = {}
local from = #ARGV[4] + 1
for _, k in ipairs(r[2]) do
  local t = string.match(string.sub(k, from), '^([^:]+):')
  if t then sums[t] = (sums[t] or 0) + (redis.call('MEMORY', 'USAGE', k) or 0) end
end
for t, n in pairs(sums) do
  local m = ARGV[5] .. t
  if redis.call('EXISTS', m) == 1 then redis.call('INCRBY', m, n) end
end
return {r[1], #r[2]}
"#;

/// The end of a tenant's recount: its usage becomes the recount, and the marker goes.
/// KEYS: [lock, marker, usage]; ARGV: [token]. Returns the usage's fall in bytes, or nil.
const SWAP: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('WHARF_LOCK lost') end
local counted = redis.call('GET', KEYS[2])
if not counted then return false end
local before = tonumber(redis.call('GET', KEYS[3]) or '0')
redis.call('SET', KEYS[3], counted)
redis.call('DEL', KEYS[2])
return before - tonumber(counted)
"#;

/// Takes the lock, unless a walk ended less than the caller's period ago (when it keeps one): in
/// one step, so no node starts a walk just after another ended one. Each node measures the last
/// walk's age against its own period, so a node whose period is shorter (a setting being rolled
/// out) is not held to another's. KEYS: [lock, done]; ARGV: [token, lock ms, period ms, 0: none].
/// Returns 1 when taken.
const LOCK: &str = r#"
local period = tonumber(ARGV[3])
if period > 0 then
  local ended = tonumber(redis.call('GET', KEYS[2]) or '')
  local t = redis.call('TIME')
  if ended and tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - ended < period then
    return 0
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"#;

/// Records when a walk ended (Redis's clock, ms), kept as long as the longest period a node may
/// have. KEYS: [done]; ARGV: [keep ms].
const DONE: &str = r#"
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 'PX', ARGV[1])
return 0
"#;

/// The longest `recount_every_seconds` a node may be configured with (a day).
pub(super) const EVERY_MAX_SECONDS: u64 = 86_400;

/// How long [`DONE`]'s record is kept: the longest period, so no node's period outlives it.
const DONE_KEEP_MS: u64 = EVERY_MAX_SECONDS * 1000;

/// Releases the lock if this walk still holds it. KEYS: [lock]; ARGV: [token].
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Recounts `tenants`' usage. `None` when another node's walk holds the lock, or one ended
/// less than [`Pace::every`] ago.
pub async fn recount(
    url: &str,
    tenants: &[String],
    pace: Pace,
) -> Result<Option<Recounted>, HostError> {
    let mut conn = connect_own(url).await?;
    // A walk's own name for the lock: distinct per walk, so one never releases another's.
    let token = format!("{:016x}", rand::random::<u64>());
    let locked: bool = eval(LOCK, &[lock_key(), done_key()])
        .arg(&token)
        .arg(LOCK_MS)
        .arg(u64::try_from(pace.every.as_millis()).unwrap_or(u64::MAX))
        .query_async(&mut conn)
        .await
        .map_err(backend)?;
    if !locked {
        return Ok(None);
    }
    let walked = walk(&mut conn, &token, tenants, pace).await;
    if walked.is_ok() && !pace.every.is_zero() {
        let _ = eval(DONE, &[done_key()])
            .arg(DONE_KEEP_MS)
            .query_async::<i64>(&mut conn)
            .await;
    }
    let _ = eval(UNLOCK, &[lock_key()])
        .arg(&token)
        .query_async::<i64>(&mut conn)
        .await;
    walked.map(Some)
}

async fn walk(
    conn: &mut MultiplexedConnection,
    token: &str,
    tenants: &[String],
    pace: Pace,
) -> Result<Recounted, HostError> {
    // Markers first, for the tenants that have a usage: from here on the wrapper adds their
    // growth to them.
    let mut open = Vec::new();
    for chunk in tenants.chunks(1000) {
        let mut pipe = redis::pipe();
        for t in chunk {
            pipe.cmd("EXISTS").arg(usage_key(t));
        }
        let exists: Vec<bool> = pipe.query_async(conn).await.map_err(backend)?;
        let mut pipe = redis::pipe();
        for (t, _) in chunk.iter().zip(exists).filter(|(_, e)| *e) {
            pipe.cmd("SET")
                .arg(marker_key(t))
                .arg(0)
                .arg("EX")
                .arg(MARKER_SECONDS)
                .ignore();
            open.push(t);
        }
        pipe.query_async::<()>(conn).await.map_err(backend)?;
    }
    let marker_prefix = marker_key("");
    let mut done = Recounted::default();
    let mut cursor = String::from("0");
    loop {
        let (next, seen): (String, u64) = eval(WALK, &[lock_key()])
            .arg(token)
            .arg(&cursor)
            .arg(pace.batch)
            .arg(TENANT_KEYS)
            .arg(&marker_prefix)
            .arg(LOCK_MS)
            .query_async(conn)
            .await
            .map_err(backend)?;
        done.keys += seen;
        if next == "0" {
            break;
        }
        cursor = next;
        tokio::time::sleep(pace.pause).await;
    }
    for t in open {
        let released: Option<i64> = eval(SWAP, &[lock_key(), marker_key(t), usage_key(t)])
            .arg(token)
            .query_async(conn)
            .await
            .map_err(backend)?;
        if let Some(n) = released {
            done.tenants += 1;
            done.released += n;
        }
    }
    Ok(done)
}

/// `EVAL script numkeys keys…`, for the caller's ARGV. A walk sends a few scripts a few times:
/// their text is sent each time, no digest kept.
fn eval(script: &str, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len()).arg(keys);
    cmd
}
