//! Per-tenant request rate limits, answered with 429 `rate_limited` and `Retry-After`.
//! `local`: GCRA per node (governor). `fleet`: the same GCRA kept in Redis by an atomic script, so
//! all nodes share one budget; while Redis is unreachable the local limiter decides, and
//! `wharf_rate_limit_fallback_total` counts it. A limiter survives config reloads while the
//! tenant's rate, burst and scope are unchanged, so a reload never hands out a fresh burst.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_redis::{Config, Pool, Runtime};
use tokio::sync::OnceCell;

use crate::control::rate::TenantRate;

/// GCRA in Redis: one key per tenant holding the theoretical arrival time (ms, Redis clock).
const GCRA: &str = r#"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_ms)
if tat < now_ms then tat = now_ms end
local new_tat = tat + emission
local allow_at = new_tat - tolerance
if allow_at > now_ms then
  return {0, math.ceil(allow_at - now_ms)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(tolerance + emission))
return {1, 0}
"#;

const FLEET_TIMEOUT: Duration = Duration::from_millis(50);

/// The gateway's own Redis connection for fleet-wide limits (not a tenant's namespace).
pub struct FleetLimiter {
    url: Option<String>,
    pool: OnceCell<Pool>,
    /// Whether the last decision came from Redis: failures are logged when this flips, not on
    /// every request (the fallback metric counts each one).
    reachable: AtomicBool,
}

impl FleetLimiter {
    pub fn new(url: Option<String>) -> FleetLimiter {
        FleetLimiter {
            url,
            pool: OnceCell::new(),
            reachable: AtomicBool::new(true),
        }
    }

    /// `Some(decision)` from Redis, or `None` when Redis cannot decide (down, slow, unset).
    pub async fn check(&self, tenant: &str, rate: &TenantRate) -> Option<Result<(), Duration>> {
        let url = self.url.as_deref()?;
        let decided = tokio::time::timeout(FLEET_TIMEOUT, self.ask(url, tenant, rate)).await;
        let outcome = match decided {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {FLEET_TIMEOUT:?}")),
        };
        let up = outcome.is_ok();
        if self.reachable.swap(up, Ordering::Relaxed) != up {
            match &outcome {
                Ok(_) => tracing::info!("fleet rate limiter: Redis answers again"),
                Err(e) => tracing::warn!(
                    "fleet rate limiter: Redis cannot decide, each node limits on its own: {e}"
                ),
            }
        }
        outcome.ok()
    }

    async fn ask(
        &self,
        url: &str,
        tenant: &str,
        rate: &TenantRate,
    ) -> Result<Result<(), Duration>, String> {
        // Built lazily so the pool's connections belong to the proxy's runtime; a failed build
        // is retried on the next request.
        let pool = self
            .pool
            .get_or_try_init(|| async {
                Config::from_url(url)
                    .builder()
                    .map_err(|e| e.to_string())?
                    .max_size(16)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .await?;
        let (emission, tolerance) = rate.gcra_ms();
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        let mut eval = deadpool_redis::redis::cmd("EVAL");
        eval.arg(GCRA)
            .arg(1)
            .arg(wharf_plugins::capabilities::redis::system_key(&format!(
                "ratelimit:{tenant}"
            )))
            .arg(emission)
            .arg(tolerance);
        let (allowed, wait_ms) = eval
            .query_async::<(i64, i64)>(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(if allowed == 1 {
            Ok(())
        } else {
            Err(Duration::from_millis(wait_ms.max(0) as u64))
        })
    }
}
