//! Two tenants with the same module bytes share nothing; a module's failure (in its allocator,
//! or in one callback) is its own request's and is named for what happened.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_module_in_two_tenants_runs_in_two_vms_that_share_nothing() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    let bytes = counter();
    let mut shas = Vec::new();
    for t in ["a", "b"] {
        route_to(&api, t, &up).await;
        let (s, v) = api.put_plugin(t, "counter", OP, bytes.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        shas.push(v["sha256"].clone());
        attach(
            &gw,
            &api,
            t,
            "api",
            "counter",
            json!({"plugin_config": {"who": t}}),
        )
        .await;
    }
    assert_eq!(shas[0], shas[1], "the same bytes");

    // Interleaved: each VM counts its own tenant's requests only, with its own configuration.
    let mut count = [0, 0];
    for t in ["a", "b", "a", "a", "b", "a", "b"] {
        let i = usize::from(t == "b");
        count[i] += 1;
        let r = gw.get(&format!("{t}.test"), "/").await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(seen(&r, "x-count"), count[i].to_string(), "{t}: {}", r.json);
        assert_eq!(seen(&r, "x-tenant"), t);
        let config: Value = serde_json::from_str(seen(&r, "x-config")).unwrap();
        assert_eq!(config, json!({"who": t}));
    }
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 2.0, "{m}");
    assert_eq!(metric_sum(&m, "wharf_plugin_vm_restarts_total"), 0.0);

    // a's module trapping restarts a's VM only: b's counter goes on.
    let r = gw.request("GET", "a.test", "/", &[("x-trap", "1")]).await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "counter"), "{}", r.json);
    let r = gw.get("a.test", "/").await;
    assert_eq!(seen(&r, "x-count"), "1", "a's new VM: {}", r.json);
    let r = gw.get("b.test", "/").await;
    assert_eq!(
        seen(&r, "x-count"),
        (count[1] + 1).to_string(),
        "{}",
        r.json
    );
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 2.0, "{m}");
    assert_eq!((restarts(&m, "a"), restarts(&m, "b")), (1.0, 0.0), "{m}");
}

/// The module's allocator runs inside a host call: a trap there, or running past the deadline
/// there, is the module failing, as anywhere else (its VM is dropped, the request fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_or_a_spin_in_the_modules_allocator_fails_its_request() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    api.set_quotas(
        "a",
        json!({"plugin_deadline_ms": 300, "plugin_fuel": 100_000_000_000u64}),
    )
    .await;
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "alloc",
        failing_allocator(),
        json!({}),
    )
    .await;
    let r = gw.get("a.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.json);

    let r = gw
        .request("GET", "a.test", "/", &[("x-alloc-trap", "1")])
        .await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "alloc"), "{}", r.json);
    let t = Instant::now();
    let r = gw
        .request("GET", "a.test", "/", &[("x-alloc-spin", "1")])
        .await;
    assert_eq!(
        failure(&r).0,
        (504, "plugin_timeout", "alloc"),
        "{} after {:?}",
        r.json,
        t.elapsed()
    );
    // Two failures in a row: the next start waits 100 ms (a VM failing request after request
    // backs off even though each start succeeds).
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let r = gw.get("a.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(restarts(&gw.metrics().await, "a"), 2.0);
}

/// A VM lives across requests: a growth refused in one (which the module survived) does not make
/// a later, unrelated trap a memory-limit failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_failure_is_named_for_what_happened_in_its_own_callback() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    upload_and_attach(&gw, &api, "a", "api", "grower", modest_grower(), json!({})).await;
    let r = gw.request("GET", "a.test", "/", &[("x-grow", "1")]).await;
    // memory.grow answered -1 (refused past the 16 MiB default), seen here as 0.
    assert_eq!((r.status, seen(&r, "x-grown")), (200, "0"), "{}", r.json);
    let r = gw.request("GET", "a.test", "/", &[("x-trap", "1")]).await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "grower"), "{}", r.json);
}
