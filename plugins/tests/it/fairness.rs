//! Fairness between tenants on the plugin threads, from the attacker's side: a tenant that keeps
//! every plugin thread busy with spinning plugins must not slow down, time out or fail another
//! tenant's plugins; waiting is never charged to a deadline; compiles are one per tenant.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_metrics::Metrics;
use wharf_plugins::test_support::*;
use wharf_plugins::types::{Header, Request};
use wharf_plugins::{
    CompiledPlugin, Invocation, PluginError, PluginQuotas, PluginRuntime, RejectError,
    RuntimeSettings,
};

fn runtime(threads: usize, queue_ms: u64) -> (Arc<PluginRuntime>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let settings = RuntimeSettings {
        max_instances: 256,
        threads,
        queue_ms,
        ..RuntimeSettings::default()
    };
    (
        PluginRuntime::new(settings, None, metrics.clone()).expect("runtime"),
        metrics,
    )
}

fn request() -> Request {
    Request {
        method: "GET".into(),
        path: "/".into(),
        headers: vec![Header {
            name: "host".into(),
            value: b"x.test".to_vec(),
        }],
        client_addr: "127.0.0.1".into(),
        tenant_id: "t".into(),
        route_id: "r".into(),
    }
}

async fn call(
    rt: &PluginRuntime,
    tenant: &str,
    compiled: &Arc<CompiledPlugin>,
    quotas: PluginQuotas,
) -> Result<(), PluginError> {
    let (tenant, plugin): (Arc<str>, Arc<str>) = (tenant.into(), "p".into());
    let inv = Invocation {
        quotas,
        ..invocation((&tenant, &plugin), &[])
    };
    let mut instance = rt.prepare(inv, compiled).await?;
    instance.on_request(request()).await.map(|_| ())
}

fn spinning() -> PluginQuotas {
    PluginQuotas {
        fuel: u64::MAX / 4,
        deadline_ms: 300,
        max_instances: 128,
        ..PluginQuotas::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_saturating_the_plugin_threads_does_not_slow_or_time_out_another() {
    let (rt, metrics) = runtime(2, 5_000);
    let spin = rt.validate(&infinite_loop()).unwrap();
    let noop = rt.validate(&noop()).unwrap();
    // Evil: 48 plugins spinning to their deadline, far more than there are plugin threads.
    let evil: Vec<_> = (0..48)
        .map(|_| {
            let (rt, spin) = (rt.clone(), spin.clone());
            tokio::spawn(async move { call(&rt, "evil", &spin, spinning()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Good: a 50 ms deadline. Waiting behind 48 spinners (queued in 1 ms slices) would blow it
    // if it were charged; only good's own running time is.
    let good_limits = PluginQuotas {
        deadline_ms: 50,
        ..PluginQuotas::default()
    };
    // Every call succeeds within its 50 ms of own time. (How long good waits in wall time is
    // measured, not asserted: `wharf-load noisy-neighbour`, docs/benchmarks.md.)
    for _ in 0..40 {
        call(&rt, "good", &noop, good_limits)
            .await
            .expect("good's plugin succeeds while evil spins");
    }
    for e in evil {
        let err = e.await.unwrap().expect_err("evil spins until stopped");
        assert!(
            matches!(err.code(), "plugin_timeout" | "plugin_capacity"),
            "{err}"
        );
    }
    let text = metrics.render();
    let cpu = |t: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("wharf_plugin_cpu_seconds_total{{tenant=\"{t}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        cpu("evil") > 0.3,
        "evil's CPU is accounted: {}",
        cpu("evil")
    );
    assert!(cpu("good") > 0.0 && cpu("good") < cpu("evil"));
    assert!(text.contains("wharf_plugin_yields_total{tenant=\"evil\"}"));
    assert_eq!(metrics.plugin_instances_in_use.get(), 0);
}

#[tokio::test]
async fn waiting_for_the_cpu_is_capped_and_reported_as_capacity_not_timeout() {
    // One plugin thread, a 40 ms queueing cap: twelve spinners of one tenant share the thread in
    // 1 ms slices, so each waits far longer than 40 ms before using its 1 s of own time.
    let (rt, _) = runtime(1, 40);
    let spin = rt.validate(&infinite_loop()).unwrap();
    let quotas = PluginQuotas {
        deadline_ms: 1_000,
        ..spinning()
    };
    let started = Instant::now();
    let runs: Vec<_> = (0..12)
        .map(|_| {
            let (rt, spin) = (rt.clone(), spin.clone());
            tokio::spawn(async move { call(&rt, "evil", &spin, quotas).await })
        })
        .collect();
    let mut codes = Vec::new();
    for r in runs {
        codes.push(r.await.unwrap().unwrap_err().code());
    }
    assert!(codes.contains(&"plugin_capacity"), "{codes:?}");
    // Without the cap they would need 12 x 1 s of CPU on one thread.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the queueing cap ended them early: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn fuel_exhausted_in_the_start_function_is_reported_as_fuel() {
    let (rt, _) = runtime(1, 1_000);
    let wat = wat_plugin("", "(func $spin (loop $l (br $l))) (start $spin)", 1);
    let compiled = rt.validate(wat.as_slice()).unwrap();
    let quotas = PluginQuotas {
        fuel: 10_000,
        deadline_ms: 5_000,
        ..PluginQuotas::default()
    };
    let err = call(&rt, "t", &compiled, quotas).await.unwrap_err();
    assert_eq!(err.code(), "plugin_fuel_exhausted", "{err}");
}

#[tokio::test]
async fn compiles_take_turns_between_tenants_and_a_tenant_may_queue_only_a_few() {
    let (rt, _) = runtime(1, 1_000);
    // Tenant a queues a big compile and then distinct small ones, up to its limit.
    let big = example_plugin("path-rewrite");
    let mut a_jobs = Vec::new();
    for i in 0..4 {
        let bytes = if i == 0 {
            big.clone()
        } else {
            wat_plugin(&format!("(drop (i32.const {i}))"), "", 1)
        };
        let rt = rt.clone();
        a_jobs.push(tokio::spawn(async move {
            rt.compile(Some("a"), bytes).await.map(|_| Instant::now())
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let over = rt.compile(Some("a"), trap()).await;
    assert!(
        matches!(over, Err(RejectError::Busy)),
        "a fifth queued compile of one tenant is refused: {:?}",
        over.err()
    );
    // Identical bytes join the compile already queued instead of counting again; tenant b's
    // compile is served in b's turn, not after all of a's queue.
    let (b, same) = tokio::join!(
        async {
            let r = rt.compile(Some("b"), noop()).await;
            (r, Instant::now())
        },
        rt.compile(Some("a"), big.clone())
    );
    let (b, b_done) = b;
    b.expect("b's compile succeeds");
    same.expect("the identical upload got the shared result");
    let mut a_done = Vec::new();
    for j in a_jobs {
        a_done.push(j.await.unwrap().expect("a's uploads compile"));
    }
    assert!(
        b_done <= a_done[3],
        "b waited for all of a's queued compiles"
    );
}

/// A component holding many core instances (32 here; Python components hold ~40) counts as the
/// pool slots it takes (8 core instances each), against its tenant's instance quota and the
/// node's pool: a tenant at its quota cannot take the pool's core instances from the others.
/// Counted as one instance each, two such instances filled this 8-slot pool's 64 core instances
/// and every other tenant's instantiation failed while they ran.
#[tokio::test]
async fn core_instance_heavy_plugins_are_charged_their_pool_slots() {
    let metrics = Arc::new(Metrics::new());
    let settings = RuntimeSettings {
        max_instances: 8,
        queue_ms: 200,
        ..RuntimeSettings::default()
    };
    let rt = PluginRuntime::new(settings, None, metrics).unwrap();
    let heavy = rt.validate(&core_instance_hog(31)).unwrap();
    assert_eq!(heavy.slots, 4, "32 core instances");
    let light = rt.validate(&noop()).unwrap();
    assert_eq!(light.slots, 1);
    let (a, b, p): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "p".into());
    let inv = |t, max_instances| Invocation {
        tenant: t,
        plugin: &p,
        quotas: PluginQuotas {
            max_instances,
            ..PluginQuotas::default()
        },
        config: Default::default(),
        outbound: Default::default(),
        request_body: None,
        capabilities: None,
    };
    // a's quota of 4 slots holds one heavy instance; a second waits for it, then gives up.
    let held = rt.instantiate(inv(&a, 4), &heavy).await.unwrap();
    let second = rt.instantiate(inv(&a, 4), &heavy).await;
    assert_eq!(second.err().map(|e| e.code()), Some("plugin_capacity"));
    // b's instances still find room in the pool, all four slots that are left.
    let mut b_held = Vec::new();
    for _ in 0..4 {
        b_held.push(rt.instantiate(inv(&b, 64), &light).await.unwrap());
    }
    // A quota smaller than one instance's slots is refused at once, saying why.
    let e = rt.instantiate(inv(&a, 3), &heavy).await.err().unwrap();
    assert_eq!(e.code(), "plugin_capacity");
    assert!(e.to_string().contains("needs 4 instance slots"), "{e}");
    drop((held, b_held));
}

/// The epoch ticker rests while no plugin runs (an idle node does not wake a thousand times a
/// second): the first call after a rest wakes it, so a spinning plugin is still stopped at its
/// deadline, not at the end of the rest, after every idle spell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_idle_spell_a_spinning_plugin_is_still_stopped_at_its_deadline() {
    let (rt, _metrics) = runtime(2, 5_000);
    let spin = rt.validate(&infinite_loop()).unwrap();
    let quotas = PluginQuotas {
        deadline_ms: 40,
        ..spinning()
    };
    for idle_ms in [200, 1_500, 300] {
        // Long enough for the ticker to rest (50 ms), and past its longest rest (1 s).
        tokio::time::sleep(Duration::from_millis(idle_ms)).await;
        let started = Instant::now();
        let err = call(&rt, "evil", &spin, quotas)
            .await
            .expect_err("a spinning plugin is stopped");
        assert_eq!(err.code(), "plugin_timeout", "{err}");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(400),
            "stopped {took:?} after a {idle_ms} ms idle spell (deadline 40 ms)"
        );
    }
}
