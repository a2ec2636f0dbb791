//! The Lua script every tenant Redis command runs inside (see [`SCRIPT`]), and which commands
//! grow, shrink or only read a tenant's data.

/// Commands that can grow a tenant's data: refused over its memory quota, and their growth
/// bounded before they run. Everything else that writes only shrinks (DEL, POP, REM, TRIM, …).
const GROWS: &[&str] = &[
    "SET",
    "SETNX",
    "SETEX",
    "PSETEX",
    "GETSET",
    "GETEX",
    "APPEND",
    "SETRANGE",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "DECR",
    "DECRBY",
    "MSET",
    "MSETNX",
    "RENAME",
    "RENAMENX",
    "HSET",
    "HSETNX",
    "HMSET",
    "HINCRBY",
    "HINCRBYFLOAT",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LSET",
    "SADD",
    "ZADD",
    "ZINCRBY",
];
const SHRINKS: &[&str] = &[
    "GETDEL",
    "DEL",
    "UNLINK",
    "HDEL",
    "LPOP",
    "RPOP",
    "LREM",
    "LTRIM",
    "SREM",
    "SPOP",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYRANK",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "PERSIST",
];

/// Every tenant command runs inside this script, on the Redis server, so that:
/// - a reply bigger than the tenant's cap is refused *in Redis*, never sent to the gateway;
/// - a command that can grow the tenant's data is refused when its usage (bytes, tracked in
///   Wharf's own key) is at the quota, or when its own growth (its arguments; for SETRANGE the
///   offset) would pass it;
/// - the memory a write changed (MEMORY USAGE of its keys, before and after) is added to the
///   usage.
///
/// - while the tenant's usage is being recounted (its marker key exists), growth is added to the
///   recount too, shrinkage not (`recount.rs`: a recount must never end below the truth).
///
/// KEYS: [usage key, recount marker, the command's keys…]; ARGV: [reply cap, memory quota, class,
/// command, args…].
pub(super) const SCRIPT: &str = SCRIPT_TEXT;

/// [`SCRIPT`]'s digest, for `EVALSHA`.
pub(super) static SCRIPT_SHA1: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| super::sha1_hex(SCRIPT_TEXT.as_bytes()));

// Written for Redis's time: every tenant command pays for this script, and Redis runs one script
// at a time for all tenants. So no table or closure is made on the common path (the command's
// own arguments are read from ARGV in place, and a number reply, e.g. INCR's, is returned
// without sizing it): ~1.5–3 µs less per call than a first version that copied the command
// into a table (docs/benchmarks.md, twenty-first session).
const SCRIPT_TEXT: &str = r#"
local class = ARGV[3]
local before = 0
if class ~= 'r' then
  if class == 'g' then
    local used = tonumber(redis.call('GET', KEYS[1]) or '0')
    local growth = 0
    for i = 5, #ARGV do growth = growth + #ARGV[i] end
    if ARGV[4] == 'SETRANGE' then growth = growth + (tonumber(ARGV[6]) or 0) end
    local quota = tonumber(ARGV[2])
    if used + growth > quota then
      return redis.error_reply('WHARF_QUOTA ' .. used .. ' bytes used, ' .. growth .. ' more asked, quota ' .. quota)
    end
  end
  for i = 3, #KEYS do before = before + (redis.call('MEMORY', 'USAGE', KEYS[i]) or 0) end
end
local reply = redis.call(unpack(ARGV, 4))
if class ~= 'r' then
  local delta = -before
  for i = 3, #KEYS do delta = delta + (redis.call('MEMORY', 'USAGE', KEYS[i]) or 0) end
  if delta ~= 0 then
    redis.call('INCRBY', KEYS[1], delta)
    if delta > 0 and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], delta) end
  end
end
-- A number is 8 bytes, under any reply cap (at least 1 KiB).
if type(reply) == 'number' then return reply end
local function size(v)
  local t = type(v)
  if t == 'string' then return #v end
  if t == 'table' then
    if v.ok then return #v.ok end
    if v.err then return #v.err end
    local n = 8
    for i = 1, #v do n = n + size(v[i]) end
    return n
  end
  return 8
end
local n = size(reply)
if n > tonumber(ARGV[1]) then return redis.error_reply('WHARF_TOO_LARGE ' .. n) end
return reply
"#;

/// The script's class of a command: `g` grows data (quota-checked), `s` shrinks it (usage
/// updated), `r` reads.
pub(super) fn class_of(command: &str) -> &'static str {
    if GROWS.contains(&command) {
        "g"
    } else if SHRINKS.contains(&command) {
        "s"
    } else {
        "r"
    }
}
