//! `wharf plugin test` for a proxy-wasm module: one request's stream through its VM, printed
//! as it happens, with the properties and configuration the gateway would give it.

use std::sync::Arc;

use anyhow::Context;
use wharf_plugins::proxy_wasm::abi::Pairs;
use wharf_plugins::proxy_wasm::pool::{
    Properties, ProxyStream, RequestStep, ResponseStep, VmConfigs,
};
use wharf_plugins::proxy_wasm::properties::{self, RequestFacts};
use wharf_plugins::proxy_wasm::translate;
use wharf_plugins::types::{Header, Request, ResponseAction};
use wharf_plugins::{Invocation, PluginError, PluginRuntime};

use super::{headers, preview, print_ops, print_request_action, TestArgs};

/// A proxy-wasm module: one request's stream through its VM, as the gateway runs it (the
/// request as Envoy gives it, the properties the gateway answers), then its teardown.
pub(super) async fn exercise_proxy_wasm(
    runtime: &Arc<PluginRuntime>,
    inv: Invocation<'_>,
    compiled: &Arc<wharf_plugins::CompiledPlugin>,
    configs: VmConfigs,
    request: Request,
    a: &TestArgs,
    body: (Vec<u8>, u64),
) -> Result<(), PluginError> {
    let plugin = inv.plugin.to_string();
    let mut stream = runtime.proxy_wasm(inv, compiled, configs);
    let headers = header_map(&request.headers);
    stream.properties = proxy_properties(&request, &headers, &plugin);
    println!("→ {} {}", request.method, request.path);
    let pairs = translate::request_pairs(&request.method, &request.path, "http", &headers);
    let result = proxy_wasm_phases(&mut stream, pairs, a, body).await;
    stream.finish().await;
    result
}

async fn proxy_wasm_phases(
    stream: &mut ProxyStream,
    pairs: Pairs,
    a: &TestArgs,
    (body, max): (Vec<u8>, u64),
) -> Result<(), PluginError> {
    let action = match stream
        .on_request_headers(pairs, a.body.is_none(), true)
        .await?
    {
        RequestStep::Action(action) => action,
        // As the gateway does: the body read whole, then the body callback with the headers
        // still the module's to edit.
        RequestStep::AwaitsBody if body.len() as u64 > max => {
            println!("✗ 413 request_body_too_large: the plugin pauses for the body, which is over plugin_body_max_bytes");
            return Ok(());
        }
        RequestStep::AwaitsBody => {
            println!(
                "… the plugin pauses the request headers for the body ({} bytes)",
                body.len()
            );
            let (action, replaced) = stream.on_held_body(body, max).await?;
            if let Some(b) = replaced {
                println!("  body replaced ({} bytes): {}", b.len(), preview(&b));
            }
            action
        }
    };
    if !print_request_action(&action, "proxy_send_local_response; ") {
        return Ok(());
    }
    if !stream.has_response_phase() {
        println!("  (no proxy_on_response_headers: no response phase)");
        return Ok(());
    }
    let resp_headers = header_map(&headers(&a.response_headers).unwrap_or_default());
    println!("→ upstream answers {}", a.response_status);
    stream.properties.insert(
        "response.code".into(),
        a.response_status.to_string().into_bytes(),
    );
    let step = stream
        .on_response(
            translate::response_pairs(a.response_status, &resp_headers),
            false,
        )
        .await?;
    let ResponseAction { status, headers } = match step {
        ResponseStep::Action(action) => action,
        ResponseStep::Reply(reply) => {
            println!("✓ answers instead of the upstream: {}", reply.status);
            return Ok(());
        }
        // Not asked for (no body to wait for here).
        ResponseStep::Held => return Ok(()),
    };
    match status {
        Some(s) => println!("✓ response status set to {s}"),
        None => println!("✓ response passes"),
    }
    print_ops(&headers);
    Ok(())
}

/// What `proxy_get_property` answers, as the gateway fills it, for tenant and route `local`.
fn proxy_properties(request: &Request, headers: &http::HeaderMap, plugin: &str) -> Properties {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    properties::of_request(&RequestFacts {
        path: &request.path,
        method: &request.method,
        host,
        scheme: "http",
        protocol: "HTTP/1.1",
        request_id: "local",
        client_addr: &request.client_addr,
        plugin,
        tenant: "local",
        route: "local",
    })
}

fn header_map(list: &[Header]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for h in list {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(&h.value),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// A proxy-wasm configuration's bytes, as an attachment's JSON gives them (a string is its
/// text, anything else compact JSON): one JSON value, or KEY=VALUE pairs as an object.
pub(super) fn proxy_config(list: &[String], flag: &str) -> anyhow::Result<Vec<u8>> {
    if let [one] = list {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(one) {
            return Ok(wharf_tenancy::proxy_config::ProxyConfig(v).bytes());
        }
    }
    let mut object = serde_json::Map::new();
    for kv in list {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("{flag} {kv:?}: give one JSON value or KEY=VALUE pairs"))?;
        object.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    if object.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::Value::Object(object).to_string().into_bytes())
}
