//! Fleet-wide usage for the console when the operator configures a Prometheus that scrapes every
//! node (`usage_prometheus_url`): the same per-minute shape as a node's own history
//! ([`crate::usage`]), from PromQL range queries over the last hour. Tenant ids are plain
//! `[a-z0-9-]` (validated at creation), so they go into the queries' label matchers as they are.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use wharf_tenancy::store::now_ms;

use crate::usage::{UsageHistoryBody, UsageMinute};

#[derive(Debug, thiserror::Error)]
pub enum FleetUsageError {
    #[error("Prometheus at {url} did not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus refused the query: {0}")]
    Query(String),
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

pub struct FleetUsage {
    url: String,
    client: reqwest::Client,
}

/// One query's answer: series key (from `by` labels) → minute start (s) → value.
type Range = BTreeMap<String, BTreeMap<i64, f64>>;

impl FleetUsage {
    pub fn new(url: &str) -> Self {
        FleetUsage {
            url: url.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    pub async fn history(&self, tenant: &str) -> Result<UsageHistoryBody, FleetUsageError> {
        let label = tenant;
        let end = now_ms() / 1000;
        let start = end - 3600;
        let t = format!("tenant=\"{label}\"");
        let q = |expr: String, by: &'static [&'static str]| self.range(expr, by, start, end);
        let (rps, codes, p50, p99, plugin, fuel, host, quota) = tokio::try_join!(
            q(format!("sum(rate(wharf_requests_total{{{t}}}[1m]))"), &[]),
            q(
                format!("sum by (code) (increase(wharf_requests_total{{{t}}}[1m]))"),
                &["code"]
            ),
            q(quantile(0.5, &t), &[]),
            q(quantile(0.99, &t), &[]),
            q(
                format!("sum by (outcome) (increase(wharf_plugin_invocations_total{{{t}}}[1m]))"),
                &["outcome"]
            ),
            q(
                format!("sum(increase(wharf_plugin_fuel_consumed_sum{{{t}}}[1m]))"),
                &[]
            ),
            q(
                format!("sum by (function, outcome) (increase(wharf_host_calls_total{{{t}}}[1m]))"),
                &["function", "outcome"]
            ),
            q(
                format!("sum by (quota) (increase(wharf_quota_rejections_total{{{t}}}[1m]))"),
                &["quota"]
            ),
        )?;
        let one = |r: &Range, at: i64| r.values().next().and_then(|m| m.get(&at)).copied();
        let by = |r: &Range, at: i64| -> BTreeMap<String, f64> {
            r.iter()
                .filter_map(|(k, m)| Some((k.clone(), *m.get(&at)?)))
                .filter(|(_, v)| *v > 0.0)
                .collect()
        };
        let minutes = (0..=60)
            .map(|i| start + i * 60)
            .map(|at| {
                let by_code = by(&codes, at);
                let requests: f64 = by_code.values().sum();
                let errors = crate::usage::server_errors(&by_code);
                UsageMinute {
                    start_ms: at * 1000,
                    seconds: 60.0,
                    requests,
                    requests_per_second: one(&rps, at).unwrap_or(0.0),
                    by_code,
                    error_rate: if requests > 0.0 {
                        errors / requests
                    } else {
                        0.0
                    },
                    p50_ms: one(&p50, at).map(|s| s * 1000.0),
                    p99_ms: one(&p99, at).map(|s| s * 1000.0),
                    plugin_calls: by(&plugin, at),
                    fuel: one(&fuel, at).unwrap_or(0.0),
                    host_calls: by(&host, at),
                    quota_rejections: by(&quota, at),
                }
            })
            .collect();
        Ok(UsageHistoryBody {
            tenant: tenant.to_string(),
            source: "prometheus".into(),
            minutes,
        })
    }

    async fn range(
        &self,
        expr: String,
        by: &[&str],
        start: i64,
        end: i64,
    ) -> Result<Range, FleetUsageError> {
        let unreachable = |e: reqwest::Error| FleetUsageError::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        };
        let answer: Answer = self
            .client
            .get(format!("{}/api/v1/query_range", self.url))
            .query(&[
                ("query", expr),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", "60".to_string()),
            ])
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        if answer.status != "success" {
            return Err(FleetUsageError::Query(answer.error.unwrap_or_default()));
        }
        let mut out = Range::new();
        for s in answer.data.map(|d| d.result).unwrap_or_default() {
            let key = by
                .iter()
                .map(|l| s.metric.get(*l).cloned().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ");
            let points = out.entry(key).or_default();
            for (at, v) in s.values {
                if let Ok(v) = v.parse::<f64>() {
                    if v.is_finite() {
                        points.insert(at as i64, v);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn quantile(q: f64, t: &str) -> String {
    format!(
        "histogram_quantile({q}, sum by (le) (rate(wharf_request_duration_seconds_bucket{{{t}}}[1m])))"
    )
}
