//! The compiled-plugin cache: one compile per distinct content, a disk cache that survives
//! restarts (and is not trusted when tampered with), and its memory budget: plugins nothing
//! uses leave memory oldest first past `compiled_cache_bytes`, plugins in use never do, and an
//! evicted one comes back from the disk cache without a recompile.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::*;
use wharf_plugins::{PluginRuntime, RuntimeSettings};

fn runtime_in(dir: Option<&std::path::Path>) -> (Arc<PluginRuntime>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let settings = RuntimeSettings {
        max_instances: 8,
        ..RuntimeSettings::default()
    };
    let rt = PluginRuntime::new(settings, dir, metrics.clone()).expect("runtime");
    (rt, metrics)
}

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
    // The compile thread may still be dropping its copies of the results: the gateway trims on
    // every config poll, so an idle plugin goes at the next one; here, retry for a moment.
    for _ in 0..100 {
        rt.trim_compiled();
        if metric(&metrics, "wharf_compiled_components") == 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
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

#[tokio::test]
async fn identical_bytes_compile_once_and_restarts_reuse_the_disk_cache() {
    let dir = std::env::temp_dir().join(format!("wharf-cache-{}", std::process::id()));
    let bytes = example_plugin("add-header");
    {
        let (rt, metrics) = runtime_in(Some(&dir));
        for _ in 0..100 {
            rt.validate(&bytes).unwrap();
        }
        assert_eq!(metrics.compiled_cache_misses_total.get(), 1);
        assert_eq!(metrics.compiled_components.get(), 1);
    }
    let (rt, metrics) = runtime_in(Some(&dir));
    let sha = wharf_plugins::sha256_hex(&bytes);
    assert!(
        rt.cached(&sha).is_some(),
        "a restarted runtime finds the artifact on disk"
    );
    rt.validate(&bytes).unwrap();
    assert_eq!(
        metrics.compiled_cache_misses_total.get(),
        0,
        "no recompile after restart"
    );
    assert_eq!(
        metrics
            .compiled_cache_hits_total
            .with_label_values(&["disk"])
            .get(),
        1
    );
    // A tampered artifact is not trusted.
    let artifact = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join(format!("{sha}.cwasm"));
    let mut tampered = std::fs::read(&artifact).unwrap();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    std::fs::write(&artifact, tampered).unwrap();
    let (rt, _) = runtime_in(Some(&dir));
    assert!(rt.cached(&sha).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The disk cache's sweep: code of content no plugin version has any more goes, with files a
/// crashed write left and the directories of engines the node no longer runs; code still
/// needed (in the store, or running), files of recent writes (within the grace) and names the
/// cache never writes stay.
#[tokio::test]
async fn the_disk_sweep_removes_code_nothing_needs_and_keeps_the_rest() {
    let dir = std::env::temp_dir().join(format!("wharf-cache-sweep-{}", std::process::id()));
    let in_dir = |grace_s: u64| {
        let metrics = Arc::new(Metrics::new());
        let settings = RuntimeSettings {
            max_instances: 8,
            compiled_disk_grace_s: grace_s,
            ..RuntimeSettings::default()
        };
        let rt = PluginRuntime::new(settings, Some(&dir), metrics.clone()).unwrap();
        (rt, metrics)
    };
    let (rt, metrics) = in_dir(0);
    let kept = rt.compile(None, noop()).await.unwrap().sha256.clone();
    let gone = rt.compile(None, trap()).await.unwrap().sha256.clone();
    let engine_dir = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let files = |sha: &str| {
        std::fs::read_dir(&engine_dir)
            .unwrap()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().starts_with(sha))
            .count()
    };
    assert_eq!(
        (files(&kept), files(&gone)),
        (3, 3),
        "artifact, digest, footprint"
    );
    // What a crashed write leaves, an engine of an older wasmtime, and files not the cache's.
    std::fs::write(engine_dir.join(format!("{kept}.tmp4242")), b"half").unwrap();
    let old_engine = dir.join("0123456789abcdef");
    std::fs::create_dir_all(&old_engine).unwrap();
    std::fs::write(old_engine.join(format!("{gone}.cwasm")), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join("operator-notes.txt"), b"mine").unwrap();
    std::fs::write(engine_dir.join("README"), b"mine").unwrap();

    // Another runtime on the same directory with the default grace (an hour) removes nothing
    // yet: an upload compiles before its version is in the store.
    let (young, _) = in_dir(3600);
    let swept = young.sweep_compiled_disk(&std::collections::HashSet::new());
    assert_eq!((swept.files, swept.bytes), (0, 0), "{swept:?}");

    // In use but in no version yet (an upload between its compile and its commit): it stays.
    let running = rt.compile(None, infinite_loop()).await.unwrap();
    let live = std::collections::HashSet::from([kept.clone()]);
    let swept = rt.sweep_compiled_disk(&live);
    assert_eq!(swept.files, 3 + 1 + 1, "{swept:?}");
    assert!(swept.bytes > 4096, "{swept:?}");
    assert_eq!((files(&kept), files(&gone)), (3, 0));
    assert_eq!(files(&running.sha256), 3, "what runs is kept");
    drop(running);
    assert!(!old_engine.exists(), "the old engine's directory went");
    assert!(dir.join("operator-notes.txt").is_file());
    assert!(engine_dir.join("README").is_file());
    assert_eq!(
        metric(&metrics, "wharf_compiled_disk_bytes"),
        swept.kept_bytes as f64
    );
    assert!(swept.kept_bytes > 0);
    drop(rt);

    // After a restart the code still needed loads from disk; the swept one compiles again.
    let (rt, metrics) = in_dir(0);
    assert!(rt.cached(&kept).is_some(), "kept code is loaded from disk");
    assert!(rt.cached(&gone).is_none(), "swept code is gone");
    assert_eq!(metrics.compiled_cache_misses_total.get(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
