//! A hostile plugin reading what the last request left in its pool slot. Instances of the same
//! code reuse the same slots (the pool's affinity), across requests and tenants, and a full pool
//! hands one code's slot to another; each instance must start fresh: memory, data segment,
//! globals, table and memory size as compiled.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::{get_request, memory_snoop};
use wharf_plugins::types::{RequestAction, Response};
use wharf_plugins::{
    CompiledPlugin, Invocation, PluginError, PluginQuotas, PluginRuntime, RuntimeSettings,
};

/// A runtime on the pooling allocator (what a node runs, and what these tests are about).
fn pooled(max_instances: u32) -> Arc<PluginRuntime> {
    let settings = RuntimeSettings {
        max_instances,
        ..RuntimeSettings::default()
    };
    let rt = PluginRuntime::new(settings, None, Arc::new(Metrics::new())).expect("runtime");
    assert!(rt.pooled(), "the pool could not be reserved");
    rt
}

/// One request through `memory_snoop` as `tenant`: `on-request` (traps on another instance's
/// leftovers, then writes its own secrets), then `on-response` (traps unless they are there).
async fn snoop(
    rt: &PluginRuntime,
    compiled: &Arc<CompiledPlugin>,
    tenant: &str,
) -> Result<(), PluginError> {
    let tenant: Arc<str> = tenant.into();
    let plugin: Arc<str> = "snoop".into();
    let inv = Invocation {
        tenant: &tenant,
        plugin: &plugin,
        quotas: PluginQuotas::default(),
        config: Default::default(),
        outbound: Default::default(),
        request_body: None,
        capabilities: None,
    };
    let mut instance = rt.instantiate(inv, compiled).await?;
    let action = instance.on_request(get_request("/", &[], &tenant)).await?;
    assert!(matches!(action, RequestAction::Continue(_)));
    let resp = Response {
        status: 200,
        headers: vec![],
    };
    instance.on_response(resp).await?;
    Ok(())
}

/// 200 requests one after another, alternating between two tenants running the same bytes
/// (so the same compiled code and the same pool slots), then rounds of 24 in flight at once
/// (several slots in use and freed out of order). No instance sees another's memory.
#[tokio::test(flavor = "current_thread")]
async fn a_plugin_never_sees_what_the_last_request_left_in_its_slot() {
    let rt = pooled(32);
    let compiled = rt.validate(&memory_snoop(b'A')).expect("valid plugin");
    for i in 0..200 {
        let tenant = if i % 2 == 0 { "alpha" } else { "beta" };
        if let Err(e) = snoop(&rt, &compiled, tenant).await {
            panic!("request {i} ({tenant}): {e}");
        }
    }
    for round in 0..10 {
        let results = futures_util::future::join_all((0..24).map(|i| {
            let tenant = if i % 3 == 0 { "alpha" } else { "beta" };
            snoop(&rt, &compiled, tenant)
        }))
        .await;
        for (i, r) in results.into_iter().enumerate() {
            if let Err(e) = r {
                panic!("round {round}, request {i}: {e}");
            }
        }
    }
}

/// Six different snoops (six images) taking turns in a pool of 4 memory slots: each instance
/// gets a slot another module's instance wrote last, its image mapped in over what that one
/// left. None sees the other's secrets, nor its data or size.
#[tokio::test(flavor = "current_thread")]
async fn a_slot_another_plugin_wrote_last_is_fresh_too() {
    let rt = pooled(2);
    let snoops: Vec<_> = (b'A'..=b'F')
        .map(|data| rt.validate(&memory_snoop(data)).expect("valid plugin"))
        .collect();
    for i in 0..120 {
        let tenant = if i % 2 == 0 { "alpha" } else { "beta" };
        if let Err(e) = snoop(&rt, &snoops[i % snoops.len()], tenant).await {
            panic!("request {i} ({tenant}, snoop {}): {e}", i % snoops.len());
        }
    }
}
