//! A tenant's config quotas, checked inside the write's own transaction: what the change would
//! bring the tenant to is compared with its quota before anything is written, so no node ever
//! loads, compiles or probes config over it.

use sqlx::Row;

use super::{Store, Tx};
use crate::error::StoreError;
use crate::model::Route;
use crate::quotas::{ConfigQuotas, QuotaName, Quotas};
use crate::target::{TargetAddr, TargetHost, MAX_ADDRESSES_PER_NAME};

impl Store {
    /// The tenant's quotas as the transaction sees them (`UnknownTenant` if there is none).
    pub(super) async fn quotas_in(tx: &mut Tx, tenant: &str) -> Result<Quotas, StoreError> {
        let row = sqlx::query("SELECT quotas FROM tenants WHERE id = $1")
            .bind(tenant.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::UnknownTenant(tenant.to_string()))?;
        serde_json::from_str(&row.try_get::<String, _>(0)?)
            .map_err(|e| StoreError::Corrupt(format!("quotas of tenant {tenant}: {e}")))
    }

    /// Refuses one more row of a counted kind (`quota` names it) when the rows `count_sql`
    /// counts (bound: the tenant, then the name being written, which is not counted: a
    /// replacement adds nothing) already fill `limit`.
    pub(super) async fn check_count(
        tx: &mut Tx,
        count_sql: &'static str,
        tenant: &str,
        name: &str,
        (quota, limit): (QuotaName, u32),
    ) -> Result<(), StoreError> {
        let count: i64 = sqlx::query(count_sql)
            .bind(tenant.to_string())
            .bind(name.to_string())
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        within(quota, u64::from(limit), count.max(0) as u64 + 1)
    }
}

/// `route` replacing the one of its id among `others` (the tenant's routes now) stays within `q`.
pub(super) fn check_route(
    q: &ConfigQuotas,
    route: &Route,
    others: &[Route],
) -> Result<(), StoreError> {
    let others: Vec<&Route> = others.iter().filter(|r| r.id != route.id).collect();
    within(
        ConfigQuotas::NAMES.routes,
        q.routes.into(),
        others.len() as u64 + 1,
    )?;
    within(
        ConfigQuotas::NAMES.targets_per_route,
        q.targets_per_route.into(),
        route.upstreams.len() as u64,
    )?;
    for a in &route.plugins {
        let bytes: usize = a.config.iter().map(|(k, v)| k.len() + v.len()).sum();
        within(
            ConfigQuotas::NAMES.attachment_config_bytes,
            q.attachment_config_bytes,
            bytes as u64,
        )?;
    }
    if let Some(hc) = &route.health_check {
        if hc.interval_ms < q.health_check_min_interval_ms {
            return Err(StoreError::BelowQuota {
                quota: ConfigQuotas::NAMES.health_check_min_interval_ms.as_str(),
                floor: q.health_check_min_interval_ms,
                asked: hc.interval_ms,
            });
        }
    }
    let names = |r: &Route| -> Vec<String> {
        r.upstreams
            .iter()
            .filter_map(|u| match TargetAddr::parse(&u.addr).ok()?.host {
                TargetHost::Name(n) => Some(n),
                TargetHost::Ip(_) => None,
            })
            .collect()
    };
    let mut distinct: Vec<String> = names(route);
    distinct.extend(others.iter().flat_map(|r| names(r)));
    distinct.sort_unstable();
    distinct.dedup();
    within(
        ConfigQuotas::NAMES.upstream_names,
        q.upstream_names.into(),
        distinct.len() as u64,
    )?;
    // Each address a name resolves to is probed: a named target counts as its most.
    let probed = |r: &Route| -> f64 {
        let named = names(r).len();
        ((r.upstreams.len() - named) + named * MAX_ADDRESSES_PER_NAME) as f64
    };
    let probes = |r: &Route| match &r.health_check {
        Some(hc) => probed(r) * 1000.0 / hc.interval_ms.max(1) as f64,
        None => 0.0,
    };
    let per_second: f64 = probes(route) + others.iter().map(|r| probes(r)).sum::<f64>();
    within(
        ConfigQuotas::NAMES.health_checks_per_second,
        q.health_checks_per_second.into(),
        per_second.ceil() as u64,
    )?;
    let size = |r: &Route| serde_json::to_string(r).map_or(0, |s| s.len()) as u64;
    let bytes = size(route) + others.iter().map(|r| size(r)).sum::<u64>();
    within(ConfigQuotas::NAMES.config_bytes, q.config_bytes, bytes)
}

/// `wanted` of `quota` fits under `limit`.
pub(super) fn within(quota: QuotaName, limit: u64, wanted: u64) -> Result<(), StoreError> {
    if wanted > limit {
        return Err(StoreError::QuotaExceeded {
            quota: quota.as_str(),
            limit,
            wanted,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HealthCheck, PluginAttachment, UpstreamTarget};

    fn route(id: &str, targets: usize) -> Route {
        Route {
            id: id.into(),
            path_prefix: format!("/{id}"),
            methods: vec![],
            upstreams: (0..targets)
                .map(|i| UpstreamTarget {
                    addr: format!("10.0.0.{}:80", i % 250),
                    weight: 1,
                })
                .collect(),
            timeouts: Default::default(),
            health_check: None,
            plugins: vec![],
            upstream_protocol: Default::default(),
            retries: crate::model::DEFAULT_RETRIES,
            upstream_tls: Default::default(),
            host_header: Default::default(),
        }
    }

    fn quota_of(e: StoreError) -> &'static str {
        match e {
            StoreError::QuotaExceeded { quota, .. } | StoreError::BelowQuota { quota, .. } => quota,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn each_config_quota_refuses_by_name() {
        let q = ConfigQuotas {
            routes: 2,
            targets_per_route: 3,
            attachment_config_bytes: 10,
            config_bytes: 2_000,
            health_check_min_interval_ms: 1_000,
            health_checks_per_second: 4,
            ..ConfigQuotas::default()
        };
        let others = vec![route("a", 1), route("b", 1)];
        assert_eq!(
            quota_of(check_route(&q, &route("c", 1), &others).unwrap_err()),
            "max_routes"
        );
        check_route(&q, &route("b", 3), &others).expect("replacing a route adds none");
        assert_eq!(
            quota_of(check_route(&q, &route("b", 4), &others).unwrap_err()),
            "max_targets_per_route"
        );
        let mut r = route("b", 1);
        r.plugins.push(PluginAttachment {
            plugin: "p".into(),
            version: 1,
            config: [("key".to_string(), "12345678".to_string())].into(),
            on_error: Default::default(),
            allowed_outbound_hosts: Vec::new(),
            plugin_config: None,
            vm_config: None,
        });
        assert_eq!(
            quota_of(check_route(&q, &r, &others).unwrap_err()),
            "max_attachment_config_bytes"
        );
        let mut r = route("b", 3);
        r.health_check = Some(HealthCheck {
            kind: Default::default(),
            path: "/".into(),
            interval_ms: 500,
        });
        assert_eq!(
            quota_of(check_route(&q, &r, &others).unwrap_err()),
            "health_check_min_interval_ms"
        );
        r.health_check.as_mut().unwrap().interval_ms = 600_000;
        check_route(&q, &r, &others).expect("3 probes per 10 min");
        r.health_check.as_mut().unwrap().interval_ms = 1_000;
        r.upstreams.truncate(3);
        let mut hc_other = route("a", 2);
        hc_other.health_check = r.health_check.clone();
        assert_eq!(
            quota_of(check_route(&q, &r, &[hc_other, route("b", 1)]).unwrap_err()),
            "max_health_checks_per_second",
            "3 + 2 probes a second"
        );
        let mut big = route("b", 1);
        big.path_prefix = format!("/{}", "x".repeat(1_000));
        let mut other = route("a", 1);
        other.path_prefix = format!("/{}", "y".repeat(1_000));
        assert_eq!(
            quota_of(check_route(&q, &big, &[other]).unwrap_err()),
            "max_config_bytes"
        );
    }
}
