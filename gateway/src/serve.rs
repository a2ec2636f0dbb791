//! `wharf serve`: loads the first config, then hands the process to Pingora with two services:
//! the proxy and the control plane.

use parking_lot::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use wharf_metrics::Metrics;
use wharf_tenancy::{HostPattern, Route, Store, Timeouts, UpstreamTarget};

use crate::admin::AdminState;
use crate::admin_server::AdminServer;
use crate::api::{ApiState, OnDemand};
use crate::bootstrap::Bootstrap;
use crate::cli::ServeArgs;
use crate::control::balancer::Upkeep;
use crate::control::periodic::StoreTasks;
use crate::control::resolve::{prepare_capabilities, resolve_plugins, BlobSource, Loading};
use crate::control::sync::ConfigSync;
use crate::control::table::{CompileEnv, LiveConfig, RoutingTable};
use crate::control::ControlPlane;
use crate::proxy::rate_limit::FleetLimiter;
use crate::proxy::WharfProxy;
use crate::tls::resolver::SniResolver;
use crate::upgrade::Handover;
use pingora_core::apps::HttpServerOptions;
use pingora_core::services::listening::Service;
use wharf_plugins::capabilities::Capabilities;
use wharf_plugins::PluginRuntime;

pub const DEMO_HOST: &str = "demo.localhost";

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut boot = Bootstrap::load(args.store.config.as_deref())?.with_store_args(&args.store);
    if let Some(l) = args.listen {
        boot.listen = l;
    }
    if let Some(l) = args.admin_listen {
        boot.admin_listen = l;
    }
    if boot.acme.challenge == crate::acme::ChallengeKind::TlsAlpn01 && boot.tls_listen.is_none() {
        anyhow::bail!(
            "[acme] challenge = \"tls-alpn-01\" is answered on the TLS listener: set tls_listen"
        );
    }
    // Before the store opens: a data dir an older version left open is closed first.
    crate::private_files::make_private(&boot.data_dir)
        .with_context(|| format!("cannot make data dir {} private", boot.data_dir.display()))?;
    let cache_dir = boot.compiled_cache_dir();
    if !cache_dir.starts_with(&boot.data_dir) {
        crate::private_files::make_private(&cache_dir)
            .with_context(|| format!("cannot make cache dir {} private", cache_dir.display()))?;
    }
    let store_url = boot.store_url()?;

    let handover = Handover::in_dir(&boot.data_dir);
    // An upgrade takes the listeners over from the running node: check it runs before loading
    // anything. Otherwise bind what we can up front: a busy port must fail here with a clear
    // message, not in a panic inside Pingora.
    let (predecessor, admin_listener) = if args.upgrade {
        (Some(handover.predecessor()?), None)
    } else {
        drop(
            std::net::TcpListener::bind(&boot.listen)
                .with_context(|| format!("cannot listen on {} (proxy)", boot.listen))?,
        );
        if let Some(addr) = &boot.tls_listen {
            drop(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} (HTTPS)"))?,
            );
        }
        let admin = std::net::TcpListener::bind(&boot.admin_listen)
            .with_context(|| format!("cannot listen on {} (admin)", boot.admin_listen))?;
        (None, Some(admin))
    };
    let echo_listener = if args.demo {
        Some(
            std::net::TcpListener::bind("127.0.0.1:0")
                .context("cannot bind the demo echo upstream")?,
        )
    } else {
        None
    };
    let echo_addr = match &echo_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };

    let mut settings = boot.capability_settings()?;
    if let Some(echo) = echo_addr {
        // The demo's built-in upstream is on loopback: allow exactly it.
        settings.networking.allow.push(format!("{}/32", echo.ip()));
    }
    let sealer = Arc::new(crate::tls::key_sealer(&boot.tls, &boot.data_dir)?);

    let metrics = Arc::new(Metrics::with_tenant_label_cap(
        boot.metrics_tenant_label_cap,
    ));
    let runtime = PluginRuntime::new(
        boot.plugins.clone(),
        Some(&boot.compiled_cache_dir()),
        metrics.clone(),
    )?;
    let capabilities = Capabilities::new(settings, metrics.clone(), boot.host_result_budget_bytes)?;
    let egress = capabilities.node().networking.policy().clone();
    if !runtime.pooled() {
        eprintln!("wharf: plugin instances use on-demand allocation (pooling unavailable)");
    }

    // The first snapshot is loaded before serving, so no request ever sees an empty table or
    // waits for a compile. Plugins already in the disk cache are not read: each loads on its
    // first request, so a warm boot does not grow with the plugin count.
    let blobs = Arc::new(BlobSource::default());
    let (snapshot, plugins) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let store = Store::connect(&store_url)
                .await
                .with_context(|| format!("cannot open config store {store_url}"))?;
            if let Some(addr) = echo_addr {
                seed_demo(&store, addr)
                    .await
                    .context("seeding the demo tenant")?;
            }
            let snapshot = store.load().await?;
            blobs.connect(&store);
            let plugins = resolve_plugins(&snapshot.tenants, &runtime, &blobs, Loading::Lazy).await;
            blobs.disconnect();
            prepare_capabilities(&snapshot.tenants, &capabilities).await;
            store.close().await;
            anyhow::Ok((snapshot, plugins))
        })?;

    let env = CompileEnv {
        plugins: &plugins,
        capabilities: &capabilities,
        egress: &egress,
        sealer: &sealer,
    };
    let (table, upkeep) = RoutingTable::compile(&snapshot, &env, &RoutingTable::default());
    // Names the first table routes to are resolved before it serves (or 2 s passed): once, at
    // start, not on every change.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(Upkeep::settle(
            &upkeep,
            capabilities.node().networking.resolver(),
            Duration::from_secs(2),
        ));
    drop(upkeep);
    metrics.config_version.set(table.version);
    metrics.config_store_up.set(1);
    let live = Arc::new(LiveConfig::new(table));

    let conf = ServerConf {
        upgrade_sock: handover.socket.display().to_string(),
        threads: boot.threads.max(1),
        work_stealing: boot.work_stealing.unwrap_or(boot.threads > 1),
        grace_period_seconds: Some(boot.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(boot.graceful_shutdown_timeout_seconds),
        // Attempts per request: the first and a route's retries at most (routes say how many,
        // within their retry budget; Pingora's default is one attempt).
        max_retries: 1 + wharf_tenancy::model::MAX_RETRIES as usize,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: predecessor.is_some(),
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    if let Some(old) = predecessor {
        eprintln!(
            "wharf: config loaded; taking the listeners over from process {}",
            old.pid
        );
        handover.signal_when_listening(old)?;
    }
    // In an upgrade this blocks until the old process sent its sockets (Pingora exits if none
    // come within a few seconds).
    server.bootstrap();
    handover.record_self()?;
    let phases = server.watch_execution_phase();
    let challenges = Arc::new(crate::acme::challenges::Challenges::default());
    let in_flight = crate::drain::InFlight::default();
    crate::drain::exit_when_drained(server.watch_execution_phase(), in_flight.clone());

    let mut app = pingora_proxy::http_proxy(
        &server.configuration,
        WharfProxy {
            config: live.clone(),
            metrics: metrics.clone(),
            runtime: runtime.clone(),
            fleet_limiter: FleetLimiter::new(boot.redis.url.clone()),
            egress: egress.clone(),
            node: crate::proxy::NodeToken::new(),
            in_flight: in_flight.clone(),
            pace: crate::proxy::pace::Pace::new(&boot.clients),
            acme: challenges.clone(),
        },
    );
    let mut options = HttpServerOptions::default();
    options.h2c = boot.h2c;
    options.h2_idle_timeout = Some(Duration::from_secs(
        boot.clients.http2_idle_timeout_seconds.max(1),
    ));
    app.server_options = Some(options);
    let app = crate::clients::PerAddress::new(app, &boot.clients, metrics.clone())?;
    let budget =
        crate::clients::ConnectionThrottle::new(&boot.clients, metrics.clone())?.map(Arc::new);
    // HTTPS is a TCP listener of its own service whose app terminates TLS itself (tls/
    // terminate.rs: ALPN acme-tls/1 for TLS-ALPN-01), sharing the proxy and its budgets.
    if let Some(addr) = &boot.tls_listen {
        let resolver = Arc::new(SniResolver {
            certs: live.clone(),
            challenges: challenges.clone(),
            default: crate::tls::default_certificate(&boot.tls)?,
            metrics: metrics.clone(),
        });
        let tls = app.with_tls(crate::tls::terminate::TlsTerminator::new(resolver)?);
        let mut https = Service::new("wharf proxy (TLS)".to_string(), tls);
        if let Some(budget) = &budget {
            https.set_connection_filter(budget.clone());
        }
        https.add_tcp(addr);
        server.add_service(https);
    }
    let mut proxy = Service::new("wharf proxy".to_string(), app);
    if let Some(budget) = budget {
        proxy.set_connection_filter(budget);
    }
    proxy.add_tcp(&boot.listen);
    server.add_service(proxy);
    let store_cell = Arc::new(tokio::sync::OnceCell::new());
    let store_up = Arc::new(AtomicBool::new(true));
    let draining = Arc::new(AtomicBool::new(false));
    let usage = crate::usage::UsageHistory::new(metrics.clone());
    let operator_token = std::env::var("WHARF_OPERATOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or(boot.operator_token.clone());
    let admin = AdminServer {
        addr: boot.admin_listen.clone(),
        bound: Mutex::new(admin_listener),
        phases: Mutex::new(Some(phases)),
        admin: AdminState {
            in_flight: in_flight.clone(),
            config_version: {
                let live = live.clone();
                Arc::new(move || live.load().version)
            },
            metrics: metrics.clone(),
            store_up: store_up.clone(),
            draining: draining.clone(),
            listeners: std::iter::once(boot.listen.clone())
                .chain(boot.tls_listen.clone())
                .collect(),
            operator_token: operator_token.clone(),
        },
        api: ApiState {
            store: store_cell.clone(),
            runtime: OnDemand::ready(runtime.clone()),
            metrics: metrics.clone(),
            operator_token,
            max_plugin_bytes: boot.plugins.max_plugin_bytes,
            egress: Some(egress.clone()),
            uploads: Default::default(),
            sealer: OnDemand::ready(sealer.clone()),
            usage: usage.clone(),
            fleet_usage: boot
                .usage_prometheus_url
                .as_deref()
                .map(|u| Arc::new(crate::usage_fleet::FleetUsage::new(u))),
            capabilities: capabilities.clone(),
            live: Some(live.clone()),
            throttles: Arc::new(crate::api::throttle::AdminThrottles::new(&boot.admin)),
            acme_orders_per_hour: boot.acme.orders_per_hour,
        },
    };
    let acme_worker = crate::acme::worker::AcmeWorker::new(
        &boot.acme,
        sealer.clone(),
        metrics.clone(),
        challenges,
        node_id(&boot.admin_listen),
    );
    server.add_service(ControlPlane {
        store_url: store_url.clone(),
        store: store_cell,
        sync: ConfigSync {
            live,
            runtime,
            blobs,
            capabilities,
            egress,
            sealer,
            metrics,
        },
        admin,
        tasks: StoreTasks::new(node_id(&boot.admin_listen), boot.audit),
        acme: Mutex::new(acme_worker),
        usage,
        poll_interval: Duration::from_millis(boot.config_poll_interval_ms.max(10)),
        echo_listener: Mutex::new(echo_listener),
        store_up,
        draining,
        in_flight: in_flight.clone(),
    });

    if let Some(addr) = &boot.tls_listen {
        eprintln!("wharf: HTTPS (tenants' certificates by SNI, h2 and http/1.1; acme-tls/1 for TLS-ALPN-01) on {addr}");
    }
    eprintln!(
        "wharf: proxy on http://{}, admin and /metrics on http://{}, config version {} from {}",
        boot.listen,
        boot.admin_listen,
        snapshot.version,
        redact(&store_url)
    );
    if args.demo {
        eprintln!(
            "wharf: demo ready: curl -H 'Host: {DEMO_HOST}' http://{}/hello",
            boot.listen
        );
    }
    server.run_forever()
}

/// The demo tenant: `demo.localhost`, every path to the built-in echo upstream.
async fn seed_demo(store: &Store, echo: std::net::SocketAddr) -> anyhow::Result<()> {
    let existing = store.load().await?;
    let tenant = existing.tenants.iter().find(|t| t.id == "demo");
    if tenant.is_none() {
        store.create_tenant("demo", "Demo tenant", &[]).await?;
    }
    let host = HostPattern::parse(DEMO_HOST)?;
    if !tenant.is_some_and(|t| t.hostnames.contains(&host)) {
        store.add_hostname("demo", DEMO_HOST).await?;
    }
    let route = Route {
        id: "echo".into(),
        path_prefix: "/".into(),
        methods: vec![],
        upstreams: vec![UpstreamTarget {
            addr: echo.to_string(),
            weight: 1,
        }],
        timeouts: Timeouts::default(),
        health_check: None,
        upstream_protocol: Default::default(),
        retries: wharf_tenancy::DEFAULT_RETRIES,
        upstream_tls: Default::default(),
        host_header: Default::default(),
        plugins: vec![],
    };
    store.put_route("demo", route).await?;
    Ok(())
}

/// This node's name in the fleet: its host name and admin address.
fn node_id(admin_listen: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    format!("{host}/{admin_listen}")
}

/// Hides a password in a store URL before it is printed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
