//! A hostile plugin reading what the last request left in its pool slot. Instances of the same
//! code reuse the same slots (the pool's affinity), across requests and tenants, and a full pool
//! hands one code's slot to another; each instance must start fresh: memory, data segment,
//! globals, table and memory size as compiled.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::{get_request, memory_scatter, memory_snoop, table_snoop};
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
    snoop_then(rt, compiled, tenant, || {}).await
}

/// [`snoop`], running `before_drop` once its secrets are written and checked, while its instance
/// still holds the slot.
async fn snoop_then(
    rt: &PluginRuntime,
    compiled: &Arc<CompiledPlugin>,
    tenant: &str,
    before_drop: impl FnOnce(),
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
    before_drop();
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

/// A plugin that leaves more separate dirty runs than the pool's page scan takes in one call, and
/// more written pages than the pool keeps resident (320 pages apart from each other): every one
/// of them is reset, in place or decommitted, before the next instance, another tenant's, runs in
/// the slot.
#[tokio::test(flavor = "current_thread")]
async fn a_plugin_that_dirties_many_separate_pages_finds_them_all_reset() {
    let rt = pooled(2);
    let compiled = rt.validate(&memory_scatter()).expect("valid plugin");
    for i in 0..60 {
        let tenant = if i % 2 == 0 { "alpha" } else { "beta" };
        if let Err(e) = snoop(&rt, &compiled, tenant).await {
            panic!("request {i} ({tenant}) found what the last one left: {e}");
        }
    }
}

/// The kernel may swap a written page out while its instance lives (memory pressure on the node),
/// or move it (compaction); the reset at drop must still find it. Each request's secrets (in its
/// memory, and functions in its table) are pushed out to swap (`MADV_PAGEOUT` on this runtime's
/// pools) before its instance drops, and the next request, another tenant's, probes the slot.
/// Needs swap: `scripts/test` turns on a swap file for the run when the machine has none;
/// elsewhere the test says it did not run (or fails, with `WHARF_TEST_SWAP=required`).
#[tokio::test(flavor = "current_thread")]
async fn a_page_swapped_out_before_the_reset_is_reset_too() {
    if !swap::usable() {
        return;
    }
    let before = swap::mappings();
    let rt = pooled(2);
    let pools = swap::added_since(&before);
    let snoops = [memory_snoop(b'A'), table_snoop()];
    for (which, bytes) in ["memory", "table"].into_iter().zip(snoops) {
        let compiled = rt.validate(&bytes).expect("valid plugin");
        let mut swapped = 0;
        for i in 0..12 {
            let tenant = if i % 2 == 0 { "alpha" } else { "beta" };
            let outcome =
                snoop_then(&rt, &compiled, tenant, || swapped += swap::page_out(&pools)).await;
            if let Err(e) = outcome {
                panic!("{which} snoop, request {i} ({tenant}) found what the last one left: {e}");
            }
        }
        assert!(
            swapped > 0,
            "nothing was swapped out: the test showed nothing"
        );
    }
}

/// Pushing a pool's pages out to swap, as memory pressure would.
// One `madvise` call: advice to the kernel about this process's own pages.
#[allow(unsafe_code)]
mod swap {
    /// Whether swap is on. When it is not: `false` after saying so, or a panic when
    /// `WHARF_TEST_SWAP=required` (the test suite's own run, which turned it on).
    pub(super) fn usable() -> bool {
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        if swaps.lines().count() > 1 {
            return true;
        }
        assert!(
            std::env::var("WHARF_TEST_SWAP").as_deref() != Ok("required"),
            "WHARF_TEST_SWAP=required but no swap is on (/proc/swaps)"
        );
        eprintln!("no swap on this machine: the swapped-page reset test did not run");
        false
    }

    /// This process's mappings: start, end, permissions.
    pub(super) fn mappings() -> Vec<(usize, usize, String)> {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        maps.lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (range, perms) = (fields.next()?, fields.next()?);
                let (s, e) = range.split_once('-')?;
                let at = |h| usize::from_str_radix(h, 16).ok();
                Some((at(s)?, at(e)?, perms.to_string()))
            })
            .collect()
    }

    /// The mappings added since `before` (not within one of them): a runtime's pools, reserved
    /// when it starts (and whatever else the process mapped meanwhile, which loses nothing by
    /// being paged out).
    pub(super) fn added_since(before: &[(usize, usize, String)]) -> Vec<(usize, usize)> {
        mappings()
            .into_iter()
            .filter(|&(s, e, _)| !before.iter().any(|&(bs, be, _)| bs <= s && e <= be))
            .map(|(s, e, _)| (s, e))
            .collect()
    }

    /// Asks the kernel to reclaim now (`MADV_PAGEOUT`, Linux 5.4+) every writable page within
    /// `pool`'s address ranges; returns how many kB of the process are in swap afterwards.
    pub(super) fn page_out(pool: &[(usize, usize)]) -> u64 {
        for (s, e, perms) in mappings() {
            let inside = pool.iter().any(|&(ps, pe)| ps <= s && e <= pe);
            if inside && perms.starts_with("rw") {
                // SAFETY: advice only; MADV_PAGEOUT moves pages, never changes what they hold.
                unsafe { libc::madvise(s as *mut libc::c_void, e - s, libc::MADV_PAGEOUT) };
            }
        }
        wharf_tenancy::test_support::process_status_kib("VmSwap")
    }
}
