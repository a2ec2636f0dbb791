//! A request-filter that imports only plain host calls runs without a fiber (`fiberless.rs`),
//! and a call of it that runs past its time slice is ended and restarted on a fiber: the same
//! answer, its log lines written once, its deadline still whole across both attempts, and a
//! plugin that keeps running long starts on a fiber from then on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::{binary, example_plugin, http_plugin, invocation, log_host};
use wharf_plugins::types::{Request, RequestAction, RequestHead, Response};
use wharf_plugins::{
    CompiledPlugin, Invocation, PluginError, PluginInstance, PluginQuotas, PluginRuntime,
    RuntimeSettings,
};

/// A `request-filter` that writes one log line, counts to `spins` and continues.
fn spin_filter(spins: u32) -> Vec<u8> {
    let spins = spins as i32;
    filter(
        &format!(
            "(local $i i32)
      (block $done (loop $again
        (br_if $done (i32.ge_u (local.get $i) (i32.const {spins})))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again)))"
        ),
        "",
    )
}

/// A `request-filter` that writes one log line, runs `body` (WAT instructions; `extra` adds
/// functions) and continues.
fn filter(body: &str, extra: &str) -> Vec<u8> {
    let log_host = log_host();
    binary(&format!(
        r#"(component
  (type $types-ty (instance
    (type (;0;) (record (field "method" string) (field "path" string) (field "client-addr" string) (field "tenant-id" string) (field "route-id" string)))
    (export (;1;) "request-head" (type (eq 0)))
    (type (;2;) (list u8))
    (type (;3;) (record (field "name" string) (field "value" 2)))
    (export (;4;) "header" (type (eq 3)))
    (type (;5;) (variant (case "set" 4) (case "append" 4) (case "remove" string)))
    (export (;6;) "header-op" (type (eq 5)))
    (type (;7;) (list 6))
    (type (;8;) (option string))
    (type (;9;) (record (field "headers" 7) (field "path" 8)))
    (export (;10;) "request-edits" (type (eq 9)))
    (type (;11;) (list 4))
    (type (;12;) (record (field "status" u16) (field "headers" 11) (field "body" 2)))
    (export (;13;) "reply" (type (eq 12)))
    (type (;14;) (variant (case "continue" 10) (case "respond" 13)))
    (export (;15;) "request-action" (type (eq 14)))))
  (import "wharf:plugin/types@0.1.0" (instance $types (type $types-ty)))
  (alias export $types "request-head" (type $request-head))
  (import "request-head" (type $head (eq $request-head)))
  (alias export $types "request-action" (type $request-action))
  (import "request-action" (type $action (eq $request-action)))
  {log_host}
  (core module $m
    (import "env" "memory" (memory 1))
    (import "host" "log" (func $log (param i32 i32 i32)))
    {extra}
    (func (export "handle-request") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      {body}
      (i32.store8 (i32.const 8192) (i32.const 120))
      (call $log (i32.const 2) (i32.const 8192) (i32.const 1))
      (i32.const 0)))
  (core instance $main (instantiate $m (with "env" (instance $memi)) (with "host" (instance $host))))
  (type $handle-ty (func (param "req" $head) (result $action)))
  (alias core export $main "handle-request" (core func $handle-core))
  (func $handle (type $handle-ty) (canon lift (core func $handle-core) (memory $memory) (realloc $cabi_realloc) string-encoding=utf8))
  (export "handle-request" (func $handle)))"#
    ))
}

fn runtime() -> (Arc<PluginRuntime>, Arc<Metrics>) {
    runtime_ticking(RuntimeSettings::default().epoch_tick_us)
}

fn runtime_ticking(epoch_tick_us: u64) -> (Arc<PluginRuntime>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let settings = RuntimeSettings {
        max_instances: 16,
        threads: 1,
        epoch_tick_us,
        ..RuntimeSettings::default()
    };
    let rt = PluginRuntime::new(settings, None, metrics.clone()).expect("runtime");
    (rt, metrics)
}

fn quotas(deadline_ms: u64) -> PluginQuotas {
    PluginQuotas {
        fuel: u64::MAX / 4,
        deadline_ms,
        ..PluginQuotas::default()
    }
}

/// A plugin of tenant `t`, ready for its first call.
async fn prepared(
    rt: &PluginRuntime,
    compiled: &Arc<CompiledPlugin>,
    quotas: PluginQuotas,
) -> Result<PluginInstance, PluginError> {
    let (tenant, plugin): (Arc<str>, Arc<str>) = ("t".into(), "spin".into());
    let inv = Invocation {
        quotas,
        ..invocation((&tenant, &plugin), &[])
    };
    rt.prepare(inv, compiled).await
}

async fn call(
    rt: &PluginRuntime,
    compiled: &Arc<CompiledPlugin>,
    quotas: PluginQuotas,
) -> Result<RequestAction, PluginError> {
    let head = std::sync::Arc::new(RequestHead {
        method: "GET".into(),
        path: "/".into(),
        client_addr: "127.0.0.1".into(),
        tenant_id: "t".into(),
        route_id: "r".into(),
    });
    let mut instance = prepared(rt, compiled, quotas).await?;
    instance.handle_request(head, &http::HeaderMap::new()).await
}

fn log_lines(metrics: &Metrics, outcome: &str) -> u64 {
    series(
        metrics,
        &format!("wharf_plugin_logs_total{{outcome=\"{outcome}\",tenant=\"t\"}}"),
    )
}

/// Tenant `t`'s log lines written and dropped over its quota.
fn emitted_and_dropped(metrics: &Metrics) -> (u64, u64) {
    (log_lines(metrics, "emitted"), log_lines(metrics, "dropped"))
}

/// Stores made for tenant `t`'s calls: a restarted call makes two.
fn instantiations(metrics: &Metrics) -> u64 {
    series(metrics, "wharf_plugin_instantiations_total{tenant=\"t\"}")
}

fn series(metrics: &Metrics, wanted: &str) -> u64 {
    metrics
        .render()
        .lines()
        .find(|l| l.starts_with(wanted))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_call_past_its_slice_restarts_on_a_fiber_with_the_same_answer_and_one_log_line() {
    let (rt, metrics) = runtime();
    // ~100 ms of counting: far past one 100 µs slice, so every call is ended and restarted.
    let long = rt.validate(&spin_filter(100_000_000)).unwrap();
    assert!(long.starts_without_fiber(), "a filter of plain host calls");
    for n in 1..=3 {
        let action = call(&rt, &long, quotas(5_000))
            .await
            .expect("the call ends");
        assert!(matches!(action, RequestAction::Continue(_)), "{action:?}");
        // The ended attempt's line was held and dropped: the restarted call's is the only one.
        assert_eq!(log_lines(&metrics, "emitted"), n);
    }
    assert_eq!(log_lines(&metrics, "dropped"), 0);
    assert!(
        !long.starts_without_fiber(),
        "3 of its last 8 calls ran long: it starts on a fiber"
    );
    // A quick filter stays without a fiber, call after call.
    let quick = rt.validate(&spin_filter(10)).unwrap();
    for n in 1..=3 {
        call(&rt, &quick, quotas(5_000)).await.expect("quick call");
        assert_eq!(log_lines(&metrics, "emitted"), 3 + n);
    }
    assert!(quick.starts_without_fiber());
}

#[tokio::test]
async fn its_log_lines_stay_within_the_quota_once_per_request_across_a_restart() {
    let (rt, metrics) = runtime();
    // 50 lines (plus the filter's own last one) against the default 32 per request.
    let log_50 = "(block $done (loop $again
        (br_if $done (i32.ge_u (local.get $j) (i32.const 50)))
        (call $log (i32.const 2) (i32.const 8192) (i32.const 1))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $again)))";
    let spin = "(block $spun (loop $spin
        (br_if $spun (i32.ge_u (local.get $i) (i32.const 100000000)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $spin)))";
    let locals = "(local $i i32) (local $j i32)";
    let quick = rt
        .validate(&filter(&format!("{locals} {log_50}"), ""))
        .unwrap();
    call(&rt, &quick, quotas(5_000)).await.expect("quick call");
    assert_eq!(emitted_and_dropped(&metrics), (32, 19));
    // Logs its 50 lines, then runs past its slice: the ended attempt's lines (held) and its
    // over-quota count go, the budget comes back, and the restarted call counts as one request.
    let long = rt
        .validate(&filter(&format!("{locals} {log_50} {spin}"), ""))
        .unwrap();
    call(&rt, &long, quotas(5_000)).await.expect("long call");
    assert_eq!(emitted_and_dropped(&metrics), (64, 38));
}

#[tokio::test]
async fn a_spinning_filter_is_restarted_and_still_stopped_at_its_deadline() {
    let (rt, metrics) = runtime();
    let spin = rt.validate(&spin_filter(u32::MAX)).unwrap();
    let err = call(&rt, &spin, quotas(60))
        .await
        .expect_err("spins past 60 ms");
    assert_eq!(err.code(), "plugin_timeout", "{err}");
    assert_eq!(metrics.plugin_instances_in_use.get(), 0);
}

#[tokio::test]
async fn a_recursing_filter_meets_its_stack_limit_on_the_callers_stack() {
    let (rt, _) = runtime();
    let rec = rt
        .validate(&filter(
            "(drop (call $rec (i32.const 0)))",
            "(func $rec (param i32) (result i32) (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))",
        ))
        .unwrap();
    assert!(rec.starts_without_fiber());
    for _ in 0..3 {
        let err = call(&rt, &rec, quotas(1_000)).await.expect_err("overflows");
        assert_eq!(err.code(), "plugin_trap", "{err}");
        assert!(err.to_string().contains("call stack exhausted"), "{err}");
    }
    // The thread that ran it is fine: the next filter runs.
    let quick = rt.validate(&spin_filter(10)).unwrap();
    call(&rt, &quick, quotas(1_000))
        .await
        .expect("a filter after the overflow");
}

#[test]
fn only_filters_of_plain_host_calls_start_without_a_fiber() {
    let (rt, _) = runtime();
    let plain = |name: &str| {
        rt.validate(&example_plugin(name))
            .unwrap()
            .starts_without_fiber()
    };
    // `config` and `response-edits`; `request` too.
    assert!(plain("header-filter"));
    assert!(plain("api-key-auth"));
    // Redis host calls wait on I/O: a fiber.
    assert!(!plain("redis-rate-limit"));
    // An `http-plugin`'s first call too (its `on-response` runs on a fiber).
    assert!(plain("add-header"));
}

/// An `http-plugin` whose `on-request` logs one line, counts to `spins` and then sets a global
/// to 7 (a restarted call would log twice if the ended attempt's line were not held); its `on-response` answers status `200 + the global`: it reads what `on-request` left in
/// the same instance.
fn spin_plugin(spins: u32) -> Vec<u8> {
    http_plugin(
        &format!(
            "(call $log (i32.const 2) (i32.const 8192) (i32.const 1))
      (block $done (loop $again
        (br_if $done (i32.ge_u (local.get $i) (i32.const {spins})))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again)))
      (global.set $seen (i32.const 7))
      (i32.const 0)"
        ),
        // response-action at 512: status some(200 + $seen), no header ops.
        "(i32.store8 (i32.const 512) (i32.const 1))
      (i32.store16 (i32.const 514) (i32.add (i32.const 200) (global.get $seen)))
      (i32.store (i32.const 516) (i32.const 0))
      (i32.store (i32.const 520) (i32.const 0))
      (i32.const 512)",
        "(global $seen (mut i32) (i32.const 0))",
    )
}

/// `on-request`, then `on-response` on the same instance: the status it answers.
async fn both_phases(
    rt: &PluginRuntime,
    compiled: &Arc<CompiledPlugin>,
    quotas: PluginQuotas,
) -> Result<Option<u16>, PluginError> {
    let req = Request {
        method: "GET".into(),
        path: "/".into(),
        headers: vec![],
        client_addr: "127.0.0.1".into(),
        tenant_id: "t".into(),
        route_id: "r".into(),
    };
    let mut instance = prepared(rt, compiled, quotas).await?;
    let action = instance.on_request(req).await?;
    assert!(matches!(action, RequestAction::Continue(_)));
    let resp = Response {
        status: 200,
        headers: vec![],
    };
    Ok(instance.on_response(resp).await?.status)
}

#[tokio::test]
async fn an_http_plugins_first_call_runs_without_a_fiber_and_its_response_phase_sees_its_state() {
    // A tick a second: a call is not ended by one that lands while the test threads share the
    // cores with the other tests.
    let (rt, metrics) = runtime_ticking(1_000_000);
    let quick = rt.validate(&spin_plugin(10)).unwrap();
    for _ in 0..5 {
        assert!(quick.starts_without_fiber());
        assert_eq!(
            both_phases(&rt, &quick, quotas(1_000)).await.unwrap(),
            Some(207)
        );
    }
    assert_eq!(log_lines(&metrics, "emitted"), 5);
    assert_eq!(
        instantiations(&metrics),
        5,
        "one store per request: none restarted"
    );
}

#[tokio::test]
async fn an_http_plugin_past_its_slice_restarts_and_its_response_phase_sees_the_restarted_call() {
    let (rt, metrics) = runtime();
    // ~100 ms of counting in `on-request`, after its one log line: far past a 100 µs slice.
    let long = rt.validate(&spin_plugin(60_000_000)).unwrap();
    assert!(long.starts_without_fiber());
    assert_eq!(
        both_phases(&rt, &long, quotas(10_000)).await.unwrap(),
        Some(207)
    );
    // Restarted: a second store; one line (the ended attempt's was held and dropped with it);
    // and `on-response` saw what the restarted `on-request` left.
    assert_eq!(instantiations(&metrics), 2);
    assert_eq!(log_lines(&metrics, "emitted"), 1);
    for call in 2..=4 {
        assert_eq!(
            both_phases(&rt, &long, quotas(10_000)).await.unwrap(),
            Some(207)
        );
        assert_eq!(log_lines(&metrics, "emitted"), call);
    }
    // Each `on-request` ran long (restarted, or yielding on a fiber): 3 of the last 8 calls.
    assert!(!long.starts_without_fiber(), "a fiber from the start");
    let before = instantiations(&metrics);
    both_phases(&rt, &long, quotas(10_000)).await.unwrap();
    assert_eq!(
        instantiations(&metrics),
        before + 1,
        "on a fiber: no restart"
    );
}
