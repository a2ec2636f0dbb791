//! EVAL and EVALSHA for a tenant: only the operator's trusted scripts ([`super::trusted`]),
//! their keys in the tenant's namespace exactly as a plain command's, their arguments bounded,
//! the run bounded in time inside Redis and counted as one command of the tenant's.

use deadpool_redis::redis;

use super::trusted::Wrapped;
use super::{convert, refuse, HostError, RedisQuotas, RedisScalar, RedisValue, TenantRedis};

/// Keys one script call may name.
pub(super) const MAX_SCRIPT_KEYS: usize = 16;
/// Arguments (ARGV) one script call may pass, and their bytes in all.
pub(super) const MAX_SCRIPT_ARGS: usize = 64;
pub(super) const MAX_SCRIPT_ARG_BYTES: usize = 16 * 1024;
/// How long a script may have run when it makes its next Redis call (checked at each call:
/// Redis runs one script at a time for everyone, so one tenant's is kept short).
pub(super) const SCRIPT_BUDGET_MS: u64 = 25;

impl TenantRedis {
    /// `EVAL script numkeys key… arg…` or `EVALSHA sha1 numkeys key… arg…`.
    pub(super) async fn eval(
        &self,
        command: &str,
        mut args: Vec<Vec<u8>>,
    ) -> Result<RedisValue, HostError> {
        if self.trusted.is_empty() {
            return Err(HostError::Denied(format!(
                "{command}: this node trusts no Lua scripts ([redis] trusted_scripts)"
            )));
        }
        if args.len() < 2 {
            return Err(HostError::Invalid(format!(
                "{command} needs a script and numkeys"
            )));
        }
        let rest = args.split_off(2);
        let numkeys: usize = std::str::from_utf8(&args[1])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| HostError::Invalid("numkeys is not a number".into()))?;
        if numkeys > MAX_SCRIPT_KEYS || numkeys > rest.len() {
            return Err(HostError::Invalid(format!(
                "numkeys {numkeys}: at most {MAX_SCRIPT_KEYS}, and no more than the arguments given"
            )));
        }
        let (keys, argv) = rest.split_at(numkeys);
        let bytes: usize = argv.iter().map(Vec::len).sum();
        if argv.len() > MAX_SCRIPT_ARGS || bytes > MAX_SCRIPT_ARG_BYTES {
            return Err(HostError::Invalid(format!(
                "{} script arguments of {bytes} bytes: at most {MAX_SCRIPT_ARGS} and {MAX_SCRIPT_ARG_BYTES} bytes",
                argv.len()
            )));
        }
        // Refused before Redis sees anything.
        let script = match command {
            "EVAL" => self.trusted.by_text(&args[0])?,
            _ => self.trusted.by_sha1(&args[0])?,
        };
        let positions: Vec<usize> = (0..keys.len()).collect();
        let keys = self.namespace(&positions, keys.to_vec())?;
        self.rate.check()?;
        let _reserved = self.budget.reserve(&self.tenant, self.max_reply)?;

        let call = |verb: &str, script: &str| {
            let mut call = redis::cmd(verb);
            call.arg(script)
                .arg(2 + keys.len())
                .arg(&self.usage_key)
                .arg(&self.marker_key);
            for k in &keys {
                call.arg(&k[..]);
            }
            call.arg(self.max_reply)
                .arg(self.max_memory)
                .arg(SCRIPT_BUDGET_MS);
            for a in argv {
                call.arg(&a[..]);
            }
            call
        };
        let answer = self.run_script(&script.sha1, &script.text, call).await?;
        let value = answer.map_err(|e| self.eval_error(&script, e))?;
        Ok(self.unprefix(convert(value)?))
    }

    /// The wrapper's refusals, then the plain command's.
    fn eval_error(&self, script: &Wrapped, e: redis::RedisError) -> HostError {
        // Redis adds where the error was raised (" script: …, on @user_script…"): not the
        // plugin's business.
        let detail = || {
            let d = e.detail().unwrap_or("");
            d.split(" script: ").next().unwrap_or(d).to_string()
        };
        match e.code() {
            Some("WHARF_KEY" | "WHARF_DENIED") => HostError::Denied(detail()),
            Some("WHARF_SLOW") => {
                tracing::warn!(tenant = %self.tenant, script = %script.sha1, "trusted script ran past its time budget");
                refuse(
                    &self.metrics,
                    &self.tenant,
                    RedisQuotas::NAMES.commands_per_second.as_str(),
                    detail(),
                )
            }
            _ => self.script_error(e),
        }
    }

    /// A script's reply may carry the keys it was given: the plugin sees them as it named them.
    fn unprefix(&self, value: RedisValue) -> RedisValue {
        let strip = |b: Vec<u8>| match b.strip_prefix(&self.prefix[..]) {
            Some(rest) => rest.to_vec(),
            None => b,
        };
        match value {
            RedisValue::Bulk(b) => RedisValue::Bulk(strip(b)),
            RedisValue::Array(items) => RedisValue::Array(
                items
                    .into_iter()
                    .map(|i| match i {
                        RedisScalar::Bulk(b) => RedisScalar::Bulk(strip(b)),
                        other => other,
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}
