//! Test harness shared by the gateway's integration tests: real `wharf` processes on free ports,
//! real upstream HTTP servers, real SQLite/Postgres stores and real Redis.
#![allow(dead_code)]

pub mod api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
pub use wharf_tenancy::test_support::{fresh_postgres_url, fresh_sqlite_url, unique_suffix};
use wharf_tenancy::{HealthCheck, Route, Store, Timeouts, UpstreamTarget};

#[derive(Debug, Clone, Copy)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// A fresh, empty config store of the given kind: (URL, connected handle).
pub async fn fresh_store(kind: StoreKind) -> (String, Store) {
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
pub struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
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

    pub fn target(&self) -> String {
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
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    format!("127.0.0.254:{port}")
}

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

pub fn route(id: &str, prefix: &str, upstreams: &[&str]) -> Route {
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
    }
}

/// A `wharf serve` child process with its own data dir and ports.
pub struct Wharf {
    child: Child,
    config: PathBuf,
    extra_args: Vec<String>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    client: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: serde_json::Value,
}

impl Wharf {
    pub async fn start(store_url: &str) -> Wharf {
        Self::start_with(store_url, &[]).await
    }

    /// Starts `wharf serve` and waits until its admin listener answers. Retries with new ports
    /// when a free port was taken by a concurrent test in the meantime.
    pub async fn start_with(store_url: &str, extra_args: &[&str]) -> Wharf {
        Self::start_configured(store_url, "", extra_args).await
    }

    /// Like `start_with`, with extra bootstrap TOML (e.g. `redis = "..."`, `sql = "..."`).
    pub async fn start_configured(store_url: &str, extra_toml: &str, extra_args: &[&str]) -> Wharf {
        for _ in 0..3 {
            match Self::try_start(store_url, extra_toml, extra_args).await {
                Ok(w) => return w,
                Err(log) if log.contains("cannot listen") => continue,
                Err(log) => panic!("wharf did not start:\n{log}"),
            }
        }
        panic!("wharf could not find free ports in 3 tries")
    }

    async fn try_start(
        store_url: &str,
        extra_toml: &str,
        extra_args: &[&str],
    ) -> Result<Wharf, String> {
        let dir = std::env::temp_dir().join(format!("wharf-gw-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let proxy = free_addr();
        let admin = free_addr();
        // Test upstreams listen on loopback, which the egress policy refuses unless allowed.
        let egress = if extra_toml.contains("egress_allow") {
            ""
        } else {
            "egress_allow = [\"127.0.0.0/8\"]\n"
        };
        let bootstrap = format!(
            "listen = \"{proxy}\"\nadmin_listen = \"{admin}\"\ndata_dir = \"{}\"\nstore = \"{store_url}\"\n\
             threads = 1\nconfig_poll_interval_ms = 50\ngrace_period_seconds = 0\n\
             graceful_shutdown_timeout_seconds = 1\n{egress}{extra_toml}\n",
            dir.join("data").display()
        );
        let config = dir.join("wharf.toml");
        std::fs::write(&config, bootstrap).expect("write bootstrap");
        let log = std::fs::File::create(dir.join("wharf.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(extra_args)
            .env("WHARF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn wharf");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        let mut w = Wharf {
            child,
            config,
            extra_args,
            proxy,
            admin,
            dir,
            client,
        };
        w.wait_ready().await?;
        Ok(w)
    }

    /// Stops the process and starts it again with the same ports, data dir and store.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("wharf.log"))
            .expect("log file");
        self.child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .args(&self.extra_args)
            .env("WHARF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn wharf");
        if let Err(log) = self.wait_ready().await {
            panic!("wharf did not restart:\n{log}");
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("wharf exited early ({status}):\n{}", self.log()));
            }
            if let Ok(r) = self
                .client
                .get(format!("http://{}/healthz", self.admin))
                .send()
                .await
            {
                if r.status().is_success()
                    && tokio::net::TcpStream::connect(self.proxy).await.is_ok()
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "wharf did not become ready in 30 s:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The data dir this node uses (SQLite tenant databases live under `tenant-sql/`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Resident memory of the gateway process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("wharf.log")).unwrap_or_default()
    }

    /// A request through the proxy with the given Host header.
    pub async fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("http://{}{}", self.proxy, path))
            .header("Host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {path} failed: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body");
        if body.is_empty() {
            return Reply {
                status,
                headers,
                json: serde_json::Value::Null,
            };
        }
        let json = serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "reply to {host}{path} is not JSON ({status}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        Reply {
            status,
            headers,
            json,
        }
    }

    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.request("GET", host, path, &[]).await
    }

    pub async fn healthz(&self) -> serde_json::Value {
        self.client
            .get(format!("http://{}/healthz", self.admin))
            .send()
            .await
            .expect("healthz")
            .json()
            .await
            .expect("healthz json")
    }

    pub async fn config_version(&self) -> i64 {
        self.healthz().await["config_version"]
            .as_i64()
            .expect("config_version")
    }

    /// Waits until this node serves config `version` (or newer); returns how long that took.
    pub async fn wait_for_version(&self, version: i64) -> Duration {
        let start = Instant::now();
        while self.config_version().await < version {
            assert!(
                // Generous: a new node compiles stored plugins on one core first (a 1.6 MB
                // JavaScript plugin takes seconds in a debug build on a loaded machine).
                start.elapsed() < Duration::from_secs(40),
                "config version {version} not applied within 40 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    }

    /// `/metrics`, as Prometheus scrapes it: with the operator token when one is configured.
    pub async fn metrics(&self) -> String {
        let mut req = self.client.get(format!("http://{}/metrics", self.admin));
        if let Some(token) = self.operator_token() {
            req = req.bearer_auth(token);
        }
        req.send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

impl Wharf {
    /// The operator token of this node's bootstrap file, if it sets one.
    pub fn operator_token(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.config).ok()?;
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("operator_token"))?;
        Some(line.split('"').nth(1)?.to_string())
    }

    /// Metrics are recorded in the logging phase, after the client has its response: poll.
    pub async fn wait_metric(&self, series: &str, expected: f64) -> String {
        let start = Instant::now();
        loop {
            let m = self.metrics().await;
            let got = metric_value(&m, series);
            if got == expected {
                return m;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{series} is {got}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads one sample from Prometheus text: the value of the series whose line starts with `series`.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The test Redis server from `scripts/test` (or `WHARF_TEST_REDIS_URL`), as host:port.
pub fn redis_addr() -> String {
    let url = std::env::var("WHARF_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("WHARF_TEST_REDIS_URL is not set: run the suite with scripts/test, which starts a throwaway Redis")
    });
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string()
}

/// Stores `bytes` as a new version of `plugin` and attaches it to the route.
pub async fn attach_plugin(
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
    };
    store.attach_plugin(tenant, route, a).await.unwrap();
}

/// A tenant id no other test uses.
pub fn tenant_id() -> String {
    format!("t-{}", unique_suffix().replace('_', "-"))
}

/// The test Redis server's URL (`WHARF_TEST_REDIS_URL`, set by scripts/test).
pub fn redis_url() -> String {
    std::env::var("WHARF_TEST_REDIS_URL").expect("WHARF_TEST_REDIS_URL: run scripts/test")
}

/// Runs the `wharf` binary: (succeeded, stdout + stderr).
pub fn run_wharf(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run wharf");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Generous plugin deadline: the first host call of a tenant opens its pool inside the request,
/// and CI machines are loaded. Deadlines are tested on their own (host_calls, plugins).
pub async fn relaxed(store: &Store, tenant: &str) {
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
