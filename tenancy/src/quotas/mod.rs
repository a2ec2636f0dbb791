//! What a tenant may spend, one group per capability. Stored as one flat JSON object (the names
//! the API and the CLI use, e.g. `plugin_deadline_ms`), so adding a field needs no migration.
//! Each quota is declared once, on one line of its group below (`declare.rs` says what comes
//! from that line); docs/quotas.md is generated from the same lines.

pub(crate) mod declare;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use declare::{quota_group, quota_groups, unbounded, within};
pub use declare::{QuotaName, QuotaRow};

quota_groups! {
    /// Everything a tenant may spend, one group per capability or concern.
    pub struct Quotas {
        plugin: PluginQuotas,
        redis: RedisQuotas,
        sql: SqlQuotas,
        http: HttpQuotas,
        requests: RequestQuotas,
        config: ConfigQuotas,
        storage: StorageQuotas,
        pools: PoolQuotas,
        log: LogQuotas,
    }
}

quota_group! {
    /// What one tenant's plugins may spend per request.
    pub struct PluginQuotas / PluginQuotaNames {
        /// Fuel per request (all phases, one plugin): a deterministic CPU budget.
        fuel: u64 = 50_000_000, "plugin_fuel", within(1_000, 100_000_000_000);
        /// Time budget per request (all phases, one plugin): the plugin's own running and
        /// host-call time. Time spent waiting for the CPU behind other plugins, or between
        /// phases (the upstream), is not charged.
        deadline_ms: u64 = 100, "plugin_deadline_ms", within(1, 60_000);
        /// Memory (all linear memories and tables summed) per plugin instance.
        memory_bytes: u64 = 16 << 20, "plugin_memory_bytes", within(64 << 10, 4 << 30);
        /// Instance slots this tenant's plugins may hold at once, across its requests: one per
        /// instance, more for a component with many core instances, memories or tables (8, 2
        /// and 2 per slot, as the shared pool is sized).
        max_instances: u32 = 64, "plugin_max_instances", within(1, 100_000);
        /// Largest request body read for a plugin that asks for it (it imports
        /// `wharf:plugin/body`); a larger one is answered 413 before the plugin runs. The node's
        /// memory for bodies and host-call results in flight bounds all tenants together.
        body_max_bytes: u64 = 1 << 20, "plugin_body_max_bytes", within(0, 64 << 20);
        /// Largest plugin this tenant may upload.
        max_bytes: u64 = 32 << 20, "plugin_max_bytes", within(1 << 10, 1 << 30);
    }
}

quota_group! {
    /// What one tenant's plugins may spend of the fleet's Redis.
    pub struct RedisQuotas / RedisQuotaNames {
        /// Redis connections this tenant's plugins may hold at once. Its calls share one; more
        /// are held only while commands on a failed one finish.
        max_connections: u32 = 4, "redis_max_connections", within(1, 1000);
        /// Redis commands per second, all the tenant's plugins on one node.
        commands_per_second: u32 = 1000, "redis_commands_per_second", within(1, 1_000_000);
        /// Largest Redis reply handed to a plugin.
        max_reply_bytes: u64 = 1 << 20, "redis_max_reply_bytes", within(1 << 10, 64 << 20);
        /// Memory the tenant's Redis keys may use; over it, writes fail with `quota-exceeded`.
        /// Each write's change is counted as it runs; keys that expired are given back when the
        /// usage is recounted from the live keys, every 10 minutes.
        max_memory_bytes: u64 = 64 << 20, "redis_max_memory_bytes", within(64 << 10, 64 << 30);
    }
}

quota_group! {
    /// What one tenant's plugins may spend of the fleet's SQL server.
    pub struct SqlQuotas / SqlQuotaNames {
        /// SQL connections this tenant's plugins may hold at once (its pool size).
        max_connections: u32 = 4, "sql_max_connections", within(1, 1000);
        /// SQL statements per second, all the tenant's plugins on one node.
        queries_per_second: u32 = 500, "sql_queries_per_second", within(1, 1_000_000);
        /// How long one statement may run.
        statement_timeout_ms: u64 = 1000, "sql_statement_timeout_ms", within(1, 600_000);
        /// Rows one query may return.
        max_rows: u32 = 1000, "sql_max_rows", within(1, 1_000_000);
        /// Bytes one query's result may hold.
        max_result_bytes: u64 = 1 << 20, "sql_max_result_bytes", within(1 << 10, 64 << 20);
        /// Size of the tenant's SQL data (Postgres or MariaDB database, SQLite file); over it, writes
        /// fail with `quota-exceeded`.
        max_storage_bytes: u64 = 64 << 20, "sql_max_storage_bytes", within(64 << 10, 64 << 30);
    }
}

quota_group! {
    /// What one tenant's plugins may send and receive over outbound HTTP, on one node.
    pub struct HttpQuotas / HttpQuotaNames {
        /// Outbound requests in flight at once, all the tenant's plugins (each holds at most
        /// one connection while in flight).
        max_concurrent: u32 = 16, "http_max_concurrent_requests", within(1, 10_000);
        /// Outbound requests per second.
        requests_per_second: u32 = 100, "http_requests_per_second", within(1, 1_000_000);
        /// How long one outbound request may take, connect to last body byte; never longer
        /// than what the plugin's deadline has left.
        timeout_ms: u64 = 5_000, "http_timeout_ms", within(1, 600_000);
        /// Largest request body a plugin may send.
        max_request_bytes: u64 = 1 << 20, "http_max_request_bytes", within(0, 64 << 20);
        /// Largest response (headers and body) handed to a plugin; a longer one is cut off
        /// while it streams in and the call fails `quota-exceeded`.
        max_response_bytes: u64 = 1 << 20, "http_max_response_bytes", within(1 << 10, 64 << 20);
        /// Idle connections kept per destination for reuse.
        idle_connections_per_host: u32 = 4, "http_idle_connections_per_host", within(0, 1_000);
        /// Connections the tenant's plugins may hold open at once, in use and idle, all
        /// destinations together (a wildcard allow-list cannot make the node keep a connection
        /// per name); at the cap, a call that needs a new connection closes the one idle the
        /// longest, and fails `quota-exceeded` only when all are in use.
        max_connections: u32 = 32, "http_max_connections", within(1, 10_000);
    }
}

quota_group! {
    /// The tenant's request rate and concurrency through the gateway.
    pub struct RequestQuotas / RequestQuotaNames {
        /// Requests per second this tenant may send through the gateway (0: unlimited).
        requests_per_second: u32 = 0, "requests_per_second", within(0, 10_000_000);
        /// Requests that may arrive at once (the bucket size); 0 means one second's worth.
        burst: u32 = 0, "burst", within(0, 10_000_000);
        /// `local`: each node enforces the rate on its own; `fleet`: all nodes share it through
        /// Redis (falling back to the local limiter while Redis is unreachable).
        rate_limit_scope: RateScope = RateScope::Local, "rate_limit_scope", unbounded();
        /// Requests (HTTP/2 streams, open WebSockets) one node handles for this tenant at once:
        /// a slow upstream or long-lived streams cannot make a node hold unbounded connections,
        /// memory and descriptors for one tenant. Over it: 429 `too_many_in_flight`.
        max_in_flight: u32 = 1000, "max_requests_in_flight", within(1, 1_000_000);
    }
}

quota_group! {
    /// How much config a tenant may keep: every node holds all of it in memory and recompiles
    /// the tenant on each change, so each is refused at write time, before any node spends on
    /// it.
    pub struct ConfigQuotas / ConfigQuotaNames {
        /// Routes of the tenant.
        routes: u32 = 200, "max_routes", within(1, 100_000);
        /// Upstream targets of one route (each is a balancer entry and, checked, a probe).
        targets_per_route: u32 = 64, "max_targets_per_route", within(1, 10_000);
        /// Hostnames the tenant owns.
        hostnames: u32 = 50, "max_hostnames", within(1, 100_000);
        /// TLS certificates the tenant keeps.
        certificates: u32 = 50, "max_certificates", within(0, 100_000);
        /// Keys and values of one plugin attachment's config, summed.
        attachment_config_bytes: u64 = 16 << 10, "max_attachment_config_bytes", within(0, 1 << 20);
        /// All of the tenant's routes as stored (JSON), attachments included.
        config_bytes: u64 = 256 << 10, "max_config_bytes", within(4 << 10, 1 << 30);
        /// The shortest health-check interval a route may ask for.
        health_check_min_interval_ms: u64 = 1_000, "health_check_min_interval_ms", within(100, 3_600_000);
        /// Distinct upstream names across the tenant's routes: each is resolved by every node
        /// at least once a second (its TTL, clamped), on the fleet's resolver.
        upstream_names: u32 = 16, "max_upstream_names", within(0, 1_000);
        /// Health probes per second all the tenant's routes may cost each node (targets /
        /// interval; a named target counts as 16, the addresses it may resolve to).
        health_checks_per_second: u32 = 100, "max_health_checks_per_second", within(0, 1_000_000);
        /// ACME orders for the tenant's hostnames per hour, fleet-wide (first certificates,
        /// renewals and retries): the CA's rate limits are the fleet's, shared by all tenants.
        acme_orders_per_hour: u32 = 10, "acme_orders_per_hour", within(0, 1_000);
    }
}

quota_group! {
    /// What a tenant may keep in the shared store besides config.
    pub struct StorageQuotas / StorageQuotaNames {
        /// All stored versions of all the tenant's plugins, summed.
        plugin_bytes: u64 = 128 << 20, "plugin_storage_bytes", within(0, 1 << 40);
        /// Versions kept per plugin: on upload, the oldest versions no route uses beyond this
        /// many are removed (audited as `plugin.prune`).
        plugin_versions_kept: u32 = 10, "plugin_versions_kept", within(1, 10_000);
    }
}

quota_group! {
    /// What every pooled backend (Redis, SQL) shares.
    pub struct PoolQuotas / PoolQuotaNames {
        /// How long a host call waits for a free pooled SQL connection before `quota-exceeded`
        /// (Redis connections are shared, never waited for).
        wait_ms: u64 = 100, "pool_wait_ms", within(0, 60_000);
    }
}

quota_group! {
    /// How much a tenant's plugins may write to the operator's log.
    pub struct LogQuotas / LogQuotaNames {
        /// Log lines one plugin may write per request; the rest are dropped (and counted).
        lines_per_request: u32 = 32, "plugin_log_lines_per_request", within(0, 1_000);
        /// Longest log line; longer ones are cut.
        line_bytes: u32 = 1024, "plugin_log_line_bytes", within(64, 16 << 10);
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

impl declare::QuotaValue for RateScope {
    fn as_u64(&self) -> Option<u64> {
        None
    }
}

impl Quotas {
    /// The quota table as docs/quotas.md shows it.
    pub fn markdown() -> String {
        declare::markdown(&Quotas::table())
    }

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

    pub fn validate(&self) -> Result<(), ValidationError> {
        for (name, value, range) in self.bounds() {
            let (Some(value), Some((min, max))) = (value, range) else {
                continue;
            };
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

#[cfg(test)]
mod tests;
