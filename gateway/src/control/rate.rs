//! A tenant's local request-rate limiter (GCRA, governor), kept by the routing table across
//! reloads while its rate, burst and scope are unchanged, so a reload never hands out a fresh
//! burst. The proxy checks it (`proxy/rate_limit.rs`, which also keeps the fleet-wide one).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use wharf_tenancy::{Quotas, RateScope};

pub struct TenantRate {
    limiter: DefaultDirectRateLimiter,
    /// (requests per second, burst, scope) this limiter enforces.
    pub setting: (u32, u32, RateScope),
}

impl TenantRate {
    /// `None` when the tenant is unlimited.
    pub fn for_quotas(q: &Quotas) -> Option<TenantRate> {
        let rate = NonZeroU32::new(q.requests.requests_per_second)?;
        // The bucket size; 0 means one second's worth.
        let burst = NonZeroU32::new(q.requests.burst).unwrap_or(rate);
        Some(TenantRate {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            setting: (
                q.requests.requests_per_second,
                q.requests.burst,
                q.requests.rate_limit_scope,
            ),
        })
    }

    pub fn scope(&self) -> RateScope {
        self.setting.2
    }

    /// The local decision. `Err(wait)`: over the limit; retry after `wait`.
    pub fn check_local(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// (emission interval, burst tolerance) in milliseconds, for the fleet-wide GCRA.
    pub(crate) fn gcra_ms(&self) -> (f64, f64) {
        let (rate, burst, _) = self.setting;
        let emission = 1000.0 / f64::from(rate.max(1));
        let burst = if burst == 0 { rate } else { burst };
        (emission, emission * f64::from(burst.max(1)))
    }
}
