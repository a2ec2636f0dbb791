//! The routing table's host index and reload behaviour.

use super::*;
use wharf_metrics::Metrics;
use wharf_plugins::capabilities::Capabilities;
use wharf_tenancy::{Timeouts, UpstreamTarget};

/// A tenant with one hostname and one route `r` under `prefix`.
pub(crate) fn tenant(id: &str, host: &str, prefix: &str) -> Tenant {
    Tenant {
        id: id.into(),
        display_name: id.into(),
        hostnames: vec![HostPattern::parse(host).unwrap()],
        routes: vec![Route {
            id: "r".into(),
            path_prefix: prefix.into(),
            methods: vec![],
            upstreams: vec![UpstreamTarget {
                addr: "127.0.0.1:9".into(),
                weight: 1,
            }],
            timeouts: Timeouts::default(),
            health_check: None,
            upstream_protocol: Default::default(),
            retries: wharf_tenancy::DEFAULT_RETRIES,
            upstream_tls: Default::default(),
            host_header: Default::default(),
            plugins: vec![],
        }],
        quotas: Quotas::default(),
        plugins: vec![],
        certificates: vec![],
    }
}

fn id_of(table: &RoutingTable, host: &str) -> Option<String> {
    match table.lookup(host, "GET", "/x") {
        Lookup::Route(t, _) | Lookup::NoRoute(t) => Some(t.id.to_string()),
        Lookup::UnknownHost => None,
    }
}

/// What compiling needs besides the config: no plugins, no backends, loopback upstreams.
struct Fixture {
    plugins: PluginSet,
    capabilities: Arc<Capabilities>,
    egress: Arc<EgressPolicy>,
    sealer: KeySealer,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            plugins: PluginSet::new(),
            capabilities: Capabilities::new(Default::default(), Arc::new(Metrics::new()), 1 << 20)
                .unwrap(),
            egress: Arc::new(EgressPolicy::new(&["127.0.0.0/8".into()], vec![]).unwrap()),
            sealer: KeySealer::from_hex(&KeySealer::generate_hex().unwrap()).unwrap(),
        }
    }

    fn env(&self) -> CompileEnv<'_> {
        CompileEnv {
            plugins: &self.plugins,
            capabilities: &self.capabilities,
            egress: &self.egress,
            sealer: &self.sealer,
        }
    }
}

/// The table compiled from `tenants`, with no plugins and loopback upstreams allowed.
pub(crate) fn table(tenants: Vec<Tenant>) -> RoutingTable {
    let snapshot = ConfigSnapshot {
        version: 1,
        changed_at_ms: 0,
        tenants,
    };
    RoutingTable::compile(&snapshot, &Fixture::new().env(), &RoutingTable::default()).0
}

#[test]
fn exact_beats_wildcard_and_longest_wildcard_wins() {
    let t = table(vec![
        tenant("a", "*.acme.test", "/"),
        tenant("b", "api.acme.test", "/"),
        tenant("c", "*.eu.acme.test", "/"),
    ]);
    assert_eq!(id_of(&t, "api.acme.test").as_deref(), Some("b"));
    assert_eq!(id_of(&t, "www.acme.test").as_deref(), Some("a"));
    assert_eq!(id_of(&t, "x.eu.acme.test").as_deref(), Some("c"));
    assert_eq!(
        id_of(&t, "a.b.eu.acme.test").as_deref(),
        Some("c"),
        "any depth under the wildcard"
    );
    assert_eq!(id_of(&t, "a.b.acme.test").as_deref(), Some("a"));
    assert_eq!(
        id_of(&t, ".acme.test"),
        None,
        "a wildcard needs a label in front"
    );
    assert_eq!(id_of(&t, "acme.test"), None);
    assert_eq!(id_of(&t, "other.test"), None);
    let too_long = format!("{}acme.test", "x.".repeat(150));
    assert_eq!(
        id_of(&t, &too_long),
        None,
        "longer than any DNS name: not probed"
    );
}

#[test]
fn a_delta_recompiles_only_its_tenants_and_shares_the_rest() {
    let fixture = Fixture::new();
    let env = fixture.env();
    let snapshot = ConfigSnapshot {
        version: 1,
        changed_at_ms: 0,
        tenants: vec![
            tenant("a", "a.test", "/"),
            tenant("b", "*.b.test", "/"),
            tenant("c", "c.test", "/"),
        ],
    };
    let (v1, _) = RoutingTable::compile(&snapshot, &env, &RoutingTable::default());
    let delta = ConfigDelta {
        version: 4,
        changed_at_ms: 0,
        tenants: vec![
            ("b".into(), Some(tenant("b", "*.b2.test", "/"))),
            ("c".into(), None),
            ("aa".into(), Some(tenant("aa", "aa.test", "/"))),
        ],
    };
    let (v2, _) = RoutingTable::apply(&delta, &env, &v1);
    assert_eq!(v2.version, 4);
    let mut ids: Vec<&str> = v2.tenants().map(|t| &*t.id).collect();
    ids.sort();
    assert_eq!(ids, ["a", "aa", "b"]);
    assert!(
        Arc::ptr_eq(v1.tenant("a").unwrap(), v2.tenant("a").unwrap()),
        "an unchanged tenant is shared"
    );
    assert!(
        !Arc::ptr_eq(v1.tenant("b").unwrap(), v2.tenant("b").unwrap()),
        "a changed one is rebuilt"
    );
    assert!(
        Arc::ptr_eq(
            &v1.tenant("b").unwrap().routes[0].balancer,
            &v2.tenant("b").unwrap().routes[0].balancer
        ),
        "its unchanged route keeps its balancer (and health state)"
    );
    assert_eq!(id_of(&v2, "a.test").as_deref(), Some("a"));
    assert_eq!(id_of(&v2, "aa.test").as_deref(), Some("aa"));
    assert_eq!(id_of(&v2, "x.b2.test").as_deref(), Some("b"));
    assert_eq!(id_of(&v2, "x.b.test"), None, "the old hostname is gone");
    assert_eq!(id_of(&v2, "c.test"), None, "a removed tenant is gone");
}
