//! The compiled-code cache through the gateway: tenants uploading the same bytes share one
//! compile, and a restart loads from the disk cache instead of compiling again.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use support::*;
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
