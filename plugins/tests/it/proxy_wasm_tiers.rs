//! A proxy-wasm module's two compiles (docs/proxy-wasm.md, "Upload until served"): an upload
//! comes back with baseline (Winch) code, which serves a Higress Go plugin's requests at once;
//! the optimized (Cranelift) code replaces it in the background, in memory and on disk (a node
//! restarting loads the optimized code and compiles nothing). Baseline code runs under the same
//! limits as optimized code: a module spinning forever is stopped at its deadline, one growing
//! its memory past the tenant's quota is refused, and another tenant's VM goes on meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_metrics::Metrics;
use wharf_plugins::cache::Tier;
use wharf_plugins::proxy_wasm::pool::VmConfigs;
use wharf_plugins::types::{HeaderOp, RequestAction};
use wharf_plugins::{
    CompiledPlugin, Failure, Invocation, PluginQuotas, PluginRuntime, RuntimeSettings,
};

fn higress(name: &str) -> Vec<u8> {
    let dir = std::env::var("WHARF_HIGRESS_DIR").expect(
        "WHARF_HIGRESS_DIR: run the suite with scripts/test, which downloads the Higress plugins",
    );
    std::fs::read(format!("{dir}/{name}.wasm")).unwrap()
}

fn runtime_in(dir: &std::path::Path) -> (Arc<PluginRuntime>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let settings = RuntimeSettings {
        max_instances: 16,
        // The WAT modules below are small: baseline code for them too.
        baseline_min_bytes: 0,
        // Sweeps remove what is not needed at once (the default waits an hour).
        compiled_disk_grace_s: 0,
        ..RuntimeSettings::default()
    };
    let rt = PluginRuntime::new(settings, Some(dir), metrics.clone()).unwrap();
    (rt, metrics)
}

fn compiles(m: &Metrics, compiler: &str) -> u64 {
    m.plugin_compiles_total.with_label_values(&[compiler]).get()
}

/// One request's headers through tenant `tenant`'s VM of `plugin`: the headers it added.
async fn request(
    rt: &Arc<PluginRuntime>,
    tenant: &str,
    plugin: &Arc<CompiledPlugin>,
    config: &[u8],
    quotas: PluginQuotas,
) -> Result<Vec<(String, String)>, Failure> {
    let (tenant, name): (Arc<str>, Arc<str>) = (tenant.into(), "set-header".into());
    let inv = Invocation {
        tenant: &tenant,
        plugin: &name,
        quotas,
        config: Default::default(),
        outbound: Arc::from(Vec::new()),
        request_body: None,
        capabilities: None,
    };
    let mut stream = rt.proxy_wasm(inv, plugin, VmConfigs::new(Vec::new(), config.to_vec()));
    for (k, v) in [
        ("route_name", "orders"),
        ("cluster_name", "outbound|80||orders"),
    ] {
        stream.properties.insert(k.into(), v.as_bytes().to_vec());
    }
    let pairs = [
        (":authority", "shop.test"),
        (":path", "/orders/7"),
        (":method", "GET"),
        (":scheme", "http"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    let action = stream.on_request(pairs, true).await.map_err(|e| e.failure);
    stream.finish().await;
    match action? {
        RequestAction::Continue(edits) => Ok(edits
            .headers
            .into_iter()
            .filter_map(|op| match op {
                HeaderOp::Set(h) | HeaderOp::Append(h) => {
                    Some((h.name, String::from_utf8_lossy(&h.value).into_owned()))
                }
                HeaderOp::Remove(_) => None,
            })
            .collect()),
        RequestAction::Respond(reply) => panic!("a reply: {}", reply.status),
    }
}

const CONFIG: &[u8] = br#"{"routeNameHeader": "x-route-name", "enableOnPathPrefix": ["/orders"]}"#;

fn quotas() -> PluginQuotas {
    PluginQuotas {
        // A debug build on a shared CI machine: generous, the limits are tested below.
        deadline_ms: 5_000,
        memory_bytes: 64 << 20,
        ..PluginQuotas::default()
    }
}

#[tokio::test]
async fn a_go_module_serves_from_baseline_code_then_from_optimized_code_also_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("wharf-tiers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = higress("gpustack-set-header-pre-route");
    let (rt, metrics) = runtime_in(&dir);

    let started = Instant::now();
    let first = rt.compile(Some("t1"), bytes.clone()).await.unwrap();
    let baseline_took = started.elapsed();
    assert_eq!(first.tier, Tier::Baseline);
    let served = request(&rt, "t1", &first, CONFIG, quotas()).await.unwrap();
    // The optimizer has not finished: what served was the baseline code.
    assert_eq!(
        compiles(&metrics, "cranelift"),
        0,
        "optimized before served"
    );
    assert!(
        served.contains(&("x-route-name".into(), "orders".into())),
        "{served:?}"
    );

    // The optimized code replaces it in the background.
    while compiles(&metrics, "cranelift") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "never optimized"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let optimized = rt.in_memory(&first.sha256).unwrap();
    assert_eq!(optimized.tier, Tier::Optimized);
    let optimized_took = started.elapsed();
    eprintln!("debug build: baseline code in {baseline_took:?}, optimized in {optimized_took:?}");
    assert!(first.superseded());
    // The optimizer wrote the baseline code to disk too, in Winch's own directory.
    let baseline_on_disk = std::fs::read_dir(&dir).unwrap().flatten().any(|d| {
        d.file_name().to_string_lossy().starts_with("winch-")
            && d.path().join(format!("{}.cwasm", first.sha256)).is_file()
    });
    assert!(baseline_on_disk);
    assert_eq!(compiles(&metrics, "winch"), 1);
    assert_eq!(compiles(&metrics, "cranelift"), 1);
    // A request holding the baseline plugin is handed the optimized one, in a new VM.
    let served = request(&rt, "t1", &first, CONFIG, quotas()).await.unwrap();
    assert!(served.contains(&("x-route-name".into(), "orders".into())));
    let served = request(&rt, "t1", &optimized, CONFIG, quotas())
        .await
        .unwrap();
    assert!(served.contains(&("x-route-name".into(), "orders".into())));
    assert_eq!(metrics.plugin_vms.get(), 1, "the baseline VM is gone");
    drop((first, optimized, rt));

    // A restart finds the optimized code on disk: no compile.
    let (rt, metrics) = runtime_in(&dir);
    let again = rt.compile(Some("t2"), bytes.clone()).await.unwrap();
    assert_eq!(again.tier, Tier::Optimized);
    assert_eq!(
        compiles(&metrics, "winch") + compiles(&metrics, "cranelift"),
        0
    );
    let served = request(&rt, "t2", &again, CONFIG, quotas()).await.unwrap();
    assert!(served.contains(&("x-route-name".into(), "orders".into())));

    // The baseline code is dead weight once the optimized code is on disk: the sweep takes it
    // (the plugin's version is still in the store), and the optimized code stays.
    let winch_files = || -> usize {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().starts_with("winch-"))
            .map(|d| std::fs::read_dir(d.path()).unwrap().count())
            .sum()
    };
    assert_eq!(winch_files(), 3, "artifact, digest, footprint");
    let swept = rt.sweep_compiled_disk(&std::collections::HashSet::from([again.sha256.clone()]));
    assert_eq!((swept.files, winch_files()), (3, 0), "{swept:?}");
    assert!(swept.kept_bytes > 1 << 20, "{swept:?}");
    drop((again, rt));
    let (rt, metrics) = runtime_in(&dir);
    assert_eq!(
        rt.compile(Some("t3"), bytes).await.unwrap().tier,
        Tier::Optimized
    );
    assert_eq!(
        compiles(&metrics, "cranelift"),
        0,
        "the optimized code stayed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A raw proxy-wasm module whose request callback is `body`.
fn module(body: &str) -> Vec<u8> {
    wharf_plugins::test_support::binary(&format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 8192))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) {body}))"#
    ))
}

#[tokio::test]
async fn baseline_code_runs_under_the_same_deadline_fuel_and_memory_quota() {
    let dir = std::env::temp_dir().join(format!("wharf-tiers-limits-{}", std::process::id()));
    let (rt, _) = runtime_in(&dir);
    // `validate` compiles on the caller's thread and queues no optimization: baseline only.
    let spin = rt
        .validate(&module("(loop $l (br $l)) (i32.const 0)"))
        .unwrap();
    let grow = rt
        .validate(&module(
            "(block $no (loop $more (br_if $no (i32.eq (memory.grow (i32.const 16)) (i32.const -1))) (br $more))) unreachable",
        ))
        .unwrap();
    let fine = rt.validate(&module("(i32.const 0)")).unwrap();
    for p in [&spin, &grow, &fine] {
        assert_eq!(p.tier, Tier::Baseline);
    }
    let tight = PluginQuotas {
        deadline_ms: 50,
        memory_bytes: 4 << 20,
        ..PluginQuotas::default()
    };

    // The spinner, on another tenant's VM, while tenant "calm" keeps being served.
    let spinning = {
        let (rt, spin) = (rt.clone(), spin.clone());
        tokio::spawn(async move { request(&rt, "noisy", &spin, b"", tight).await })
    };
    let mut calm = Vec::new();
    while !spinning.is_finished() {
        let started = Instant::now();
        assert!(request(&rt, "calm", &fine, b"", tight).await.is_ok());
        calm.push(started.elapsed());
    }
    let failure = spinning.await.unwrap().unwrap_err();
    assert!(
        matches!(
            failure,
            Failure::Timeout { .. } | Failure::FuelExhausted { .. }
        ),
        "{failure:?}"
    );
    assert!(!calm.is_empty(), "the other tenant was served meanwhile");

    let failure = request(&rt, "noisy", &grow, b"", tight).await.unwrap_err();
    assert!(
        matches!(failure, Failure::MemoryLimit { .. } | Failure::Trap(_)),
        "{failure:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
