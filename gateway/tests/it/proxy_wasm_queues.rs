//! Shared queues from the attacker's side, with raw-ABI modules (WAT): a module registers a
//! queue, enqueues in one request and gets `proxy_on_queue_ready` afterwards on the plugin
//! threads (charged to its tenant), where it dequeues; a flood is refused at the tenant's
//! shared-state bound and drained; another tenant's module can neither resolve the queue by
//! name nor reach it by id.

use std::time::{Duration, Instant};

use serde_json::json;

use super::proxy_wasm_hostile::Wat;
use crate::proxy_wasm_serve::{metric_sum, route_to, upload_and_attach};
use crate::support::api::setup;
use crate::support::*;

const QUEUE_IMPORTS: &[&str] = &[
    r#"(import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))"#,
    r#"(import "env" "proxy_resolve_shared_queue" (func $resolve (param i32 i32 i32 i32 i32) (result i32)))"#,
    r#"(import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))"#,
    r#"(import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))"#,
];

fn wat() -> Wat {
    let w = Wat::new();
    for i in QUEUE_IMPORTS {
        w.import(i);
    }
    w
}

/// Registers queue `jobs` when configured. A request enqueues header `x-item` (the status in
/// `x-enq`), or on `x-flood` 1,000-byte items until refused (`x-flooded`, `x-flood-status`);
/// `proxy_on_queue_ready` dequeues until empty. Every request reports what was delivered:
/// `x-got` items, `x-bytes`, `x-calls` deliveries.
fn consumer() -> Vec<u8> {
    let w = wat();
    let funcs = format!(
        r#"(global $q (mut i32) (i32.const 0))
  (global $got (mut i32) (i32.const 0))
  (global $bytes (mut i32) (i32.const 0))
  (global $calls (mut i32) (i32.const 0))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (if (call $register {jobs} (i32.const 720)) (then (return (i32.const 0))))
    (global.set $q (i32.load (i32.const 720)))
    (i32.const 1))
  (func (export "proxy_on_queue_ready") (param i32) (param $queue i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (block $empty (loop $more
      (br_if $empty (call $dequeue (local.get $queue) (i32.const 700) (i32.const 704)))
      (global.set $got (i32.add (global.get $got) (i32.const 1)))
      (global.set $bytes (i32.add (global.get $bytes) (i32.load (i32.const 704))))
      (br $more))))
  (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (local $n i32) (local $status i32)
    (if (i32.eqz (call $get (i32.const 0) {item} (i32.const 700) (i32.const 704))) (then
      (call $report {enq}
        (call $enqueue (global.get $q) (i32.load (i32.const 700)) (i32.load (i32.const 704))))))
    (if (call $has {flood}) (then
      (block $stop (loop $again
        (local.set $status (call $enqueue (global.get $q) (i32.const 30000) (i32.const 1000)))
        (br_if $stop (local.get $status))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $again)))
      (call $report {flooded} (local.get $n))
      (call $report {flood_status} (local.get $status))))
    (call $report {got} (global.get $got))
    (call $report {bytes} (global.get $bytes))
    (call $report {calls} (global.get $calls))
    (i32.const 0))"#,
        jobs = w.s("jobs"),
        item = w.s("x-item"),
        enq = w.s("x-enq"),
        flood = w.s("x-flood"),
        flooded = w.s("x-flooded"),
        flood_status = w.s("x-flood-status"),
        got = w.s("x-got"),
        bytes = w.s("x-bytes"),
        calls = w.s("x-calls"),
    );
    w.module(1, &funcs)
}

/// Another tenant's module reaching for queue `jobs`: by name (`x-resolve`), and by the ids
/// the first tenant's queue has (enqueue `x-enq`, dequeue `x-deq`).
fn intruder() -> Vec<u8> {
    let w = wat();
    let funcs = format!(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (call $report {resolve} (call $resolve {vm} {jobs} (i32.const 720)))
    (call $report {enq} (call $enqueue (i32.const 1) {evil}))
    (call $report {deq} (call $dequeue (i32.const 1) (i32.const 700) (i32.const 704)))
    (i32.const 0))"#,
        resolve = w.s("x-resolve"),
        vm = w.s("vm"),
        jobs = w.s("jobs"),
        enq = w.s("x-enq"),
        evil = w.s("evil"),
        deq = w.s("x-deq"),
    );
    w.module(1, &funcs)
}

fn seen(r: &Reply, name: &str) -> u64 {
    r.json["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("the upstream did not see {name}: {}", r.json))
        .parse()
        .unwrap()
}

/// Requests tenant a's route until `x-got` reaches `items`; the last reply.
async fn delivered(gw: &Wharf, items: u64) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw.request("GET", "a.test", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.json);
        if seen(&r, "x-got") >= items || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_modules_queue_is_delivered_to_it_bounded_and_never_reached_by_another_tenant() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    route_to(&api, "b", &up).await;
    let body = json!({"plugin_config": {}});
    upload_and_attach(&gw, &api, "a", "api", "jobs", consumer(), body.clone()).await;
    upload_and_attach(&gw, &api, "b", "api", "intruder", intruder(), body).await;

    let first = gw
        .request("GET", "a.test", "/", &[("x-item", "hello")])
        .await;
    assert_eq!(first.status, 200, "{}", first.json);
    assert_eq!(seen(&first, "x-enq"), 0, "enqueued");
    let r = delivered(&gw, 1).await;
    assert_eq!(
        (seen(&r, "x-got"), seen(&r, "x-bytes")),
        (1, 5),
        "dequeued in proxy_on_queue_ready"
    );
    assert!(seen(&r, "x-calls") >= 1);

    let flood = gw.request("GET", "a.test", "/", &[("x-flood", "1")]).await;
    assert_eq!(flood.status, 200, "{}", flood.json);
    let flooded = seen(&flood, "x-flooded");
    assert_eq!(
        seen(&flood, "x-flood-status"),
        2,
        "BAD_ARGUMENT at the bound"
    );
    assert!(
        (1000..1024).contains(&flooded),
        "the tenant's 1,024 slots / 1 MiB: {flooded}"
    );
    let r = delivered(&gw, 1 + flooded).await;
    assert_eq!(seen(&r, "x-got"), 1 + flooded, "the flood drained");

    let other = gw.request("GET", "b.test", "/", &[]).await;
    assert_eq!(other.status, 200, "{}", other.json);
    assert_eq!(
        (
            seen(&other, "x-resolve"),
            seen(&other, "x-enq"),
            seen(&other, "x-deq")
        ),
        (1, 1, 1),
        "NOT_FOUND by name and by id: b has no queue"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = gw.request("GET", "a.test", "/", &[]).await;
    assert_eq!(seen(&r, "x-got"), 1 + flooded, "nothing of b's reached a");

    let m = gw.metrics().await;
    let deliveries: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("wharf_plugin_invocations_total")
                && l.contains("on_queue_ready")
                && l.contains("tenant=\"a\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(deliveries >= 2.0, "charged to tenant a:\n{m}");
}

/// Registers `jobs`, enqueues on every request, and spins forever when told of it.
fn spinning_consumer() -> Vec<u8> {
    let w = wat();
    let funcs = format!(
        r#"(global $q (mut i32) (i32.const 0))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $register {jobs} (i32.const 720)))
    (global.set $q (i32.load (i32.const 720)))
    (i32.const 1))
  (func (export "proxy_on_queue_ready") (param i32 i32) (loop $spin (br $spin)))
  (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (call $report {enq} (call $enqueue (global.get $q) {item}))
    (i32.const 0))"#,
        jobs = w.s("jobs"),
        enq = w.s("x-enq"),
        item = w.s("job"),
    );
    w.module(1, &funcs)
}

#[tokio::test]
async fn a_delivery_that_spins_is_stopped_at_the_deadline_and_its_vm_replaced() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let body = json!({"plugin_config": {}});
    upload_and_attach(&gw, &api, "a", "api", "spin", spinning_consumer(), body).await;
    let r = gw.request("GET", "a.test", "/", &[]).await;
    assert_eq!((r.status, seen(&r, "x-enq")), (200, 0), "{}", r.json);
    // The delivery spins until its deadline (route_to: 3 s) or fuel, and takes the VM with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopped = loop {
        let m = gw.metrics().await;
        let stopped: f64 = m
            .lines()
            .filter(|l| {
                l.starts_with("wharf_plugin_invocations_total")
                    && l.contains("on_queue_ready")
                    && (l.contains("timeout") || l.contains("fuel_exhausted"))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if stopped >= 1.0 || Instant::now() > deadline {
            break stopped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(stopped >= 1.0, "the delivery ran into its deadline or fuel");
    let next = gw.request("GET", "a.test", "/", &[]).await;
    assert_eq!(next.status, 200, "a new VM serves: {}", next.json);
    let other = gw.request("GET", "b.test", "/", &[]).await;
    assert_ne!(other.status, 500, "{}", other.json);
    let m = gw.metrics().await;
    assert!(
        metric_sum(&m, "wharf_plugin_vm_restarts_total") >= 1.0,
        "{m}"
    );
}
