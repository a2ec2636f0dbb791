//! Rate limits per tenant and backend (governor), with rejections counted.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use wharf_metrics::Metrics;

use super::HostError;

pub struct Rate {
    limiter: DefaultDirectRateLimiter,
    per_second: u32,
    tenant: String,
    quota: &'static str,
    metrics: Arc<Metrics>,
}

impl Rate {
    pub fn per_second(n: u32, tenant: &str, quota: &'static str, metrics: Arc<Metrics>) -> Rate {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Rate {
            limiter: RateLimiter::direct(Quota::per_second(n)),
            per_second: n.get(),
            tenant: tenant.to_string(),
            quota,
            metrics,
        }
    }

    pub fn check(&self) -> Result<(), HostError> {
        self.limiter.check().map_err(|_| {
            reject(&self.metrics, &self.tenant, self.quota);
            HostError::QuotaExceeded(format!("{} of {} per second", self.quota, self.per_second))
        })
    }
}

/// Counts a quota rejection.
pub fn reject(metrics: &Metrics, tenant: &str, quota: &str) {
    metrics
        .quota_rejections_total
        .with_label_values(&[&metrics.tenant(tenant), quota])
        .inc();
}
