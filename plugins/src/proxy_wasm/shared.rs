//! What proxy-wasm modules share beyond one request: shared data (a key-value map with
//! compare-and-swap, `proxy_get_shared_data` / `proxy_set_shared_data`), shared queues
//! (`queues.rs`) and metrics (`proxy_define_metric` and friends). Both are **per tenant**: every VM of a tenant on this
//! node sees the same map and metrics, no other tenant's VM ever does (Envoy shares them per VM
//! id; Wharf's isolation unit is the tenant). Both are bounded, so a module cannot make the node
//! hold more than [`MAX_KEYS`] keys / [`MAX_BYTES`] bytes or [`MAX_METRICS`] metric series for
//! its tenant.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::{Caller, Linker};
use wharf_metrics::Metrics;

use super::abi::Status;
use super::env::{code, ProxyHost};
use super::memory;

pub(super) mod queues;

/// Keys one tenant's shared data may hold on a node (a queue and each item queued take one too).
pub const MAX_KEYS: usize = 1024;
/// Bytes (keys and values) one tenant's shared data may hold on a node.
pub const MAX_BYTES: usize = 1 << 20;
/// Metrics one tenant's modules may define on a node.
pub const MAX_METRICS: usize = 64;

/// One tenant's shared state on this node.
pub struct TenantShared {
    tenant: Arc<str>,
    data: Mutex<Data>,
    metrics: Mutex<Vec<Metric>>,
    prometheus: Arc<Metrics>,
}

#[derive(Default)]
struct Data {
    entries: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    /// Keys and values, queue names and items.
    bytes: usize,
    queues: Vec<queues::Queue>,
    /// Queues and items queued: slots taken besides the entries.
    queued: usize,
}

struct Metric {
    name: String,
    kind: MetricKind,
    value: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    fn label(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

impl TenantShared {
    pub fn new(tenant: Arc<str>, prometheus: Arc<Metrics>) -> TenantShared {
        TenantShared {
            tenant,
            data: Mutex::new(Data::default()),
            metrics: Mutex::new(Vec::new()),
            prometheus,
        }
    }

    /// A value and its CAS stamp.
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.data.lock().entries.get(key).cloned()
    }

    /// Sets `key` when `cas` is 0 or the current stamp; within the tenant's bounds.
    pub fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<(), Status> {
        let mut data = self.data.lock();
        let old = data.entries.get(key).map(|(v, stamp)| (v.len(), *stamp));
        if let (Some((_, stamp)), true) = (old, cas != 0) {
            if stamp != cas {
                return Err(Status::CasMismatch);
            }
        }
        let freed = old.map_or(0, |(len, _)| len + key.len());
        let bytes = data.bytes - freed + key.len() + value.len();
        if bytes > MAX_BYTES || (old.is_none() && data.entries.len() + data.queued >= MAX_KEYS) {
            return Err(Status::BadArgument);
        }
        let stamp = old.map_or(1, |(_, s)| s.wrapping_add(1).max(1));
        data.entries.insert(key.to_vec(), (value.to_vec(), stamp));
        data.bytes = bytes;
        Ok(())
    }

    /// A metric's id (its index + 1): the same name and kind give the same id.
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut metrics = self.metrics.lock();
        if let Some(i) = metrics
            .iter()
            .position(|m| m.name == name && m.kind == kind)
        {
            return Some(i as u32 + 1);
        }
        // Envoy-style names carry their tags (Higress: 130+ bytes).
        if metrics.len() >= MAX_METRICS || name.is_empty() || name.len() > 512 {
            return None;
        }
        metrics.push(Metric {
            name: name.to_string(),
            kind,
            value: 0,
        });
        Some(metrics.len() as u32)
    }

    /// Applies `change` to metric `id` and exports its new value under the tenant's label.
    fn update(&self, id: u32, change: impl FnOnce(MetricKind, i64) -> i64) -> Result<(), Status> {
        let mut metrics = self.metrics.lock();
        let m = metrics
            .get_mut((id as usize).wrapping_sub(1))
            .ok_or(Status::NotFound)?;
        m.value = change(m.kind, m.value);
        let tenant = self.prometheus.tenant(&self.tenant);
        self.prometheus
            .plugin_module_metric
            .with_label_values(&[&*tenant, m.name.as_str(), m.kind.label()])
            .set(m.value);
        Ok(())
    }

    fn value(&self, id: u32) -> Option<i64> {
        let metrics = self.metrics.lock();
        metrics.get((id as usize).wrapping_sub(1)).map(|m| m.value)
    }
}

/// Links shared data, queues and metrics.
pub(super) fn link<T: ProxyHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    const M: &str = "env";
    queues::link(linker)?;
    linker.func_wrap_async(
        M,
        "proxy_get_shared_data",
        |mut c: Caller<'_, T>, (kp, ks, rp, rs, cas_ptr): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let key = match memory::read(&mut c, kp, ks) {
                    Ok(k) => k,
                    Err(s) => return Ok(s as i32),
                };
                let Some(shared) = c.data_mut().context().shared.clone() else {
                    return Ok(Status::Unimplemented as i32);
                };
                let Some((value, cas)) = shared.get(&key) else {
                    return Ok(Status::NotFound as i32);
                };
                if let Err(s) = memory::write_u32(&mut c, cas_ptr, cas) {
                    return Ok(s as i32);
                }
                Ok(code(memory::give(&mut c, &value, rp, rs).await?))
            })
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_shared_data",
        |mut c: Caller<'_, T>, kp: i32, ks: i32, vp: i32, vs: i32, cas: i32| {
            let (key, value) = match (memory::read(&mut c, kp, ks), memory::read(&mut c, vp, vs)) {
                (Ok(k), Ok(v)) => (k, v),
                (Err(s), _) | (_, Err(s)) => return s as i32,
            };
            let Some(shared) = c.data_mut().context().shared.clone() else {
                return Status::Unimplemented as i32;
            };
            code(shared.set(&key, &value, cas as u32))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_define_metric",
        |mut c: Caller<'_, T>, kind: i32, np: i32, ns: i32, id_ptr: i32| {
            let kind = match kind {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return Status::BadArgument as i32,
            };
            let name = match memory::read(&mut c, np, ns) {
                Ok(n) => String::from_utf8_lossy(&n).into_owned(),
                Err(s) => return s as i32,
            };
            let Some(shared) = c.data_mut().context().shared.clone() else {
                return Status::Unimplemented as i32;
            };
            match shared.define(kind, &name) {
                Some(id) => code(memory::write_u32(&mut c, id_ptr, id)),
                None => Status::BadArgument as i32,
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_increment_metric",
        |mut c: Caller<'_, T>, id: i32, by: i64| {
            let Some(shared) = c.data_mut().context().shared.clone() else {
                return Status::Unimplemented as i32;
            };
            code(shared.update(id as u32, |kind, v| match kind {
                // A counter only goes up.
                MetricKind::Counter => v.saturating_add(by.max(0)),
                _ => v.saturating_add(by),
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_record_metric",
        |mut c: Caller<'_, T>, id: i32, value: i64| {
            let Some(shared) = c.data_mut().context().shared.clone() else {
                return Status::Unimplemented as i32;
            };
            // Gauges and histograms keep the last value recorded (histograms are not bucketed).
            code(shared.update(id as u32, |kind, v| match kind {
                MetricKind::Counter => v.max(value),
                _ => value,
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_metric",
        |mut c: Caller<'_, T>, id: i32, ret: i32| {
            let Some(shared) = c.data_mut().context().shared.clone() else {
                return Status::Unimplemented as i32;
            };
            match shared.value(id as u32) {
                Some(v) => code(memory::write(&mut c, ret, &v.to_le_bytes())),
                None => Status::NotFound as i32,
            }
        },
    )?;
    Ok(())
}

/// The served names (for `env::stub_remaining`).
pub const SERVED: &[&str] = &[
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> TenantShared {
        TenantShared::new("t".into(), Arc::new(Metrics::new()))
    }

    #[test]
    fn cas_protects_updates_and_bounds_hold() {
        let s = shared();
        assert_eq!(s.get(b"k"), None);
        s.set(b"k", b"1", 0).unwrap();
        let (v, cas) = s.get(b"k").unwrap();
        assert_eq!(v, b"1");
        s.set(b"k", b"2", cas).unwrap();
        assert_eq!(
            s.set(b"k", b"3", cas),
            Err(Status::CasMismatch),
            "a stale stamp"
        );
        for i in 0..MAX_KEYS - 1 {
            s.set(format!("k{i}").as_bytes(), b"v", 0).unwrap();
        }
        assert_eq!(s.set(b"one-more", b"v", 0), Err(Status::BadArgument));
        let big = vec![0u8; MAX_BYTES];
        assert_eq!(s.set(b"k", &big, 0), Err(Status::BadArgument));
    }

    #[test]
    fn metrics_are_bounded_and_counters_only_grow() {
        let s = shared();
        let id = s.define(MetricKind::Counter, "hits").unwrap();
        assert_eq!(s.define(MetricKind::Counter, "hits"), Some(id));
        s.update(id, |_, v| v + 2).unwrap();
        assert_eq!(s.value(id), Some(2));
        for i in 1..MAX_METRICS {
            s.define(MetricKind::Gauge, &format!("g{i}")).unwrap();
        }
        assert_eq!(s.define(MetricKind::Gauge, "too-many"), None);
        assert_eq!(s.update(999, |_, v| v), Err(Status::NotFound));
    }
}
