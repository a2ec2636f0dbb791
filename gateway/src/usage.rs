//! A tenant's usage over the last hour, per minute, kept by the gateway itself so the console
//! works with no Prometheus running: once a minute the node snapshots its own counters (the same
//! registry as /metrics) per tenant; a minute's usage is the difference between two snapshots,
//! and the current minute's is "now" minus the last snapshot, so graphs move at once. Tenants
//! beyond the metrics' label cap share `_other`, as in /metrics. This node's view only.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;
use wharf_metrics::{MetricFamily, Metrics};
use wharf_tenancy::store::now_ms;

/// Minutes kept: an hour, plus the snapshot that starts it.
const KEPT: usize = 61;

/// One tenant's cumulative counters at an instant.
#[derive(Clone, Default)]
struct Counters {
    by_code: BTreeMap<String, f64>,
    /// Request latency histogram: (upper bound in seconds, cumulative count).
    latency: Vec<(f64, f64)>,
    plugin: BTreeMap<String, f64>,
    fuel: f64,
    host_calls: BTreeMap<String, f64>,
    quota_rejections: BTreeMap<String, f64>,
}

type Snapshot = HashMap<String, Counters>;

/// A tenant's counters on this node as `GET …/usage` shows them: counter (`requests`,
/// `plugin_invocations`, `host_calls`, `quota_rejections`) → breakdown (`route=api,code=200`) →
/// count.
pub type TenantCounters = BTreeMap<String, BTreeMap<String, u64>>;

/// The node's counters split by tenant at one instant, shared by every reader for
/// [`LIVE_MAX_AGE`]: a tenant's usage call then costs its own series, not a walk over every
/// tenant's (which each call used to make, 2-3 ms at 2,000 tenants).
struct Live {
    at_ms: i64,
    taken: Instant,
    snapshot: Arc<Snapshot>,
    counters: HashMap<String, TenantCounters>,
}

/// How stale a usage answer may be.
const LIVE_MAX_AGE: Duration = Duration::from_millis(250);

pub struct UsageHistory {
    metrics: Arc<Metrics>,
    /// (taken at ms, counters), oldest first.
    snapshots: Mutex<VecDeque<(i64, Arc<Snapshot>)>>,
    live: Mutex<Option<Arc<Live>>>,
}

/// What a tenant used in one minute (the last one: so far).
#[derive(Serialize, ToSchema)]
pub struct UsageMinute {
    pub start_ms: i64,
    pub seconds: f64,
    pub requests: f64,
    pub requests_per_second: f64,
    /// Answers by status code.
    pub by_code: BTreeMap<String, f64>,
    /// Share of answers with status 5xx.
    pub error_rate: f64,
    /// Latency percentiles (upper bound of the histogram bucket holding them), milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Plugin calls by outcome (ok, trap, timeout, …).
    pub plugin_calls: BTreeMap<String, f64>,
    pub fuel: f64,
    /// Host calls by "function outcome".
    pub host_calls: BTreeMap<String, f64>,
    /// Refusals by quota.
    pub quota_rejections: BTreeMap<String, f64>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageHistoryBody {
    pub tenant: String,
    /// Where the numbers come from: `this node`, or `prometheus` (the whole fleet).
    pub source: String,
    /// Oldest first; the last one is the current minute so far.
    pub minutes: Vec<UsageMinute>,
}

impl UsageHistory {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        let h = Arc::new(UsageHistory {
            metrics,
            snapshots: Mutex::new(VecDeque::new()),
            live: Mutex::new(None),
        });
        h.snapshot();
        h
    }

    /// Takes this minute's snapshot (the control plane calls it once a minute).
    pub fn snapshot(&self) {
        let snap = Arc::new(collect(&self.metrics.usage_families()));
        let mut s = self.snapshots.lock();
        s.push_back((now_ms(), snap));
        while s.len() > KEPT {
            s.pop_front();
        }
    }

    /// The tenant's minutes, oldest first, the current one last.
    pub fn history(&self, tenant: &str) -> UsageHistoryBody {
        let label = self.metrics.tenant_label_if_known(tenant);
        let live = self.live();
        let now = (live.at_ms, live.snapshot.clone());
        let snaps: Vec<(i64, Arc<Snapshot>)> = {
            let s = self.snapshots.lock();
            s.iter().cloned().chain(std::iter::once(now)).collect()
        };
        let empty = Counters::default();
        let minutes = snaps
            .windows(2)
            .map(|w| {
                let ((t0, a), (t1, b)) = (&w[0], &w[1]);
                let pick = |s: &Snapshot| {
                    label
                        .as_deref()
                        .and_then(|l| s.get(l))
                        .cloned()
                        .unwrap_or_else(|| empty.clone())
                };
                minute(*t0, *t1, &pick(a), &pick(b))
            })
            .collect();
        UsageHistoryBody {
            tenant: tenant.to_string(),
            source: "this node".into(),
            minutes,
        }
    }
}

impl UsageHistory {
    /// The tenant's counters on this node (series labelled with its id).
    pub fn counters(&self, tenant: &str) -> TenantCounters {
        self.live()
            .counters
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// The node's counters now, or at most [`LIVE_MAX_AGE`] ago.
    fn live(&self) -> Arc<Live> {
        let mut live = self.live.lock();
        if let Some(l) = live.as_ref().filter(|l| l.taken.elapsed() < LIVE_MAX_AGE) {
            return l.clone();
        }
        let families = self.metrics.usage_families();
        let fresh = Arc::new(Live {
            at_ms: now_ms(),
            taken: Instant::now(),
            snapshot: Arc::new(collect(&families)),
            counters: by_tenant(&families),
        });
        *live = Some(fresh.clone());
        fresh
    }
}

/// Each tenant's counters by breakdown, as `GET …/usage` shows them.
fn by_tenant(families: &[MetricFamily]) -> HashMap<String, TenantCounters> {
    let shown = [
        ("wharf_requests_total", "requests"),
        ("wharf_plugin_invocations_total", "plugin_invocations"),
        ("wharf_host_calls_total", "host_calls"),
        ("wharf_quota_rejections_total", "quota_rejections"),
    ];
    let mut out: HashMap<String, TenantCounters> = HashMap::new();
    for family in families {
        let Some((_, key)) = shown.iter().find(|(n, _)| *n == family.name()) else {
            continue;
        };
        for m in family.get_metric() {
            let labels = m.get_label();
            let Some(tenant) = labels.iter().find(|l| l.name() == "tenant") else {
                continue;
            };
            let breakdown: Vec<String> = labels
                .iter()
                .filter(|l| l.name() != "tenant")
                .map(|l| format!("{}={}", l.name(), l.value()))
                .collect();
            out.entry(tenant.value().to_string())
                .or_default()
                .entry(key.to_string())
                .or_default()
                .insert(breakdown.join(","), m.get_counter().get_value() as u64);
        }
    }
    out
}

/// Answers with a 5xx status among answers counted by status code.
pub(crate) fn server_errors(by_code: &BTreeMap<String, f64>) -> f64 {
    by_code
        .iter()
        .filter(|(c, _)| c.starts_with('5'))
        .map(|(_, n)| n)
        .sum()
}

fn minute(t0: i64, t1: i64, a: &Counters, b: &Counters) -> UsageMinute {
    let seconds = ((t1 - t0).max(1)) as f64 / 1000.0;
    let by_code = diff(&a.by_code, &b.by_code);
    let requests: f64 = by_code.values().sum();
    let errors = server_errors(&by_code);
    let latency: Vec<(f64, f64)> = b
        .latency
        .iter()
        .map(|(le, n)| {
            let before = a
                .latency
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, m)| *m);
            (*le, (n - before).max(0.0))
        })
        .collect();
    UsageMinute {
        start_ms: t0,
        seconds,
        requests,
        requests_per_second: requests / seconds,
        by_code,
        error_rate: if requests > 0.0 {
            errors / requests
        } else {
            0.0
        },
        p50_ms: quantile(&latency, 0.5),
        p99_ms: quantile(&latency, 0.99),
        plugin_calls: diff(&a.plugin, &b.plugin),
        fuel: (b.fuel - a.fuel).max(0.0),
        host_calls: diff(&a.host_calls, &b.host_calls),
        quota_rejections: diff(&a.quota_rejections, &b.quota_rejections),
    }
}

fn diff(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    b.iter()
        .map(|(k, v)| (k.clone(), (v - a.get(k).unwrap_or(&0.0)).max(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// The upper bound of the bucket holding quantile `q` of a cumulative histogram, in ms.
fn quantile(cumulative: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = cumulative.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let bound = cumulative.iter().find(|(_, n)| *n >= total * q)?.0;
    Some(if bound.is_finite() {
        bound * 1000.0
    } else {
        f64::INFINITY
    })
    .filter(|v| v.is_finite())
}

fn collect(families: &[MetricFamily]) -> Snapshot {
    let mut out: Snapshot = HashMap::new();
    for f in families {
        for m in f.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
            };
            let Some(tenant) = label("tenant") else {
                continue;
            };
            let c = out.entry(tenant).or_default();
            let counter = m.get_counter().get_value();
            let text = |n: &str| label(n).unwrap_or_default();
            match f.name() {
                "wharf_requests_total" => *c.by_code.entry(text("code")).or_default() += counter,
                "wharf_request_duration_seconds" => {
                    let h = m.get_histogram();
                    c.latency = h
                        .get_bucket()
                        .iter()
                        .map(|b| (b.upper_bound(), b.cumulative_count() as f64))
                        .collect();
                    c.latency.push((f64::INFINITY, h.get_sample_count() as f64));
                }
                "wharf_plugin_invocations_total" => {
                    *c.plugin.entry(text("outcome")).or_default() += counter
                }
                "wharf_plugin_fuel_consumed" => c.fuel += m.get_histogram().get_sample_sum(),
                "wharf_host_calls_total" => {
                    let key = format!("{} {}", text("function"), text("outcome"));
                    *c.host_calls.entry(key).or_default() += counter
                }
                "wharf_quota_rejections_total" => {
                    *c.quota_rejections.entry(text("quota")).or_default() += counter
                }
                _ => {}
            }
        }
    }
    out
}
