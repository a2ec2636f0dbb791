//! What one caller may make a node spend through the admin API, capped before the store is
//! asked anything. A tenant's key gets a budget of calls and a smaller one of writes (each write
//! makes every node in the fleet reload that tenant); a client address gets a budget of failed
//! authentications (each otherwise costs a store query). Over budget: 429 with `Retry-After`.
//! The operator is not limited. Budgets are per node.

use serde::Deserialize;

use crate::throttle::Throttle;

/// The `[admin]` table of the bootstrap file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminLimits {
    /// Calls per second one tenant API key may make, and how many at once.
    pub tenant_calls_per_second: u32,
    pub tenant_calls_burst: u32,
    /// Of those, writes (anything but GET and HEAD).
    pub tenant_writes_per_second: u32,
    pub tenant_writes_burst: u32,
    /// Failed authentications per second from one client address, and how many at once.
    pub failed_auth_per_second: u32,
    pub failed_auth_burst: u32,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            tenant_calls_per_second: 50,
            tenant_calls_burst: 100,
            tenant_writes_per_second: 10,
            tenant_writes_burst: 50,
            failed_auth_per_second: 5,
            failed_auth_burst: 20,
        }
    }
}

/// The admin API's throttles, built from the bootstrap file.
pub struct AdminThrottles {
    pub calls: Throttle,
    pub writes: Throttle,
    pub failed_auth: Throttle,
}

impl AdminThrottles {
    pub fn new(l: &AdminLimits) -> AdminThrottles {
        AdminThrottles {
            calls: Throttle::new(l.tenant_calls_per_second, l.tenant_calls_burst),
            writes: Throttle::new(l.tenant_writes_per_second, l.tenant_writes_burst),
            failed_auth: Throttle::new(l.failed_auth_per_second, l.failed_auth_burst),
        }
    }
}

impl Default for AdminThrottles {
    fn default() -> Self {
        AdminThrottles::new(&AdminLimits::default())
    }
}
