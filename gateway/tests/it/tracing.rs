//! OpenTelemetry traces, received by a small OTLP/HTTP (JSON) receiver in the test: a span per
//! request continuing the client's `traceparent`, child spans for the plugin phases and host
//! calls, and the trace carried on to the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;
use axum::routing::post;
use serde_json::Value;
use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::OnError;

#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attrs: BTreeMap<String, String>,
}

fn spans_of(batches: &[Value]) -> Vec<Span> {
    let mut out = Vec::new();
    for b in batches {
        for rs in b["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attrs = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let v = &a["value"];
                            let text = v["stringValue"]
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string());
                            (a["key"].as_str().unwrap_or_default().to_string(), text)
                        })
                        .collect();
                    out.push(Span {
                        name: s["name"].as_str().unwrap_or_default().to_string(),
                        trace_id: s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                        span_id: s["spanId"].as_str().unwrap_or_default().to_lowercase(),
                        parent: s["parentSpanId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase(),
                        attrs,
                    });
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_plugin_and_host_call_spans_form_one_trace() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    sink.lock().push(v);
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    store
        .create_tenant("acme", "Acme", &["acme.test"])
        .await
        .unwrap();
    relaxed(&store, "acme").await;
    store
        .put_route("acme", route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    let plugin = example_plugin("redis-rate-limit");
    attach_plugin(
        &store,
        "acme",
        "api",
        "limit",
        &plugin,
        &[],
        OnError::FailClosed,
    )
    .await;
    let toml = format!(
        "redis = \"{}\"\notlp_endpoint = \"http://{collector}\"",
        redis_url()
    );
    let gw = Wharf::start_configured(&url, &toml, &[]).await;

    let (trace, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let tp = format!("00-{trace}-{client_span}-01");
    let r = gw
        .request(
            "GET",
            "acme.test",
            "/",
            &[("traceparent", tp.as_str()), ("x-api-key", "k")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    // Batches leave every few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = spans_of(&received.lock());
        let done = spans
            .iter()
            .any(|s| s.name == "request" && s.trace_id == trace)
            && spans
                .iter()
                .any(|s| s.name == "host_call" && s.trace_id == trace);
        if done {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "no complete trace received; got {spans:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let find = |name: &str| {
        in_trace
            .iter()
            .find(|s| s.name == name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} span in {in_trace:?}"))
    };
    let request = find("request");
    assert_eq!(
        request.parent, client_span,
        "the request span continues the client's trace"
    );
    assert_eq!(
        request.attrs.get("tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(request.attrs.get("route").map(String::as_str), Some("api"));
    let plugins = in_trace
        .iter()
        .find(|s| s.name == "plugins" && s.parent == request.span_id)
        .expect("plugins span under request");
    let plugin = in_trace
        .iter()
        .find(|s| s.name == "plugin" && s.parent == plugins.span_id)
        .expect("plugin span under plugins");
    assert_eq!(
        plugin.attrs.get("plugin").map(String::as_str),
        Some("limit")
    );
    let host = in_trace
        .iter()
        .find(|s| s.name == "host_call" && s.parent == plugin.span_id)
        .expect("host call under its plugin");
    assert_eq!(
        host.attrs.get("function").map(String::as_str),
        Some("redis.command")
    );
    assert_eq!(host.attrs.get("outcome").map(String::as_str), Some("ok"));

    // The upstream sees Wharf's request span as its parent, in the same trace.
    let upstream_tp = r.json["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(upstream_tp.contains(trace), "{upstream_tp}");
    assert!(
        upstream_tp.contains(&request.span_id),
        "{upstream_tp} should name span {}",
        request.span_id
    );
}
