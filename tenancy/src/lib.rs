//! Tenants, their hostnames, routes and quotas, and the store that holds them.

pub mod error;
pub mod model;
pub mod quotas;
pub mod routing;
pub mod store;

pub use error::{StoreError, ValidationError};
pub use model::{
    HealthCheck, HealthCheckKind, HostPattern, OnError, PluginAttachment, PluginVersion, Route,
    Tenant, Timeouts, UpstreamTarget,
};
pub use quotas::{PluginQuotas, Quotas, RateScope, RedisQuotas, RequestQuotas, SqlQuotas};
pub use store::{ApiKeyInfo, AuditEntry, ConfigSnapshot, Store};
#[doc(hidden)]
pub mod test_support;
