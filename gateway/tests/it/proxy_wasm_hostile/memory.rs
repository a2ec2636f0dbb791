//! A module cannot make the node hold its memory many times over (in headers, in properties).

use super::*;

/// The gateway's peak resident memory (VmHWM).
fn peak_rss(gw: &Wharf) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A tenant whose module may use 4 MiB, with a generous deadline, and the amplifier attached.
async fn amplifier_gateway() -> (Wharf, Api, Upstream) {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    api.set_quotas(
        "a",
        json!({"plugin_deadline_ms": 5000, "plugin_memory_bytes": 4 << 20}),
    )
    .await;
    upload_and_attach(&gw, &api, "a", "api", "amp", amplifier(), json!({})).await;
    let r = gw.get("a.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.json);
    (gw, api, up)
}

/// What a module hands the host is bounded by what the host keeps, not by how often the module
/// hands it: 200 header values of the same MiB (the module's memory is capped at 4 MiB) must not
/// cost the node 200 MiB, nor the copies made of the map after the callback (before maps were
/// bounded in bytes, one such request grew the node's peak memory by 856 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_cannot_make_the_node_hold_its_memory_many_times_over_in_headers() {
    let (gw, _api, _up) = amplifier_gateway().await;
    let before = peak_rss(&gw);
    let r = gw
        .request("GET", "a.test", "/", &[("x-headers", "1")])
        .await;
    let grown = peak_rss(&gw).saturating_sub(before);
    // The map stops taking values at 1 MiB: none of them fits beside the request's headers.
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(r.json["headers"].get("x-big").is_none(), "{}", r.json);
    assert!(
        grown < 64 << 20,
        "the node's peak memory grew by {} MiB",
        grown >> 20
    );
}

// BUG (not fixed here: plugins/src/proxy_wasm/env.rs, where the lead works): proxy_set_property
// takes up to 256 properties of up to 1 MiB each, and a module can hand the same MiB of its
// memory for each, so one request pins ~256 MiB of the node's memory (not counted in the
// tenant's plugin_memory_bytes) for as long as it is in flight (the properties live in the
// request's stream until it ends; a slow upstream keeps them). A hundred such requests in flight
// are 25 GiB. Measured: 238 properties taken, the peak grew by ~240 MiB. The fix: a cap on the
// bytes of all the properties a module sets (e.g. 1 MiB in total), answered BAD_ARGUMENT past it.
// Un-ignore this test with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_cannot_make_the_node_hold_its_memory_many_times_over_in_properties() {
    let (gw, _api, _up) = amplifier_gateway().await;
    let before = peak_rss(&gw);
    let r = gw
        .request("GET", "a.test", "/?sleep_ms=500", &[("x-props", "1")])
        .await;
    let grown = peak_rss(&gw).saturating_sub(before);
    assert_eq!(r.status, 200, "{}", r.json);
    println!("properties taken: {}", seen(&r, "x-props-set"));
    assert!(
        grown < 64 << 20,
        "the node's peak memory grew by {} MiB",
        grown >> 20
    );
}
