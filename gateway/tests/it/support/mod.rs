//! Test harness shared by the gateway's integration tests: real `wharf` processes on free ports,
//! real upstream HTTP servers, real SQLite/Postgres stores and real Redis.
#![allow(dead_code)]

pub(crate) mod api;
pub(crate) mod body_server;
pub(crate) mod dns;
pub(crate) mod grpc;
pub(crate) mod http_server;
pub(crate) mod nginx;
pub(crate) mod pebble;
pub(crate) mod raw;
pub(crate) mod registry;
pub(crate) mod tls;
mod wharf;

pub(crate) use wharf::{Reply, Wharf};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
pub(crate) use wharf_tenancy::test_support::{fresh_postgres_url, fresh_sqlite_url, unique_suffix};
use wharf_tenancy::{HealthCheck, Route, Store, Timeouts, UpstreamTarget};

/// The gateway package's directory in the checkout under test (not necessarily the one its test
/// binary was built from: `wharf_tenancy::test_support::package_dir`).
pub(crate) fn package_dir() -> PathBuf {
    wharf_tenancy::test_support::package_dir(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum StoreKind {
    Sqlite,
    Postgres,
}

/// A fresh, empty config store of the given kind: (URL, connected handle).
pub(crate) async fn fresh_store(kind: StoreKind) -> (String, Store) {
    let url = match kind {
        StoreKind::Sqlite => fresh_sqlite_url(),
        StoreKind::Postgres => fresh_postgres_url().await,
    };
    let store = Store::connect(&url).await.expect("connect test store");
    (url, store)
}

/// Generates one `#[tokio::test]` per store backend for an `async fn(StoreKind)` scenario.
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$scenario($crate::support::StoreKind::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$scenario($crate::support::StoreKind::Postgres).await }
        }
    )*};
}

/// A real HTTP upstream (Wharf's echo server) on a free loopback port.
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub(crate) async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let _ = wharf_gateway::echo::serve(listener, name).await;
        });
        Upstream { addr, task }
    }

    /// On a chosen loopback address and port (tests of names that resolve to one or another).
    pub(crate) async fn start_on(addr: SocketAddr, name: &str) -> Upstream {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let _ = wharf_gateway::echo::serve(listener, name).await;
        });
        Upstream { addr, task }
    }

    pub(crate) fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address where nothing listens. Not a released 127.0.0.1 port: another test could grab it.
/// Test servers bind 127.0.0.1 only, so a port on 127.0.0.254 refuses connections.
pub(crate) fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    format!("127.0.0.254:{port}")
}

pub(crate) fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A port held on 127.0.0.1 while the returned listener lives: test servers on other loopback
/// addresses (127.0.0.2, …) may take it, and the gateway's own listeners (on 127.0.0.1, picked
/// after) cannot. Released first, the kernel may hand it to the gateway, whose egress check then
/// refuses the test's upstream as the gateway itself.
pub(crate) fn held_port() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// `N` distinct free addresses: held open together while picked, so two are never the same
/// port (one after the other, the kernel may hand the released port out again).
pub(crate) fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("addr"))
}

/// A tenant with its hostnames and one route: most tests' starting point.
pub(crate) async fn tenant_with_route(store: &Store, id: &str, hosts: &[&str], route: Route) {
    store.create_tenant(id, id, hosts).await.unwrap();
    store.put_route(id, route).await.unwrap();
}

/// A fresh store where tenant `acme` (`acme.test`) sends every path to an echo upstream: the
/// setting of the tests about operating the gateway rather than routing.
pub(crate) async fn acme_routed(kind: StoreKind) -> (String, Store, Upstream) {
    let (url, store) = fresh_store(kind).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "acme",
        &["acme.test"],
        route("all", "/", &[&up.target()]),
    )
    .await;
    (url, store, up)
}

pub(crate) fn route(id: &str, prefix: &str, upstreams: &[&str]) -> Route {
    Route {
        id: id.into(),
        path_prefix: prefix.into(),
        methods: vec![],
        upstreams: upstreams
            .iter()
            .map(|a| UpstreamTarget {
                addr: a.to_string(),
                weight: 1,
            })
            .collect(),
        timeouts: Timeouts::default(),
        health_check: None::<HealthCheck>,
        plugins: vec![],
        upstream_protocol: Default::default(),
        retries: wharf_tenancy::DEFAULT_RETRIES,
        upstream_tls: Default::default(),
        host_header: Default::default(),
    }
}

/// Reads one sample from Prometheus text: the value of the series whose line starts with `series`.
pub(crate) fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The test Redis server from `scripts/test` (or `WHARF_TEST_REDIS_URL`), as host:port.
pub(crate) fn redis_addr() -> String {
    let url = std::env::var("WHARF_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("WHARF_TEST_REDIS_URL is not set: run the suite with scripts/test, which starts a throwaway Redis")
    });
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string()
}

/// Stores `bytes` as a new version of `plugin` and attaches it to the route.
pub(crate) async fn attach_plugin(
    store: &Store,
    tenant: &str,
    route: &str,
    plugin: &str,
    bytes: &[u8],
    config: &[(&str, &str)],
    on_error: wharf_tenancy::OnError,
) {
    let (version, _) = store
        .add_plugin_version(tenant, plugin, bytes)
        .await
        .unwrap();
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let a = wharf_tenancy::PluginAttachment {
        plugin: plugin.into(),
        version,
        config,
        on_error,
        allowed_outbound_hosts: Vec::new(),
        plugin_config: None,
        vm_config: None,
    };
    store.attach_plugin(tenant, route, a).await.unwrap();
}

/// A tenant id no other test uses.
pub(crate) fn tenant_id() -> String {
    format!("t-{}", unique_suffix().replace('_', "-"))
}

/// The test Redis server's URL (`WHARF_TEST_REDIS_URL`, set by scripts/test).
pub(crate) fn redis_url() -> String {
    std::env::var("WHARF_TEST_REDIS_URL").expect("WHARF_TEST_REDIS_URL: run scripts/test")
}

/// Runs the `wharf` binary: (succeeded, stdout + stderr).
pub(crate) fn run_wharf(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run wharf");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Generous plugin deadline: CI machines are loaded, and a host call (after the first's set-up,
/// which is not charged) still counts against it. Deadlines are tested on their own
/// (host_calls, plugins).
pub(crate) async fn relaxed(store: &Store, tenant: &str) {
    store
        .set_quotas(
            tenant,
            &wharf_tenancy::Quotas {
                plugin: wharf_tenancy::PluginQuotas {
                    deadline_ms: 3000,
                    ..Default::default()
                },
                ..wharf_tenancy::Quotas::default()
            },
        )
        .await
        .unwrap();
}

/// Lets `tenant`'s routes probe their targets every 100 ms (the default floor is 1 s): tests
/// watch a target go down without waiting seconds.
pub(crate) async fn fast_health_checks(store: &Store, tenant: &str) {
    store
        .patch_quotas(
            tenant,
            &serde_json::json!({ "health_check_min_interval_ms": 100 }),
        )
        .await
        .unwrap();
}

/// A store whose new tenant (`host`) runs every request through the redis-rate-limit plugin
/// (`limit` per `window` seconds) to an echo upstream: (store URL, store, upstream, tenant id).
pub(crate) async fn rate_limited_tenant(
    host: &str,
    limit: &str,
    window: &str,
) -> (String, Store, Upstream, String) {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    let t = tenant_id();
    tenant_with_route(&store, &t, &[host], route("api", "/", &[&up.target()])).await;
    attach_plugin(
        &store,
        &t,
        "api",
        "redis-rate-limit",
        &wharf_plugins::test_support::example_plugin("redis-rate-limit"),
        &[("limit", limit), ("window-seconds", window)],
        wharf_tenancy::OnError::FailClosed,
    )
    .await;
    (url, store, up, t)
}
