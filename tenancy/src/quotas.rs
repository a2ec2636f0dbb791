//! What a tenant may spend, one group per capability. Stored as one flat JSON object (the names
//! the API and the CLI use, e.g. `plugin_deadline_ms`), so adding a field needs no migration.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Quotas {
    #[serde(flatten)]
    pub plugin: PluginQuotas,
    #[serde(flatten)]
    pub redis: RedisQuotas,
    #[serde(flatten)]
    pub sql: SqlQuotas,
    #[serde(flatten)]
    pub requests: RequestQuotas,
    #[serde(flatten)]
    pub config: ConfigQuotas,
    #[serde(flatten)]
    pub storage: StorageQuotas,
    /// How long a host call waits for a free pooled connection (Redis or SQL) before
    /// `quota-exceeded`.
    pub pool_wait_ms: u64,
}

/// What one tenant's plugins may spend per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PluginQuotas {
    /// Fuel per request (all phases, one plugin): a deterministic CPU budget.
    #[serde(rename = "plugin_fuel")]
    pub fuel: u64,
    /// Time budget per request (all phases, one plugin): the plugin's own running and host-call
    /// time. Time spent waiting for the CPU behind other plugins, or between phases (the
    /// upstream), is not charged.
    #[serde(rename = "plugin_deadline_ms")]
    pub deadline_ms: u64,
    /// Memory (all linear memories and tables summed) per plugin instance.
    #[serde(rename = "plugin_memory_bytes")]
    pub memory_bytes: u64,
    /// Instance slots this tenant's plugins may hold at once, across its requests: one per
    /// instance, more for a component with many core instances, memories or tables (8, 2 and 2
    /// per slot, as the shared pool is sized).
    #[serde(rename = "plugin_max_instances")]
    pub max_instances: u32,
    /// Largest plugin this tenant may upload.
    #[serde(rename = "plugin_max_bytes")]
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RedisQuotas {
    /// Redis connections this tenant's plugins may hold at once (its pool size).
    #[serde(rename = "redis_max_connections")]
    pub max_connections: u32,
    #[serde(rename = "redis_commands_per_second")]
    pub commands_per_second: u32,
    /// Largest Redis reply handed to a plugin.
    #[serde(rename = "redis_max_reply_bytes")]
    pub max_reply_bytes: u64,
    /// Memory the tenant's Redis keys may use; over it, writes fail with `quota-exceeded`.
    #[serde(rename = "redis_max_memory_bytes")]
    pub max_memory_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct SqlQuotas {
    /// SQL connections this tenant's plugins may hold at once (its pool size).
    #[serde(rename = "sql_max_connections")]
    pub max_connections: u32,
    #[serde(rename = "sql_queries_per_second")]
    pub queries_per_second: u32,
    #[serde(rename = "sql_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    #[serde(rename = "sql_max_rows")]
    pub max_rows: u32,
    #[serde(rename = "sql_max_result_bytes")]
    pub max_result_bytes: u64,
    /// Size of the tenant's SQL data (Postgres database or SQLite file); over it, writes fail
    /// with `quota-exceeded`.
    #[serde(rename = "sql_max_storage_bytes")]
    pub max_storage_bytes: u64,
}

/// The tenant's request rate and concurrency through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RequestQuotas {
    /// Requests per second this tenant may send through the gateway (0: unlimited).
    pub requests_per_second: u32,
    /// Requests that may arrive at once (the bucket size); 0 means one second's worth.
    pub burst: u32,
    /// `local`: each node enforces the rate on its own; `fleet`: all nodes share it through Redis
    /// (falling back to the local limiter while Redis is unreachable).
    pub rate_limit_scope: RateScope,
    /// Requests (HTTP/2 streams, open WebSockets) one node handles for this tenant at once: a
    /// slow upstream or long-lived streams cannot make a node hold unbounded connections,
    /// memory and descriptors for one tenant. Over it: 429 `too_many_in_flight`.
    #[serde(rename = "max_requests_in_flight")]
    pub max_in_flight: u32,
}

impl Default for RequestQuotas {
    fn default() -> Self {
        RequestQuotas {
            requests_per_second: 0,
            burst: 0,
            rate_limit_scope: RateScope::Local,
            max_in_flight: 1000,
        }
    }
}

/// How much config a tenant may keep: every node holds all of it in memory and recompiles the
/// tenant on each change, so each is refused at write time, before any node spends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ConfigQuotas {
    #[serde(rename = "max_routes")]
    pub routes: u32,
    /// Upstream targets of one route (each is a balancer entry and, checked, a probe).
    #[serde(rename = "max_targets_per_route")]
    pub targets_per_route: u32,
    #[serde(rename = "max_hostnames")]
    pub hostnames: u32,
    #[serde(rename = "max_certificates")]
    pub certificates: u32,
    /// Keys and values of one plugin attachment's config, summed.
    #[serde(rename = "max_attachment_config_bytes")]
    pub attachment_config_bytes: u64,
    /// All of the tenant's routes as stored (JSON), attachments included.
    #[serde(rename = "max_config_bytes")]
    pub config_bytes: u64,
    /// The shortest health-check interval a route may ask for.
    #[serde(rename = "health_check_min_interval_ms")]
    pub health_check_min_interval_ms: u64,
    /// Health probes per second all the tenant's routes may cost each node (targets / interval).
    #[serde(rename = "max_health_checks_per_second")]
    pub health_checks_per_second: u32,
}

impl Default for ConfigQuotas {
    fn default() -> Self {
        ConfigQuotas {
            routes: 200,
            targets_per_route: 64,
            hostnames: 50,
            certificates: 50,
            attachment_config_bytes: 16 << 10,
            config_bytes: 256 << 10,
            health_check_min_interval_ms: 1_000,
            health_checks_per_second: 100,
        }
    }
}

/// What a tenant may keep in the shared store besides config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct StorageQuotas {
    /// All stored versions of all the tenant's plugins, summed.
    #[serde(rename = "plugin_storage_bytes")]
    pub plugin_bytes: u64,
    /// Versions kept per plugin: on upload, the oldest versions no route uses beyond this many
    /// are removed (audited as `plugin.prune`).
    #[serde(rename = "plugin_versions_kept")]
    pub plugin_versions_kept: u32,
}

impl Default for StorageQuotas {
    fn default() -> Self {
        StorageQuotas {
            plugin_bytes: 128 << 20,
            plugin_versions_kept: 10,
        }
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RateScope {
    #[default]
    Local,
    Fleet,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            plugin: PluginQuotas::default(),
            redis: RedisQuotas::default(),
            sql: SqlQuotas::default(),
            requests: RequestQuotas::default(),
            config: ConfigQuotas::default(),
            storage: StorageQuotas::default(),
            pool_wait_ms: 100,
        }
    }
}

impl Default for PluginQuotas {
    fn default() -> Self {
        PluginQuotas {
            fuel: 50_000_000,
            deadline_ms: 100,
            memory_bytes: 16 << 20,
            max_instances: 64,
            max_bytes: 32 << 20,
        }
    }
}

impl Default for RedisQuotas {
    fn default() -> Self {
        RedisQuotas {
            max_connections: 4,
            commands_per_second: 1000,
            max_reply_bytes: 1 << 20,
            max_memory_bytes: 64 << 20,
        }
    }
}

impl Default for SqlQuotas {
    fn default() -> Self {
        SqlQuotas {
            max_connections: 4,
            queries_per_second: 500,
            statement_timeout_ms: 1000,
            max_rows: 1000,
            max_result_bytes: 1 << 20,
            max_storage_bytes: 64 << 20,
        }
    }
}

impl Quotas {
    /// These quotas with `updates` (quota name → new value, the names the API shows) applied.
    /// Unknown names and values of the wrong type or range are refused; nothing is applied
    /// then. The API's PATCH and the CLI's `set-quota` both go through here.
    pub fn patched(&self, updates: &serde_json::Value) -> Result<Quotas, ValidationError> {
        let updates = updates
            .as_object()
            .ok_or(ValidationError::QuotaPatchNotAnObject)?;
        let mut fields =
            serde_json::to_value(self).map_err(|e| ValidationError::BadQuotaValue {
                name: "*".into(),
                reason: e.to_string(),
            })?;
        for (name, value) in updates {
            match fields.get_mut(name) {
                Some(slot) => *slot = value.clone(),
                None => {
                    let known = fields
                        .as_object()
                        .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default();
                    return Err(ValidationError::UnknownQuota {
                        name: name.clone(),
                        known,
                    });
                }
            }
        }
        let patched: Quotas =
            serde_json::from_value(fields).map_err(|e| ValidationError::BadQuotaValue {
                name: updates.keys().cloned().collect::<Vec<_>>().join(", "),
                reason: e.to_string(),
            })?;
        patched.validate()?;
        Ok(patched)
    }
}

/// One bound: the quota's name as stored, its value, and the range it must lie in.
type Bound = (&'static str, u64, u64, u64);

impl Quotas {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let (p, r, s, q) = (&self.plugin, &self.redis, &self.sql, &self.requests);
        let (c, st) = (&self.config, &self.storage);
        let bounds: [Bound; 29] = [
            ("plugin_fuel", p.fuel, 1_000, 100_000_000_000),
            ("plugin_deadline_ms", p.deadline_ms, 1, 60_000),
            ("plugin_memory_bytes", p.memory_bytes, 64 << 10, 4 << 30),
            ("plugin_max_instances", p.max_instances.into(), 1, 100_000),
            ("plugin_max_bytes", p.max_bytes, 1 << 10, 1 << 30),
            ("redis_max_connections", r.max_connections.into(), 1, 1000),
            (
                "redis_commands_per_second",
                r.commands_per_second.into(),
                1,
                1_000_000,
            ),
            (
                "redis_max_reply_bytes",
                r.max_reply_bytes,
                1 << 10,
                64 << 20,
            ),
            (
                "redis_max_memory_bytes",
                r.max_memory_bytes,
                64 << 10,
                64 << 30,
            ),
            ("sql_max_connections", s.max_connections.into(), 1, 1000),
            (
                "sql_queries_per_second",
                s.queries_per_second.into(),
                1,
                1_000_000,
            ),
            (
                "sql_statement_timeout_ms",
                s.statement_timeout_ms,
                1,
                600_000,
            ),
            ("sql_max_rows", s.max_rows.into(), 1, 1_000_000),
            (
                "sql_max_result_bytes",
                s.max_result_bytes,
                1 << 10,
                64 << 20,
            ),
            (
                "sql_max_storage_bytes",
                s.max_storage_bytes,
                64 << 10,
                64 << 30,
            ),
            ("pool_wait_ms", self.pool_wait_ms, 0, 60_000),
            (
                "requests_per_second",
                q.requests_per_second.into(),
                0,
                10_000_000,
            ),
            ("burst", q.burst.into(), 0, 10_000_000),
            (
                "max_requests_in_flight",
                q.max_in_flight.into(),
                1,
                1_000_000,
            ),
            ("max_routes", c.routes.into(), 1, 100_000),
            (
                "max_targets_per_route",
                c.targets_per_route.into(),
                1,
                10_000,
            ),
            ("max_hostnames", c.hostnames.into(), 1, 100_000),
            ("max_certificates", c.certificates.into(), 0, 100_000),
            (
                "max_attachment_config_bytes",
                c.attachment_config_bytes,
                0,
                1 << 20,
            ),
            ("max_config_bytes", c.config_bytes, 4 << 10, 1 << 30),
            (
                "health_check_min_interval_ms",
                c.health_check_min_interval_ms,
                100,
                3_600_000,
            ),
            (
                "max_health_checks_per_second",
                c.health_checks_per_second.into(),
                0,
                1_000_000,
            ),
            ("plugin_storage_bytes", st.plugin_bytes, 0, 1 << 40),
            (
                "plugin_versions_kept",
                st.plugin_versions_kept.into(),
                1,
                10_000,
            ),
        ];
        for (name, value, min, max) in bounds {
            if !(min..=max).contains(&value) {
                return Err(ValidationError::BadQuota {
                    name,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}
