//! The compiled-code cache through the gateway: tenants uploading the same bytes share one
//! compile, and a restart loads from the disk cache instead of compiling again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

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
