//! The runtime with real components: examples built from C and JavaScript sources, and
//! adversarial WAT components. Every failure stays inside its own instance.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::*;
use wharf_plugins::types::{HeaderOp, Request, RequestAction, Response};
use wharf_plugins::{
    Invocation, PluginError, PluginQuotas, PluginRuntime, RejectError, RuntimeSettings,
};

fn runtime_in(dir: Option<&std::path::Path>) -> (Arc<PluginRuntime>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let settings = RuntimeSettings {
        max_instances: 64,
        ..RuntimeSettings::default()
    };
    (
        PluginRuntime::new(settings, dir, metrics.clone()).expect("runtime"),
        metrics,
    )
}

fn request(path: &str, headers: &[(&str, &str)]) -> Request {
    wharf_plugins::test_support::get_request(path, headers, "acme")
}

fn config(pairs: &[(&str, &str)]) -> wharf_plugins::AttachmentConfig {
    wharf_plugins::attachment_config(pairs.iter().copied())
}

async fn run_request(
    rt: &PluginRuntime,
    bytes: &[u8],
    quotas: PluginQuotas,
    cfg: &[(&str, &str)],
    req: &Request,
) -> Result<RequestAction, PluginError> {
    let compiled = rt.validate(bytes).expect("valid plugin");
    let tenant: Arc<str> = "acme".into();
    let plugin: Arc<str> = "p".into();
    let inv = Invocation {
        tenant: &tenant,
        plugin: &plugin,
        quotas,
        config: config(cfg),
        outbound: Default::default(),
        request_body: None,
        capabilities: None,
    };
    let mut instance = rt.instantiate(inv, &compiled).await?;
    instance.on_request(req.clone()).await
}

fn header_sets(action: &RequestAction) -> Vec<(String, String)> {
    match action {
        RequestAction::Continue(edits) => edits
            .headers
            .iter()
            .filter_map(|op| match op {
                HeaderOp::Set(h) => Some((
                    h.name.clone(),
                    String::from_utf8_lossy(&h.value).into_owned(),
                )),
                _ => None,
            })
            .collect(),
        RequestAction::Respond(_) => vec![],
    }
}

#[tokio::test]
async fn c_add_header_uses_config_and_keeps_state_between_phases() {
    let (rt, _) = runtime_in(None);
    let bytes = example_plugin("add-header");
    let compiled = rt.validate(&bytes).unwrap();
    let tenant: Arc<str> = "acme".into();
    let plugin: Arc<str> = "add-header".into();
    for round in 0..3 {
        let cfg = config(&[
            ("request-header", "x-tenant"),
            ("request-value", "acme"),
            ("debug-state", "1"),
        ]);
        let inv = Invocation {
            tenant: &tenant,
            plugin: &plugin,
            quotas: PluginQuotas::default(),
            config: cfg,
            outbound: Default::default(),
            request_body: None,
            capabilities: None,
        };
        let mut instance = rt.instantiate(inv, &compiled).await.unwrap();
        let path = format!("/round/{round}");
        let action = instance.on_request(request(&path, &[])).await.unwrap();
        assert_eq!(
            header_sets(&action),
            vec![("x-tenant".to_string(), "acme".to_string())]
        );
        let resp = instance
            .on_response(Response {
                status: 200,
                headers: vec![],
            })
            .await
            .unwrap();
        let state: Vec<String> = resp
            .headers
            .iter()
            .filter_map(|op| match op {
                HeaderOp::Set(h) if h.name == "x-wharf-state" => {
                    Some(String::from_utf8_lossy(&h.value).into_owned())
                }
                _ => None,
            })
            .collect();
        // The path seen in on-request is there in on-response; calls=1 every round: no state
        // survives from one request to the next.
        assert_eq!(state, vec![format!("path={path};calls=1")]);
    }
}

#[tokio::test]
async fn c_api_key_auth_short_circuits_without_a_key() {
    let (rt, _) = runtime_in(None);
    let bytes = example_plugin("api-key-auth");
    let cfg = [("keys", "k1,k2")];
    let denied = run_request(
        &rt,
        &bytes,
        PluginQuotas::default(),
        &cfg,
        &request("/", &[]),
    )
    .await
    .unwrap();
    match denied {
        RequestAction::Respond(reply) => {
            assert_eq!(reply.status, 401);
            assert!(String::from_utf8_lossy(&reply.body).contains("unauthorized"));
        }
        other => panic!("expected a 401 reply, got {other:?}"),
    }
    let wrong = run_request(
        &rt,
        &bytes,
        PluginQuotas::default(),
        &cfg,
        &request("/", &[("x-api-key", "k3")]),
    )
    .await;
    assert!(matches!(wrong, Ok(RequestAction::Respond(_))));
    let allowed = run_request(
        &rt,
        &bytes,
        PluginQuotas::default(),
        &cfg,
        &request("/", &[("X-Api-Key", "k2")]),
    )
    .await;
    match allowed.unwrap() {
        RequestAction::Continue(edits) => {
            assert!(matches!(&edits.headers[..], [HeaderOp::Remove(n)] if n == "x-api-key"));
        }
        other => panic!("expected continue, got {other:?}"),
    }
}

#[tokio::test]
async fn js_path_rewrite() {
    let (rt, _) = runtime_in(None);
    let bytes = example_plugin("path-rewrite");
    let cfg = [("from", "/v1"), ("to", "/api/v2")];
    match run_request(
        &rt,
        &bytes,
        PluginQuotas::default(),
        &cfg,
        &request("/v1/users?id=7", &[]),
    )
    .await
    .unwrap()
    {
        RequestAction::Continue(edits) => {
            assert_eq!(edits.path.as_deref(), Some("/api/v2/users?id=7"));
            assert!(
                matches!(&edits.headers[..], [HeaderOp::Set(h)] if h.name == "x-original-path")
            );
        }
        other => panic!("expected continue, got {other:?}"),
    }
    match run_request(
        &rt,
        &bytes,
        PluginQuotas::default(),
        &cfg,
        &request("/v10", &[]),
    )
    .await
    .unwrap()
    {
        RequestAction::Continue(edits) => assert_eq!(edits.path, None, "whole segments only"),
        other => panic!("expected continue, got {other:?}"),
    }
}

#[tokio::test]
async fn adversarial_plugins_fail_only_their_own_request() {
    let (rt, metrics) = runtime_in(None);
    let generous_fuel = PluginQuotas {
        fuel: u64::MAX / 4,
        deadline_ms: 200,
        ..PluginQuotas::default()
    };
    let little_fuel = PluginQuotas {
        fuel: 100_000,
        deadline_ms: 5_000,
        ..PluginQuotas::default()
    };
    let cases: Vec<(&str, Vec<u8>, PluginQuotas, &str)> = vec![
        (
            "loop past deadline",
            infinite_loop(),
            generous_fuel,
            "plugin_timeout",
        ),
        (
            "loop out of fuel",
            infinite_loop(),
            little_fuel,
            "plugin_fuel_exhausted",
        ),
        (
            "memory growth",
            memory_hog(),
            PluginQuotas::default(),
            "plugin_memory_limit",
        ),
        (
            "deep recursion",
            deep_recursion(),
            generous_fuel,
            "plugin_trap",
        ),
        (
            "unreachable",
            trap(),
            PluginQuotas::default(),
            "plugin_trap",
        ),
        (
            "1 MB of headers",
            huge_headers(),
            PluginQuotas::default(),
            "plugin_invalid_output",
        ),
    ];
    let good = example_plugin("add-header");
    for (what, wat, quotas, code) in cases {
        // A well-behaved plugin runs concurrently with the hostile one and is unaffected.
        let root = request("/", &[]);
        let (bad, ok) = tokio::join!(
            run_request(&rt, wat.as_slice(), quotas, &[], &root),
            async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                run_request(&rt, &good, PluginQuotas::default(), &[], &request("/", &[])).await
            }
        );
        let err = bad.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err}");
        assert_eq!(err.plugin(), "p");
        assert!(ok.is_ok(), "{what}: the neighbour failed: {ok:?}");
    }
    let text = metrics.render();
    assert!(
        text.contains(r#"outcome="timeout""#) && text.contains(r#"outcome="fuel_exhausted""#),
        "{text}"
    );
    assert_eq!(
        metrics.plugin_instances_in_use.get(),
        0,
        "every instance was released"
    );
}

#[tokio::test]
async fn timeout_yields_to_other_requests_on_one_thread() {
    // Current-thread runtime: the looping plugin must yield at epoch ticks for the other to run.
    let (rt, _) = runtime_in(None);
    let looping = PluginQuotas {
        fuel: u64::MAX / 4,
        deadline_ms: 300,
        ..PluginQuotas::default()
    };
    let started = std::time::Instant::now();
    let (spin, root) = (infinite_loop(), request("/", &[]));
    let (bad, ok) = tokio::join!(
        run_request(&rt, spin.as_slice(), looping, &[], &root),
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let r = run_request(
                &rt,
                &noop(),
                PluginQuotas::default(),
                &[],
                &request("/", &[]),
            )
            .await;
            (r, started.elapsed())
        }
    );
    assert_eq!(bad.unwrap_err().code(), "plugin_timeout");
    let (ok, at) = ok;
    ok.unwrap();
    assert!(
        at < Duration::from_millis(250),
        "the well-behaved request waited {at:?} behind the loop"
    );
}

#[tokio::test]
async fn tenant_instance_quota_is_enforced() {
    let (rt, _) = runtime_in(None);
    let compiled = rt.validate(&noop()).unwrap();
    let quotas = PluginQuotas {
        max_instances: 2,
        ..PluginQuotas::default()
    };
    let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
    let p: Arc<str> = "p".into();
    let inv = |t| Invocation {
        tenant: t,
        plugin: &p,
        quotas,
        config: config(&[]),
        outbound: Default::default(),
        request_body: None,
        capabilities: None,
    };
    let first = rt.instantiate(inv(&a), &compiled).await.unwrap();
    let _second = rt.instantiate(inv(&a), &compiled).await.unwrap();
    // Over quota, a request waits (up to plugins.queue_ms) for one of its tenant's own
    // instances to end, then gives up with plugin_capacity.
    let started = std::time::Instant::now();
    let third = rt.instantiate(inv(&a), &compiled).await;
    assert_eq!(third.err().map(|e| e.code()), Some("plugin_capacity"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Another tenant is not affected by a's quota being full.
    assert!(rt.instantiate(inv(&b), &compiled).await.is_ok());
    let (waiting, _) = tokio::join!(rt.instantiate(inv(&a), &compiled), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
    });
    assert!(waiting.is_ok(), "a slot frees when a request ends");
}

#[tokio::test]
async fn bad_uploads_are_refused_with_reasons() {
    let (rt, _) = runtime_in(None);
    let core_module = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not wasm at all".to_vec(), "not a WebAssembly component"),
        (
            example_plugin("add-header")[..100].to_vec(),
            "not a WebAssembly component",
        ),
        (core_module, "core wasm module"),
        (wasi_importer(), "wasi:filesystem"),
        (binary("(component)"), "on-request"),
        // Text is never compiled: uploads are binary components only.
        (b"(component)".to_vec(), "not a WebAssembly component"),
    ];
    for (bytes, expect) in cases {
        let err = rt.validate(&bytes).err().expect("refused");
        assert!(
            err.to_string().contains(expect),
            "expected {expect:?} in: {err}"
        );
    }
    let small = RuntimeSettings {
        max_plugin_bytes: 1000,
        ..RuntimeSettings::default()
    };
    let rt = PluginRuntime::new(small, None, Arc::new(Metrics::new())).unwrap();
    assert!(matches!(
        rt.validate(&example_plugin("add-header")),
        Err(RejectError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn a_chatty_plugin_writes_no_more_log_lines_than_its_tenants_quota() {
    use wharf_plugins::capabilities::Capabilities;
    let (rt, metrics) = runtime_in(None);
    let caps = Capabilities::new(Default::default(), metrics.clone(), 1 << 20).unwrap();
    let mut quotas = wharf_tenancy::Quotas::default();
    quotas.log.lines_per_request = 3;
    let compiled = rt.validate(&log_flood(50)).expect("valid plugin");
    let (tenant, plugin): (Arc<str>, Arc<str>) = ("chatty".into(), "p".into());
    for _ in 0..2 {
        let inv = Invocation {
            tenant: &tenant,
            plugin: &plugin,
            quotas: quotas.plugin,
            config: config(&[]),
            outbound: Default::default(),
            request_body: None,
            capabilities: Some(caps.tenant("chatty", &quotas)),
        };
        let mut instance = rt.instantiate(inv, &compiled).await.unwrap();
        instance.on_request(request("/", &[])).await.unwrap();
    }
    let count = |outcome| {
        metrics
            .plugin_logs_total
            .with_label_values(&["chatty", outcome])
            .get()
    };
    // Three lines per request, each request anew; the rest dropped and counted.
    assert_eq!((count("emitted"), count("dropped")), (6, 94));
}
