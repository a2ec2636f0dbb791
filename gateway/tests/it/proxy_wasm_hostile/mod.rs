//! proxy-wasm isolation from the attacker's side: raw-ABI modules written here in WAT, uploaded
//! through the admin API and attached as any tenant would, each doing one hostile thing (a trap,
//! an endless loop, memory growth past the quota, wild pointers, a 100,000-pair header map, a
//! reach for another request's context, an allocator answering garbage, a VM that cannot be
//! configured, `proc_exit`). Each fails only its own request (or gets an error status and goes
//! on), while another tenant's requests, with and without a plugin of the same bytes, keep being
//! served by a VM that never restarts. And two tenants running the same module bytes get a VM
//! each whose state never shows the other's requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::proxy_wasm_serve::{attach, metric_sum, route_to, upload_and_attach};
use crate::support::api::{setup, Api, Body, OP};
use crate::support::*;

mod isolation;
mod memory;
mod modules;

pub(crate) use modules::Wat;
use modules::*;

/// Route `name` of tenant `t` on `/{name}` to `up`.
async fn prefix_route(api: &Api, t: &str, name: &str, up: &Upstream) {
    let route = json!({"path_prefix": format!("/{name}"), "upstreams": [{"addr": up.target(), "weight": 1}]});
    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/v1/tenants/{t}/routes/{name}"),
            Some(OP),
            Some(Body::Json(route)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// The header `name` the upstream saw (the echo server answers with the request's headers).
fn seen<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.json["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("the upstream did not see {name}: {}", r.json))
}

/// A plugin's failure as the client sees it: (status, error code, plugin), and the message.
fn failure(r: &Reply) -> ((u16, &str, &str), &str) {
    (
        (
            r.status,
            r.json["error"].as_str().unwrap_or("-"),
            r.json["plugin"].as_str().unwrap_or("-"),
        ),
        r.json["message"].as_str().unwrap_or(""),
    )
}

fn restarts(m: &str, tenant: &str) -> f64 {
    metric_value(
        m,
        &format!("wharf_plugin_vm_restarts_total{{tenant=\"{tenant}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_proxy_wasm_modules_fail_only_their_own_requests() {
    let (gw, api, _a, _b, _r) = setup().await;
    let gw = Arc::new(gw);
    let up = Upstream::start("up").await;

    // The victim, b: a route without a plugin, and one with the counter module (the same bytes
    // the attacker traps with below).
    route_to(&api, "b", &up).await;
    prefix_route(&api, "b", "plugged", &up).await;
    upload_and_attach(
        &gw,
        &api,
        "b",
        "plugged",
        "counter",
        counter(),
        json!({"plugin_config": "b"}),
    )
    .await;

    // The attacker, a: tight limits, and a route per hostile module.
    route_to(&api, "a", &up).await;
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(json!({
                "plugin_deadline_ms": 500,
                "plugin_fuel": 100_000_000_000u64,
                "plugin_memory_bytes": 4 << 20,
            }))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let modules: [(&str, Vec<u8>, Value); 9] = [
        ("counter", counter(), json!({"plugin_config": "a"})),
        ("loop", endless_loop(), json!({})),
        ("hog", memory_hog(), json!({})),
        ("wild", wild_pointers(), json!({})),
        ("huge", huge_map(), json!({})),
        ("flood", header_flood(), json!({})),
        ("hop", context_hopper(), json!({})),
        ("alloc", garbage_allocator(), json!({})),
        (
            "cfgtrap",
            unconfigurable(),
            json!({"plugin_config": "trap"}),
        ),
    ];
    for (name, bytes, body) in modules {
        prefix_route(&api, "a", name, &up).await;
        upload_and_attach(&gw, &api, "a", name, name, bytes, body).await;
    }
    prefix_route(&api, "a", "cfgrefuse", &up).await;
    attach(&gw, &api, "a", "cfgrefuse", "cfgtrap", json!({})).await;

    // b's requests go on the whole time, concurrently: every one served, and its VM's counter
    // counts each of b's requests and nothing else (it is never restarted).
    let stop = Arc::new(AtomicBool::new(false));
    let victim = {
        let (gw, stop) = (gw.clone(), stop.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                let t = Instant::now();
                let r = gw.get("b.test", "/").await;
                assert_eq!(r.status, 200, "b, no plugin: {}", r.json);
                assert_eq!(r.json["upstream"], "up");
                let r = gw.get("b.test", "/plugged").await;
                assert_eq!(r.status, 200, "b, with its plugin: {}", r.json);
                n += 1;
                assert_eq!(seen(&r, "x-count"), n.to_string(), "b's VM: {}", r.json);
                assert_eq!(seen(&r, "x-config"), "b");
                assert_eq!(seen(&r, "x-tenant"), "b");
                worst = worst.max(t.elapsed());
            }
            (n, worst)
        })
    };

    // A trap, and WASI proc_exit: 502 plugin_trap for that request; the next one is served by a
    // new VM (its counter starts over), counted as a restart.
    let r = gw.get("a.test", "/counter").await;
    assert_eq!((r.status, seen(&r, "x-count")), (200, "1"), "{}", r.json);
    assert_eq!(seen(&r, "x-tenant"), "a");
    let r = gw
        .request("GET", "a.test", "/counter", &[("x-trap", "1")])
        .await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "counter"), "{}", r.json);
    assert!(failure(&r).1.contains("unreachable"), "{}", r.json);
    let r = gw.get("a.test", "/counter").await;
    assert_eq!(
        (r.status, seen(&r, "x-count")),
        (200, "1"),
        "a new VM: {}",
        r.json
    );
    let r = gw
        .request("GET", "a.test", "/counter", &[("x-exit", "1")])
        .await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "counter"), "{}", r.json);
    assert!(failure(&r).1.contains("proc_exit 3"), "{}", r.json);
    let r = gw.get("a.test", "/counter").await;
    assert_eq!((r.status, seen(&r, "x-count")), (200, "1"), "{}", r.json);
    let r = gw.get("a.test", "/counter").await;
    assert_eq!((r.status, seen(&r, "x-count")), (200, "2"), "{}", r.json);
    assert_eq!(restarts(&gw.metrics().await, "a"), 2.0);

    // An endless loop: 504 plugin_timeout at about the deadline (500 ms of its own time); twice.
    for _ in 0..2 {
        let t = Instant::now();
        let r = gw.get("a.test", "/loop").await;
        let took = t.elapsed();
        assert_eq!(failure(&r).0, (504, "plugin_timeout", "loop"), "{}", r.json);
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(5),
            "the loop ran {took:?}"
        );
    }

    // Memory growth past plugin_memory_bytes (4 MiB): refused, and the trap that follows is
    // reported as the memory limit.
    let r = gw.get("a.test", "/hog").await;
    assert_eq!(
        failure(&r).0,
        (502, "plugin_memory_limit", "hog"),
        "{}",
        r.json
    );
    assert!(failure(&r).1.contains("4194304"), "{}", r.json);

    // Wild pointers and lengths: each host call answers INVALID_MEMORY_ACCESS (6), a length
    // past 64 MiB BAD_ARGUMENT (2), WASI EFAULT (21); the module goes on and the request is
    // served, without the reply it asked for with a wild body.
    let r = gw.get("a.test", "/wild").await;
    assert_eq!(r.status, 200, "{}", r.json);
    for (name, status) in [
        ("x-oob-log", "6"),
        ("x-oob-len", "2"),
        ("x-oob-key", "6"),
        ("x-oob-ret", "6"),
        ("x-oob-pairs", "6"),
        ("x-oob-set", "6"),
        ("x-oob-reply", "6"),
        ("x-oob-prop", "6"),
        ("x-oob-time", "6"),
        ("x-oob-fd", "21"),
    ] {
        assert_eq!(seen(&r, name), status, "{name}: {}", r.json);
    }

    // A real 100,000-pair map (1.2 MB) for proxy_set_header_map_pairs: SERIALIZATION_FAILURE
    // (3), the request's headers untouched. 5,000 added values: the map stops at 1,024 pairs
    // and the edits are refused as output (502 plugin_invalid_output), in bounded time.
    let t = Instant::now();
    let r = gw
        .request("GET", "a.test", "/huge", &[("x-mine", "kept")])
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(seen(&r, "x-map-bytes"), "1200004");
    assert_eq!(seen(&r, "x-set-pairs"), "3");
    assert_eq!(seen(&r, "x-mine"), "kept");
    assert!(r.json["headers"].get("k").is_none(), "{}", r.json);
    let r = gw.get("a.test", "/flood").await;
    assert_eq!(
        failure(&r).0,
        (502, "plugin_invalid_output", "flood"),
        "{}",
        r.json
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );

    // Another request's context: while one request of this VM (carrying x-secret) waits for its
    // upstream, the next makes its context effective, which the ABI allows within a VM, and
    // reads x-secret: not found, its reads stay on its own request. A context that does not
    // exist is refused (BAD_ARGUMENT).
    let waiting = {
        let gw = gw.clone();
        tokio::spawn(async move {
            gw.request(
                "GET",
                "a.test",
                "/hop?sleep_ms=1500",
                &[("x-secret", "s3cret")],
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = gw.get("a.test", "/hop").await;
    let first = waiting.await.unwrap();
    assert_eq!((first.status, r.status), (200, 200), "{}", r.json);
    // The module reads its own request's secret (so the next one's miss means something).
    assert_eq!(seen(&first, "x-leaked"), "s3cret", "{}", first.json);
    let first_context: u32 = seen(&first, "x-context").parse().unwrap();
    assert_eq!(
        seen(&r, "x-context"),
        (first_context + 1).to_string(),
        "{}",
        r.json
    );
    assert_eq!(
        seen(&r, "x-eff-prev"),
        "0",
        "the waiting request's context is live: {}",
        r.json
    );
    assert_eq!(seen(&r, "x-eff-far"), "2");
    assert_eq!(seen(&r, "x-secret-status"), "1", "NOT_FOUND: {}", r.json);
    assert!(r.json["headers"].get("x-leaked").is_none(), "{}", r.json);
    assert!(r.json["headers"].get("x-secret").is_none(), "{}", r.json);

    // An allocator answering garbage while the host returns data: refused (6) each time, nothing
    // written (the canary at the end of memory is intact); a sane answer then works.
    let r = gw.get("a.test", "/alloc").await;
    assert_eq!(r.status, 200, "{}", r.json);
    for (name, status) in [
        ("x-alloc-high", "6"),
        ("x-alloc-pairs", "6"),
        ("x-alloc-prop", "6"),
        ("x-alloc-zero", "6"),
        ("x-alloc-edge", "6"),
        ("x-canary", "0"),
        ("x-alloc-ok", "0"),
        ("x-path-seen", "/alloc"),
    ] {
        assert_eq!(seen(&r, name), status, "{name}: {}", r.json);
    }

    // A VM that refuses its configuration: a clear message naming the callback.
    let r = gw.get("a.test", "/cfgrefuse").await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "cfgtrap"), "{}", r.json);
    assert!(
        failure(&r).1.contains("proxy_on_configure refused"),
        "{}",
        r.json
    );

    // A trap in proxy_on_configure: the VM never starts; the first failures restart it, then it
    // backs off and requests fail fast with plugin_unavailable naming the backoff, without a
    // start each.
    let before = restarts(&gw.metrics().await, "a");
    let mut traps = 0;
    let mut unavailable = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        let r = gw.get("a.test", "/cfgtrap").await;
        let took = t.elapsed();
        match failure(&r) {
            ((502, "plugin_trap", "cfgtrap"), _) => traps += 1,
            ((502, "plugin_unavailable", "cfgtrap"), message) => {
                assert!(
                    message.contains("failed") && message.contains("started again in"),
                    "{message}"
                );
                unavailable.push(took);
            }
            other => panic!("{other:?}: {}", r.json),
        }
        if unavailable.len() >= 10 {
            break;
        }
    }
    assert!(
        traps >= 2 && unavailable.len() >= 10,
        "{traps} traps, {} unavailable",
        unavailable.len()
    );
    // Every start after the first was a restart; the fast failures started nothing.
    let m = gw.metrics().await;
    assert_eq!(restarts(&m, "a") - before, f64::from(traps - 1), "{m}");
    println!("cfgtrap: {traps} starts, fast failures took {unavailable:?}");

    // The victim never noticed: every request served, its VM never restarted.
    stop.store(true, Ordering::Relaxed);
    let (n, worst) = victim.await.unwrap();
    println!("b: {n} requests (twice) during the attacks, slowest pair {worst:?}");
    assert!(n >= 5, "b made {n} requests");
    let m = gw.metrics().await;
    assert_eq!(restarts(&m, "b"), 0.0, "{m}");
    let r = gw.get("a.test", "/").await;
    assert_eq!(r.status, 200, "a's own plugin-free route: {}", r.json);
    assert!(metric_sum(&m, "wharf_plugin_vms") >= 1.0);
}
