//! The compiled-code cache through the gateway: tenants uploading the same bytes share one
//! compile, and a restart loads from the disk cache instead of compiling again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::api::setup_configured;
use crate::support::*;
use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::OnError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_tenants_same_bytes_compile_once_and_restart_does_not_recompile() {
    let (url, store) = fresh_store(StoreKind::Postgres).await;
    let up = Upstream::start("up").await;
    let bytes = example_plugin("add-header");
    for i in 0..100 {
        let t = format!("t{i}");
        store
            .create_tenant(&t, "T", &[&format!("t{i}.test")])
            .await
            .unwrap();
        store
            .put_route(&t, route("api", "/", &[&up.target()]))
            .await
            .unwrap();
        attach_plugin(
            &store,
            &t,
            "api",
            "tag",
            &bytes,
            &[("request-value", &t)],
            OnError::FailClosed,
        )
        .await;
    }
    let mut gw = Wharf::start(&url).await;
    assert_eq!(
        gw.get("t42.test", "/").await.json["headers"]["x-wharf-plugin"],
        "t42"
    );
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_compiled_cache_misses_total"), 1.0);
    assert_eq!(metric_value(&m, "wharf_compiled_components"), 1.0);

    gw.restart().await;
    assert_eq!(
        gw.get("t7.test", "/").await.json["headers"]["x-wharf-plugin"],
        "t7"
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "wharf_compiled_cache_misses_total"),
        0.0,
        "restart reuses the disk cache"
    );
    assert_eq!(
        metric_value(&m, r#"wharf_compiled_cache_hits_total{tier="disk"}"#),
        1.0
    );
}

/// `bytes` with a custom section appended: the same plugin under a distinct content hash.
fn distinct(bytes: &[u8], i: u8) -> Vec<u8> {
    let name = b"wharf-test";
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + 1) as u8); // size: name length byte, name, payload
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(i);
    out
}

/// Routes hold compiled plugins only weakly: a boot with a warm disk cache loads none (each
/// loads on its first request; a cold one compiles them before serving), and under a budget too
/// small for one, idle attached plugins are evicted and come back from the disk on their next
/// request, each still serving its own tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_plugins_load_on_first_use_and_come_back_after_eviction() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    let bytes = example_plugin("add-header");
    const N: u8 = 6;
    for i in 0..N {
        let t = format!("t{i}");
        store
            .create_tenant(&t, "T", &[&format!("t{i}.test")])
            .await
            .unwrap();
        store
            .put_route(&t, route("api", "/", &[&up.target()]))
            .await
            .unwrap();
        attach_plugin(
            &store,
            &t,
            "api",
            "tag",
            &distinct(&bytes, i),
            &[("request-value", &t)],
            OnError::FailClosed,
        )
        .await;
    }
    let budget = "[plugins]\ncompiled_cache_bytes = 1\n";
    let mut gw = Wharf::start_configured(&url, budget, &[]).await;
    // A first boot: nothing on disk, each compiled once before serving.
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "wharf_compiled_cache_misses_total"),
        f64::from(N)
    );
    for round in 0..2 {
        for i in 0..N {
            let r = gw.get(&format!("t{i}.test"), "/").await;
            assert_eq!(r.status, 200, "round {round}, t{i}: {}", r.json);
            assert_eq!(r.json["headers"]["x-wharf-plugin"], format!("t{i}"));
        }
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "wharf_compiled_cache_misses_total"),
        f64::from(N),
        "compiled once each, however often evicted"
    );
    assert!(
        metric_value(&m, "wharf_compiled_cache_evictions_total") >= f64::from(2 * N - 1),
        "a one-byte budget keeps no idle plugin:\n{m}"
    );
    assert!(
        metric_value(&m, r#"wharf_compiled_cache_hits_total{tier="disk"}"#) >= f64::from(2 * N - 1),
        "evicted plugins come back from the disk cache"
    );

    gw.restart().await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "wharf_compiled_components"),
        0.0,
        "a boot loads no plugin"
    );
    assert_eq!(metric_value(&m, "wharf_compiled_cache_misses_total"), 0.0);
    let r = gw.get("t3.test", "/").await;
    assert_eq!(r.json["headers"]["x-wharf-plugin"], "t3");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, r#"wharf_compiled_cache_hits_total{tier="disk"}"#),
        1.0,
        "only the plugin a request used was read"
    );
}

/// A tenant uploading plugin after plugin and deleting them (each upload compiled, its code
/// written to the node's disk) does not fill the node's disk: the code of versions the store no
/// longer has is swept (here 2 s after it was written, an hour by default), the code still used
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_plugins_leave_the_nodes_disk() {
    let (gw, api, ka, _, _) =
        setup_configured(StoreKind::Sqlite, "[plugins]\ncompiled_disk_grace_s = 2\n").await;
    let artifacts = || -> usize {
        std::fs::read_dir(gw.data_dir().join("compiled"))
            .map(|dirs| {
                dirs.flatten()
                    .filter_map(|d| std::fs::read_dir(d.path()).ok())
                    .flatten()
                    .flatten()
                    .filter(|f| f.file_name().to_string_lossy().ends_with(".cwasm"))
                    .count()
            })
            .unwrap_or(0)
    };
    let bytes = example_plugin("add-header");
    let (s, v) = api
        .put_plugin("a", "kept", &ka, distinct(&bytes, 200))
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
    for i in 0..5 {
        let (s, v) = api.put_plugin("a", "churn", &ka, distinct(&bytes, i)).await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
    }
    assert_eq!(artifacts(), 6, "each upload compiled to disk");
    let (s, v) = api
        .call(
            reqwest::Method::DELETE,
            "/v1/tenants/a/plugins/churn",
            Some(&ka),
            None,
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while artifacts() > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        artifacts(),
        1,
        "only the code of the version still stored stays"
    );
    // The gauge tells the operator what the cache holds: the kept plugin's files.
    let held: u64 = std::fs::read_dir(gw.data_dir().join("compiled"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|f| f.metadata().unwrap().len())
        .sum();
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_compiled_disk_bytes"), held as f64);
}
