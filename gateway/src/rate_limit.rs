//! Per-tenant request rate limits (GCRA via governor), answered with 429 `rate_limited` and
//! `Retry-After`. A limiter survives config reloads while the tenant's rate and burst are
//! unchanged, so a reload never hands a tenant a fresh burst.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use wharf_tenancy::Quotas;

pub struct TenantRate {
    limiter: DefaultDirectRateLimiter,
    /// (requests per second, burst) this limiter enforces.
    pub setting: (u32, u32),
}

impl TenantRate {
    /// `None` when the tenant is unlimited.
    pub fn for_quotas(q: &Quotas) -> Option<TenantRate> {
        let rate = NonZeroU32::new(q.requests_per_second)?;
        let burst = NonZeroU32::new(q.burst.max(q.requests_per_second)).unwrap_or(rate);
        Some(TenantRate {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            setting: (q.requests_per_second, q.burst),
        })
    }

    /// `Err(wait)`: over the limit; retry after `wait`.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter.check().map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}
