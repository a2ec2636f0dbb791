//! A request-filter's instance ends with its only call (`plugins/src/instance_end.rs`): dropped
//! where the call finished, its pool slot back at once, and what the gateway asks of it
//! afterwards (declared response edits, fuel) still there.

use std::sync::Arc;

use wharf_metrics::Metrics;
use wharf_plugins::test_support::{example_plugin, get_request, invocation};
use wharf_plugins::types::{HeaderOp, RequestAction};
use wharf_plugins::{PluginRuntime, RuntimeSettings};

fn runtime() -> (Arc<PluginRuntime>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let rt =
        PluginRuntime::new(RuntimeSettings::default(), None, metrics.clone()).expect("runtime");
    (rt, metrics)
}

/// A request-filter's instance ends with its only call (dropped where the call finished, its
/// pool slot back at once); what the gateway asks of it afterwards is still there.
#[tokio::test]
async fn a_filter_ends_with_its_call_and_leaves_its_declared_edits_and_fuel() {
    let (rt, metrics) = runtime();
    let compiled = rt.validate(&example_plugin("header-filter")).unwrap();
    let (tenant, plugin): (Arc<str>, Arc<str>) = ("acme".into(), "filter".into());
    let config = [("response-header", "x-served"), ("response-value", "f")];
    let inv = invocation((&tenant, &plugin), &config);
    let mut instance = rt.prepare(inv, &compiled).await.unwrap();
    let action = instance
        .on_request(get_request("/", &[], "acme"))
        .await
        .unwrap();
    let RequestAction::Continue(edits) = &action else {
        panic!("the filter continues: {action:?}");
    };
    assert!(
        matches!(&edits.headers[..], [HeaderOp::Set(h)] if h.name == "x-wharf-plugin" && h.value == b"add-header"),
        "its request edit: {edits:?}"
    );
    assert!(instance.fuel_consumed() > 0, "the fuel it used is kept");
    let (name, declared) = instance.take_declared_response().expect("declared edits");
    assert_eq!(&*name, "filter");
    let set: Vec<_> = declared
        .headers
        .iter()
        .filter_map(|op| match op {
            HeaderOp::Set(h) => Some((h.name.as_str(), h.value.as_slice())),
            _ => None,
        })
        .collect();
    assert_eq!(set, vec![("x-served", b"f".as_slice())]);
    assert!(instance.take_declared_response().is_none(), "taken once");
    let again = instance
        .on_request(get_request("/", &[], "acme"))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already ended"), "{again}");
    drop(instance);
    assert_eq!(metrics.plugin_instances_in_use.get(), 0);
    let fuel = metrics
        .plugin_fuel_consumed
        .with_label_values(&["acme"])
        .get_sample_sum();
    assert!(fuel > 0.0, "the instance's fuel is counted: {fuel}");
}

/// The request's headers go to a filter that imports `wharf:plugin/request` (it asks for the
/// key), and to no other: `header-filter` cannot ask, so no copy is made for it.
#[tokio::test]
async fn only_a_filter_that_imports_the_request_interface_is_handed_the_headers() {
    let (rt, _) = runtime();
    assert!(
        !rt.validate(&example_plugin("header-filter"))
            .unwrap()
            .reads_headers
    );
    let compiled = rt.validate(&example_plugin("api-key-auth")).unwrap();
    assert!(compiled.reads_headers);
    let (tenant, plugin): (Arc<str>, Arc<str>) = ("acme".into(), "auth".into());
    // The plugin asks for its configured name: in any case it finds the header as sent; a
    // name that is not a legal header name finds nothing.
    for (asked, headers, allowed) in [
        ("x-api-key", &[("x-api-key", "k1")][..], true),
        ("x-api-key", &[][..], false),
        ("X-API-Key", &[("X-Api-KEY", "k2")][..], true),
        ("x api key", &[("x-api-key", "k1")][..], false),
    ] {
        let inv = invocation((&tenant, &plugin), &[("keys", "k1,k2"), ("header", asked)]);
        let mut instance = rt.prepare(inv, &compiled).await.unwrap();
        let action = instance
            .on_request(get_request("/", headers, "acme"))
            .await
            .unwrap();
        match (&action, allowed) {
            (RequestAction::Continue(_), true) => {}
            (RequestAction::Respond(r), false) => assert_eq!(r.status, 401),
            _ => panic!("asking {asked:?} with {headers:?}: {action:?}"),
        }
    }
}
