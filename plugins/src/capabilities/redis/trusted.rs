//! The operator's trusted Lua scripts (`[redis] trusted_scripts`): the only scripts a tenant may
//! run with EVAL/EVALSHA. A script runs atomically on the Redis every tenant shares, and its
//! text decides which keys it touches, so no tenant may bring its own; an operator approves one
//! by its text (a file) or its SHA1 (its text is then taken from the first EVAL that matches).
//!
//! An approved script never runs as sent: it becomes the body of a function inside Wharf's
//! wrapper ([`wrap`]), which hands it the namespaced `KEYS` and the tenant's `ARGV`, and gives it
//! a `redis` whose `call`/`pcall` take only allow-listed commands on the keys it was given in
//! `KEYS` (so an `ARGV` naming a key, of this tenant or another, is refused), within a time
//! budget; the wrapper also keeps the tenant's memory quota and reply cap as for a plain command.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;

use sha1::{Digest, Sha1};

use super::{Keys, COMMANDS};
use crate::capabilities::HostError;

/// A trusted script as Redis runs it: the wrapper around its text, and the wrapper's SHA1 (for
/// EVALSHA).
pub(super) struct Wrapped {
    pub text: String,
    pub sha1: String,
}

/// The approved SHA1s, each with its wrapped text once known.
#[derive(Default)]
pub struct TrustedScripts {
    scripts: Mutex<HashMap<String, Option<Arc<Wrapped>>>>,
}

/// SHA1 of `bytes`, lower-case hex (as Redis names scripts).
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

fn is_sha1(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl TrustedScripts {
    /// Each entry is a 40-hex SHA1, or a file holding a script's exact text.
    pub fn load(entries: &[String]) -> Result<TrustedScripts, String> {
        let mut scripts = HashMap::new();
        for entry in entries {
            if is_sha1(entry) {
                scripts.entry(entry.to_ascii_lowercase()).or_insert(None);
                continue;
            }
            let text = std::fs::read(entry).map_err(|e| format!("{entry}: {e}"))?;
            let wrapped = wrap(&text).map_err(|e| format!("{entry}: {e}"))?;
            scripts.insert(sha1_hex(&text), Some(Arc::new(wrapped)));
        }
        Ok(TrustedScripts {
            scripts: Mutex::new(scripts),
        })
    }

    /// No script is trusted: EVAL and EVALSHA are refused whatever they carry.
    pub fn is_empty(&self) -> bool {
        self.scripts.lock().is_empty()
    }

    /// The wrapped script for the text a plugin sent with EVAL, if the operator approved it.
    pub(super) fn by_text(&self, text: &[u8]) -> Result<Arc<Wrapped>, HostError> {
        let sha = sha1_hex(text);
        let mut scripts = self.scripts.lock();
        match scripts.get_mut(&sha) {
            None => Err(not_trusted(&sha)),
            Some(Some(w)) => Ok(w.clone()),
            // Approved by SHA1: the text matched it, so it is the approved text.
            Some(slot @ None) => {
                let w = Arc::new(wrap(text).map_err(HostError::Invalid)?);
                *slot = Some(w.clone());
                Ok(w)
            }
        }
    }

    /// The wrapped script a plugin names with EVALSHA.
    pub(super) fn by_sha1(&self, sha: &[u8]) -> Result<Arc<Wrapped>, HostError> {
        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
        let scripts = self.scripts.lock();
        match scripts.get(&sha) {
            None => Err(not_trusted(&sha)),
            Some(Some(w)) => Ok(w.clone()),
            // Redis's answer for a script it has not seen: clients then send EVAL.
            Some(None) => Err(HostError::Invalid(
                "NOSCRIPT No matching script. Please use EVAL.".into(),
            )),
        }
    }
}

fn not_trusted(sha: &str) -> HostError {
    HostError::Denied(format!(
        "script {sha} is not one of the operator's trusted scripts ([redis] trusted_scripts)"
    ))
}

/// The wrapper's own names all start with `wharf_`, so that the script's text (whose globals
/// Redis refuses anyway) cannot mistake one for its own.
///
/// KEYS: [usage key, recount marker, the script's keys…]; ARGV: [reply cap, memory quota, time
/// budget (ms), the script's args…]. Usage and recount are kept as for a plain command
/// (`script.rs`).
const HEAD: &str = r#"
local wharf_cap, wharf_quota, wharf_budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wharf_usage, wharf_marker, wharf_keys, wharf_argv, wharf_given = KEYS[1], KEYS[2], {}, {}, {}
for i = 3, #KEYS do wharf_keys[#wharf_keys + 1] = KEYS[i]; wharf_given[KEYS[i]] = true end
for i = 4, #ARGV do wharf_argv[#wharf_argv + 1] = ARGV[i] end
local wharf_redis = redis
local function wharf_clock()
  local t = wharf_redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local wharf_started = wharf_clock()
local function wharf_fail(msg) error({err = msg}) end
local function wharf_check(args)
  local name = string.upper(tostring(args[1]))
  local kind = wharf_kinds[name]
  if not kind then wharf_fail('WHARF_DENIED command ' .. name .. ' is not available to scripts') end
  local function key(i)
    if not wharf_given[args[i + 1]] then
      wharf_fail('WHARF_KEY argument ' .. i .. ' of ' .. name .. " is not one of the script's KEYS")
    end
  end
  if kind == '1' then key(1)
  elseif kind == '2' then key(1); key(2)
  elseif kind == 'a' then for i = 1, #args - 1 do key(i) end
  elseif kind == 'm' then for i = 1, #args - 1, 2 do key(i) end end
  if wharf_clock() - wharf_started > wharf_budget then
    wharf_fail('WHARF_SLOW the script ran past its ' .. wharf_budget .. ' ms')
  end
end
local wharf_shim = setmetatable({
  call = function(...) wharf_check({...}); return wharf_redis.call(...) end,
  pcall = function(...) wharf_check({...}); return wharf_redis.pcall(...) end,
}, {__index = wharf_redis})
local function wharf_mem()
  local n = 0
  for _, k in ipairs(wharf_keys) do n = n + (wharf_redis.call('MEMORY', 'USAGE', k) or 0) end
  return n
end
local wharf_used = tonumber(wharf_redis.call('GET', wharf_usage) or '0')
local wharf_growth = 0
for _, a in ipairs(wharf_argv) do wharf_growth = wharf_growth + #a end
if wharf_used + wharf_growth > wharf_quota then
  return wharf_redis.error_reply('WHARF_QUOTA ' .. wharf_used .. ' bytes used, ' .. wharf_growth .. ' more asked, quota ' .. wharf_quota)
end
local wharf_before = wharf_mem()
local wharf_ok, wharf_reply = pcall(function(KEYS, ARGV, redis)
"#;

const TAIL: &str = r#"
end, wharf_keys, wharf_argv, wharf_shim)
local wharf_delta = wharf_mem() - wharf_before
if wharf_delta ~= 0 then wharf_redis.call('INCRBY', wharf_usage, wharf_delta) end
if wharf_delta > 0 and wharf_redis.call('EXISTS', wharf_marker) == 1 then wharf_redis.call('INCRBY', wharf_marker, wharf_delta) end
if not wharf_ok then
  if type(wharf_reply) == 'table' and wharf_reply.err then return wharf_reply end
  return wharf_redis.error_reply(tostring(wharf_reply))
end
local function wharf_size(v)
  local t = type(v)
  if t == 'string' then return #v end
  if t == 'table' then
    if v.ok then return #v.ok end
    if v.err then return #v.err end
    local n = 8
    for i = 1, #v do n = n + wharf_size(v[i]) end
    return n
  end
  return 8
end
local wharf_n = wharf_size(wharf_reply)
if wharf_n > wharf_cap then return wharf_redis.error_reply('WHARF_TOO_LARGE ' .. wharf_n) end
return wharf_reply
"#;

/// The script's text inside the wrapper.
fn wrap(text: &[u8]) -> Result<Wrapped, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the script is not UTF-8".to_string())?;
    if text.starts_with("#!") {
        // Redis 7's flags line must be the script's first: inside the wrapper it would not be.
        return Err("scripts with a #! line (Redis function flags) are not supported".into());
    }
    let mut kinds = String::from("local wharf_kinds = {");
    for (name, keys) in COMMANDS {
        let kind = match keys {
            Keys::None => "n",
            Keys::First => "1",
            Keys::FirstTwo => "2",
            Keys::All => "a",
            Keys::Alternate => "m",
        };
        let _ = write!(kinds, "{name}='{kind}',");
    }
    kinds.push('}');
    let full = format!("{kinds}{HEAD}{text}\n{TAIL}");
    Ok(Wrapped {
        sha1: sha1_hex(full.as_bytes()),
        text: full,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_approved_texts_and_sha1s_resolve() {
        let approved = b"return 1";
        let trusted = TrustedScripts::load(&[sha1_hex(approved)]).unwrap();
        assert!(matches!(
            trusted.by_sha1(sha1_hex(approved).as_bytes()),
            Err(HostError::Invalid(m)) if m.starts_with("NOSCRIPT")
        ));
        let w = trusted.by_text(approved).unwrap();
        assert!(w.text.contains("return 1") && w.text.contains("wharf_check"));
        assert_eq!(
            trusted.by_sha1(sha1_hex(approved).as_bytes()).unwrap().sha1,
            w.sha1
        );
        assert!(matches!(
            trusted.by_text(b"return 2"),
            Err(HostError::Denied(_))
        ));
        assert!(matches!(
            trusted.by_sha1(b"0000000000000000000000000000000000000000"),
            Err(HostError::Denied(_))
        ));
        assert!(TrustedScripts::load(&["/nonexistent/script.lua".into()]).is_err());
    }
}
