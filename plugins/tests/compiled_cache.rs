//! The compiled-plugin cache's memory budget: plugins nothing uses leave memory oldest first
//! past `compiled_cache_bytes`, plugins in use never do, and an evicted one comes back from the
//! disk cache without a recompile.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::*;
use wharf_plugins::{PluginRuntime, RuntimeSettings};

fn metric(m: &Metrics, name: &str) -> f64 {
    m.render()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn unused_plugins_are_evicted_past_the_budget_and_reload_from_disk() {
    let dir = std::env::temp_dir().join(format!("wharf-cache-budget-{}", std::process::id()));
    let metrics = Arc::new(Metrics::new());
    let settings = RuntimeSettings {
        max_instances: 8,
        // Smaller than any one component: only what is in use may stay.
        compiled_cache_bytes: 1,
        ..RuntimeSettings::default()
    };
    let rt = PluginRuntime::new(settings, Some(&dir), metrics.clone()).unwrap();
    // Three distinct components (the same code, distinct bytes).
    let a = rt.compile(None, noop()).await.unwrap();
    let b = rt.compile(None, trap()).await.unwrap();
    let c = rt.compile(None, infinite_loop()).await.unwrap();
    let (sha_a, sha_b) = (a.sha256.clone(), b.sha256.clone());
    assert!(a.code_bytes > 0);

    // `a` stays attached (held); `b` and `c` are let go.
    drop(b);
    drop(c);
    rt.trim_compiled();
    assert_eq!(
        metric(&metrics, "wharf_compiled_components"),
        1.0,
        "only the plugin in use stays"
    );
    assert_eq!(
        metric(&metrics, "wharf_compiled_cache_evictions_total"),
        2.0
    );
    assert_eq!(
        metric(&metrics, "wharf_compiled_cache_bytes"),
        a.code_bytes as f64
    );

    // An evicted plugin comes back from the disk cache, not from a compile.
    let misses = metric(&metrics, "wharf_compiled_cache_misses_total");
    let again = rt.cached(&sha_b).expect("reloaded from disk");
    assert_eq!(again.sha256, sha_b);
    assert_eq!(
        metric(&metrics, "wharf_compiled_cache_misses_total"),
        misses
    );
    assert!(
        Arc::ptr_eq(&rt.cached(&sha_a).unwrap(), &a),
        "the one in use was never dropped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
