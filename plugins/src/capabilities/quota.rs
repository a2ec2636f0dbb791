//! How capabilities hold tenants to their quotas: a throttle per tenant and backend for calls per
//! second (governor), the node's budget of memory for results in flight, rejections counted.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use wharf_metrics::Metrics;

use super::HostError;

pub(super) struct CallThrottle {
    limiter: DefaultDirectRateLimiter,
    per_second: u32,
    tenant: String,
    quota: &'static str,
    metrics: Arc<Metrics>,
}

impl CallThrottle {
    pub(super) fn per_second(
        n: u32,
        tenant: &str,
        quota: &'static str,
        metrics: Arc<Metrics>,
    ) -> CallThrottle {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        CallThrottle {
            limiter: RateLimiter::direct(Quota::per_second(n)),
            per_second: n.get(),
            tenant: tenant.to_string(),
            quota,
            metrics,
        }
    }

    pub(super) fn check(&self) -> Result<(), HostError> {
        self.limiter.check().map_err(|_| {
            refuse(
                &self.metrics,
                &self.tenant,
                self.quota,
                format!("{} of {} per second", self.quota, self.per_second),
            )
        })
    }
}

/// The node's memory for host-call results in flight, shared by all tenants: each call reserves
/// its tenant's result cap before it runs, and fails at once (`quota-exceeded`) when the node's
/// budget is taken, so many concurrent maximal results cannot add up past it.
#[derive(Clone)]
pub struct ResultBudget {
    kib: Arc<tokio::sync::Semaphore>,
    total_kib: u32,
    metrics: Arc<Metrics>,
}

impl ResultBudget {
    pub fn new(bytes: u64, metrics: Arc<Metrics>) -> ResultBudget {
        let total_kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX).max(1);
        ResultBudget {
            kib: Arc::new(tokio::sync::Semaphore::new(total_kib as usize)),
            total_kib,
            metrics,
        }
    }

    pub fn reserve(
        &self,
        tenant: &str,
        cap_bytes: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, HostError> {
        let kib = u32::try_from(cap_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        self.kib.clone().try_acquire_many_owned(kib).map_err(|_| {
            refuse(
                &self.metrics,
                tenant,
                "node_result_budget",
                "the node's memory for host-call results in flight is in use; retry".into(),
            )
        })
    }
}

/// Counts a quota rejection.
pub(super) fn reject(metrics: &Metrics, tenant: &str, quota: &str) {
    metrics
        .quota_rejections_total
        .with_label_values(&[&metrics.tenant(tenant), quota])
        .inc();
}

/// A call refused by `quota`, counted, saying `why`.
pub(super) fn refuse(metrics: &Metrics, tenant: &str, quota: &str, why: String) -> HostError {
    reject(metrics, tenant, quota);
    HostError::QuotaExceeded(why)
}
