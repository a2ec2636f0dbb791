//! Tenants, their hostnames, routes and quotas, and the store that holds them.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod error;
pub mod hostname;
pub mod model;
pub mod outbound;
pub mod proxy_config;
pub mod quotas;
pub mod route;
pub mod routing;
pub mod store;
pub mod target;

pub use error::{StoreError, ValidationError};
pub use model::{
    HealthCheck, HealthCheckKind, HostHeader, HostPattern, OnError, PluginAttachment,
    PluginVersion, Route, Tenant, Timeouts, TlsCertificate, UpstreamProtocol, UpstreamTarget,
    UpstreamTls, DEFAULT_RETRIES,
};
pub use quotas::{
    ConfigQuotas, HttpQuotas, LogQuotas, PluginQuotas, PoolQuotas, QuotaName, QuotaRow, Quotas,
    RateScope, RedisQuotas, RequestQuotas, SqlQuotas, StorageQuotas,
};
pub use store::{
    AcmeChallenge, AcmeHostname, AcmeState, ApiKeyInfo, AuditEntry, AuditRetention, ConfigDelta,
    ConfigSnapshot, NodeReport, Store,
};
#[cfg(feature = "test-util")]
pub mod test_support;
