//! A plugin call's future stays small: the call's state (wasmtime's instantiate and call
//! futures, ~3 KB) goes to the heap once, in `call::start_on`, and is not carried by every
//! future that awaits it. Each level that creates a future and awaits it copies it into its own
//! state, up to the request's future that Pingora boxes: when `start_on` was an `async fn`
//! holding the call, `handle_request`'s future was 6 KB and the gateway's `run_chain` 13.5 KB
//! (docs/benchmarks.md, thirteenth session).

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::{example_plugin, get_request, invocation};
use wharf_plugins::types::RequestHead;
use wharf_plugins::{PluginRuntime, RuntimeSettings};

/// Room for the phase's own locals and the boxed call's handle, not for the call's state
/// (debug build: 584 bytes for `handle_request`, 992 for a classic `on_request`; 5,952 before).
const BUDGET: usize = 1536;

#[tokio::test]
async fn a_plugin_calls_future_holds_a_pointer_to_the_call_not_the_call() {
    let rt = PluginRuntime::new(RuntimeSettings::default(), None, Arc::new(Metrics::new()))
        .expect("runtime");
    let (tenant, plugin): (Arc<str>, Arc<str>) = ("acme".into(), "p".into());
    for name in ["header-filter", "add-header"] {
        let compiled = rt.validate(&example_plugin(name)).unwrap();
        let inv = invocation((&tenant, &plugin), &[]);
        let mut instance = rt.prepare(inv, &compiled).await.unwrap();
        let size = if compiled.exports.has_response_phase() {
            let call = instance.on_request(get_request("/", &[], "acme"));
            std::mem::size_of_val(&call)
        } else {
            let head = std::sync::Arc::new(RequestHead {
                method: "GET".into(),
                path: "/".into(),
                client_addr: "127.0.0.1".into(),
                tenant_id: "acme".into(),
                route_id: "r".into(),
            });
            let headers = http::HeaderMap::new();
            let call = instance.handle_request(head, &headers);
            std::mem::size_of_val(&call)
        };
        assert!(size <= BUDGET, "{name}: its call's future is {size} bytes");
        // And the call still runs to its end.
        instance
            .on_request(get_request("/", &[], "acme"))
            .await
            .unwrap();
    }
}

/// A host call's future stays small too: the first use's set-up (a tenant's pool, its first
/// connection) and a connection's opening are boxed where they are taken. Before, they sat in
/// every Redis call's future: 20 KB, copied whole at each call (docs/benchmarks.md, twentieth
/// session). Real Redis (WHARF_TEST_REDIS_URL).
#[tokio::test]
async fn a_redis_calls_future_does_not_carry_the_connections_set_up() {
    use wharf_plugins::capabilities::redis::Redis;
    let url =
        std::env::var("WHARF_TEST_REDIS_URL").expect("WHARF_TEST_REDIS_URL: run scripts/test");
    let caps = wharf_plugins::test_support::capabilities(
        Some(url),
        wharf_plugins::capabilities::sql::SqlBackend::Disabled,
        wharf_plugins::capabilities::DEFAULT_RESULT_BUDGET_BYTES,
    );
    let tenant = caps.tenant("sizes", &wharf_tenancy::Quotas::default());
    let first_use = tenant.get::<Redis>();
    let size = std::mem::size_of_val(&first_use);
    assert!(size <= 256, "the capability's future is {size} bytes");
    let redis = first_use.await.expect("Redis is up");
    let call = redis.command("GET", vec![b"k".to_vec()]);
    let size = std::mem::size_of_val(&call);
    // Debug build: 856 bytes (2,984 before).
    assert!(size <= BUDGET, "a Redis command's future is {size} bytes");
    call.await.expect("the command runs");
}
