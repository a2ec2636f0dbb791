//! `wharf plugin test`: runs a plugin on one request, in this process, with the runtime, limits
//! and capabilities the gateway gives it (fuel, deadline, memory, the tenant's default quotas or
//! those given), without a gateway or a store, and prints what it did: the request edits or its
//! reply, the response edits, fuel and time used, or the error the gateway would answer. Its logs
//! go to stderr as the gateway's log would carry them. Redis and SQL go to the URLs given
//! (`--redis`, `--sql`), else answer `backend-unavailable`. A proxy-wasm module runs as a
//! request's stream through its VM (`PluginRuntime::proxy_wasm`), its `--config` the plugin
//! configuration `proxy_on_configure` reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use wharf_plugins::capabilities::Capabilities;
use wharf_plugins::proxy_wasm::pool::VmConfigs;
use wharf_plugins::types::{Header, HeaderOp, Request, RequestAction, Response, ResponseAction};
use wharf_plugins::{Invocation, PluginError, PluginInstance, PluginRuntime};
use wharf_tenancy::outbound::OutboundHost;
use wharf_tenancy::Quotas;

use crate::bootstrap::Bootstrap;
use proxy_wasm::{exercise_proxy_wasm, proxy_config};

/// What to run the plugin on (the `wharf plugin test` flags).
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The plugin: a .wasm component, or a folder holding plugin.wasm.
    pub plugin: PathBuf,
    /// The request line, METHOD PATH.
    #[arg(long, default_value = "GET /")]
    pub request: String,
    /// A request header, "name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The request body; @FILE reads it from a file.
    #[arg(long)]
    pub body: Option<String>,
    /// The attachment's config, KEY=VALUE (repeatable); for a proxy-wasm module its
    /// plugin_config, as JSON (or KEY=VALUE pairs, a JSON object of strings).
    #[arg(long = "config")]
    pub config: Vec<String>,
    /// A proxy-wasm module's vm_config, as JSON (what `proxy_on_vm_start` reads).
    #[arg(long = "vm-config")]
    pub vm_config: Option<String>,
    /// A destination the plugin may call (allowed_outbound_hosts; repeatable).
    #[arg(long = "allow-outbound")]
    pub allowed_outbound_hosts: Vec<String>,
    /// The upstream's status, for the response phase.
    #[arg(long, default_value_t = 200)]
    pub response_status: u16,
    /// An upstream response header, "name: value" (repeatable).
    #[arg(long = "response-header")]
    pub response_headers: Vec<String>,
    /// A tenant quota, NAME=VALUE (repeatable), e.g. plugin_fuel=1000000.
    #[arg(long = "quota")]
    pub quotas: Vec<String>,
    /// Redis for the plugin's redis calls (redis://…).
    #[arg(long)]
    pub redis: Option<String>,
    /// SQL for the plugin's sql calls: sqlite (a file in a temporary folder), postgres://… or
    /// mysql://….
    #[arg(long)]
    pub sql: Option<String>,
    /// Internal ranges the plugin may call (egress_allow, CIDR; repeatable).
    #[arg(long = "egress-allow")]
    pub egress_allow: Vec<String>,
}

/// Runs it; `Ok(false)` when the plugin failed (its error is printed).
pub async fn run(a: TestArgs) -> anyhow::Result<bool> {
    let path = if a.plugin.is_dir() {
        a.plugin.join("plugin.wasm")
    } else {
        a.plugin.clone()
    };
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    // A project is named after its folder, as `wharf plugin new` named it.
    let named = if a.plugin.is_dir() {
        a.plugin.canonicalize().ok()
    } else {
        Some(path.with_extension(""))
    };
    let name: Arc<str> = named
        .as_deref()
        .and_then(|p| p.file_name())
        .map_or("plugin".into(), |s| s.to_string_lossy().into());
    let quotas = quotas(&a.quotas)?;
    let scratch = std::env::temp_dir().join(format!("wharf-plugin-test-{}", std::process::id()));
    let mut boot = Bootstrap {
        data_dir: scratch.clone(),
        egress_allow: a.egress_allow.clone(),
        ..Bootstrap::default()
    };
    boot.redis.url = a.redis.clone();
    boot.sql = a.sql.clone().unwrap_or_else(|| "none".into());
    let metrics = Arc::new(wharf_metrics::Metrics::new());
    let caps = Capabilities::new(
        boot.capability_settings()?,
        metrics.clone(),
        boot.host_result_budget_bytes,
    )?;
    let runtime = PluginRuntime::new(boot.plugins.clone(), None, metrics)?;
    let compiled = match runtime.validate(&bytes) {
        Ok(c) => c,
        Err(e) => bail!(
            "an upload of {} would be refused (422): {e}",
            path.display()
        ),
    };
    let proxy = matches!(wharf_plugins::proxy_wasm::inspect(&bytes), Ok(Some(_)));
    let request = request(&a)?;
    let body = match &a.body {
        Some(b) => match b.strip_prefix('@') {
            Some(file) => std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
            None => b.as_bytes().to_vec(),
        },
        None => Vec::new(),
    };
    if compiled.reads_body && body.len() as u64 > quotas.plugin.body_max_bytes {
        println!("✗ 413 request_body_too_large: the body is over plugin_body_max_bytes; the plugin does not run");
        return Ok(false);
    }
    let tenant: Arc<str> = "local".into();
    let inv = Invocation {
        tenant: &tenant,
        plugin: &name,
        quotas: quotas.plugin,
        config: wharf_plugins::attachment_config(if proxy {
            BTreeMap::new()
        } else {
            config(&a.config)?
        }),
        outbound: a
            .allowed_outbound_hosts
            .iter()
            .map(|h| OutboundHost::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .context("--allow-outbound")?
            .into(),
        request_body: compiled.reads_body.then(|| body.clone().into()),
        capabilities: Some(caps.tenant(&tenant, &quotas)),
    };
    let started = Instant::now();
    let outcome = if proxy {
        let configs = VmConfigs::new(
            proxy_config(a.vm_config.as_slice(), "--vm-config")?,
            proxy_config(&a.config, "--config")?,
        );
        let body = (body, quotas.plugin.body_max_bytes);
        exercise_proxy_wasm(&runtime, inv, &compiled, configs, request, &a, body)
            .await
            .map(|()| None)
    } else {
        exercise(&runtime, inv, &compiled, request, &a)
            .await
            .map(Some)
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match outcome {
        Ok(Some(fuel)) => {
            println!("  fuel used {fuel}, {ms:.2} ms (wall time, compile excluded)");
            Ok(true)
        }
        Ok(None) => {
            println!("  {ms:.2} ms (wall time, compile excluded, the VM's start included)");
            Ok(true)
        }
        Err(e) => {
            println!(
                "✗ the gateway would answer {} {}: {e}",
                e.status(),
                e.code()
            );
            Ok(false)
        }
    }
}

/// Both phases, printed as they happen; the fuel the instance used.
async fn exercise(
    runtime: &PluginRuntime,
    inv: Invocation<'_>,
    compiled: &Arc<wharf_plugins::CompiledPlugin>,
    request: Request,
    a: &TestArgs,
) -> Result<u64, PluginError> {
    let mut instance = runtime.instantiate(inv, compiled).await?;
    println!("→ {} {}", request.method, request.path);
    let action = instance.on_request(request).await?;
    if print_request_action(&action, "") {
        if let Some(body) = instance.take_request_body() {
            println!("  body replaced ({} bytes): {}", body.len(), preview(&body));
        }
        response_phase(&mut instance, a).await?;
    }
    Ok(instance.fuel_consumed())
}

/// Prints what the request phase decided; true if the request goes on to the upstream. `how`:
/// how the plugin answers itself, when it does, if it says.
fn print_request_action(action: &RequestAction, how: &str) -> bool {
    match action {
        RequestAction::Respond(reply) => {
            println!(
                "← the plugin answers {} itself ({how}the upstream is not called)",
                reply.status
            );
            print_headers("  ", &reply.headers);
            println!("  body: {}", preview(&reply.body));
            false
        }
        RequestAction::Continue(edits) => {
            println!("✓ continues to the upstream");
            print_ops(&edits.headers);
            if let Some(path) = &edits.path {
                println!("  path rewritten to {path}");
            }
            true
        }
    }
}

async fn response_phase(instance: &mut PluginInstance, a: &TestArgs) -> Result<(), PluginError> {
    if !instance.has_response_phase() {
        println!("  (a request filter: no response phase)");
        return Ok(());
    }
    let resp = Response {
        status: a.response_status,
        headers: headers(&a.response_headers).unwrap_or_default(),
    };
    println!("→ upstream answers {}", resp.status);
    let ResponseAction { status, headers } = instance.on_response(resp).await?;
    match status {
        Some(s) => println!("✓ response status set to {s}"),
        None => println!("✓ response passes"),
    }
    print_ops(&headers);
    Ok(())
}

fn request(a: &TestArgs) -> anyhow::Result<Request> {
    let (method, path) = a
        .request
        .split_once(' ')
        .context("--request: give METHOD PATH, like 'GET /users?id=7'")?;
    Ok(Request {
        method: method.trim().to_ascii_uppercase(),
        path: path.trim().to_string(),
        headers: headers(&a.headers).context("-H")?,
        client_addr: "127.0.0.1".into(),
        tenant_id: "local".into(),
        route_id: "local".into(),
    })
}

fn headers(list: &[String]) -> anyhow::Result<Vec<Header>> {
    list.iter()
        .map(|h| {
            let (n, v) = h
                .split_once(':')
                .with_context(|| format!("{h:?} is not \"name: value\""))?;
            Ok(Header {
                name: n.trim().to_ascii_lowercase(),
                value: v.trim().as_bytes().to_vec(),
            })
        })
        .collect()
}

fn config(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    list.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--config {kv:?} is not KEY=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The tenant's default quotas with the ones given, checked as the admin API checks them.
fn quotas(list: &[String]) -> anyhow::Result<Quotas> {
    let mut updates = serde_json::Map::new();
    for kv in list {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--quota {kv:?} is not NAME=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
        updates.insert(k.to_string(), value);
    }
    Ok(Quotas::default().patched(&serde_json::Value::Object(updates))?)
}

fn print_ops(ops: &[HeaderOp]) {
    for op in ops {
        match op {
            HeaderOp::Set(h) => println!("  set {}: {}", h.name, preview(&h.value)),
            HeaderOp::Append(h) => println!("  append {}: {}", h.name, preview(&h.value)),
            HeaderOp::Remove(n) => println!("  remove {n}"),
        }
    }
}

fn print_headers(indent: &str, headers: &[Header]) {
    for h in headers {
        println!("{indent}{}: {}", h.name, preview(&h.value));
    }
}

/// Bytes as text, cut to a line's worth.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}… ({} bytes)", &text[..i], bytes.len()),
        None => text.into_owned(),
    }
}

mod proxy_wasm;
#[cfg(test)]
mod tests;
