//! A real `wharf serve` process on free ports, and how tests talk to it.

use super::*;
use std::path::Path;

/// A `wharf serve` child process with its own data dir and ports.
pub(crate) struct Wharf {
    child: Child,
    config: PathBuf,
    extra_args: Vec<String>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    client: reqwest::Client,
}

pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: serde_json::Value,
}

/// Starts `wharf SUBCOMMAND --config CONFIG`, its log appended to `dir/wharf.log`.
fn spawn(subcommand: &str, config: &Path, extra_args: &[String], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("wharf.log"))
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg(subcommand)
        .arg("--config")
        .arg(config)
        .args(extra_args)
        .env("WHARF_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn wharf")
}

impl Wharf {
    pub(crate) async fn start(store_url: &str) -> Wharf {
        Self::start_with(store_url, &[]).await
    }

    /// Starts `wharf serve` and waits until its admin listener answers. Retries with new ports
    /// when a free port was taken by a concurrent test in the meantime.
    pub(crate) async fn start_with(store_url: &str, extra_args: &[&str]) -> Wharf {
        Self::start_configured(store_url, "", extra_args).await
    }

    /// Like `start_with`, with extra bootstrap TOML (e.g. `redis = "..."`, `sql = "..."`).
    pub(crate) async fn start_configured(
        store_url: &str,
        extra_toml: &str,
        extra_args: &[&str],
    ) -> Wharf {
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
        // Distinct: the proxy and admin listeners once got the same port, and the node waited
        // for an admin listener that was its proxy.
        let [proxy, admin] = free_addrs();
        // Test upstreams listen on loopback, which the egress policy refuses unless allowed.
        let egress = if extra_toml.contains("egress_allow") {
            ""
        } else {
            "egress_allow = [\"127.0.0.0/8\"]\n"
        };
        let grace = if extra_toml.contains("grace_period_seconds") {
            ""
        } else {
            "grace_period_seconds = 5\n"
        };
        // Tests open thousands of connections a second from 127.0.0.1: the per-address
        // connection budgets are off unless a test sets `[clients]` itself.
        let clients = if extra_toml.contains("[clients]") {
            ""
        } else {
            "clients = { new_connections_per_second = 0, max_connections_per_address = 0 }\n"
        };
        let threads = if extra_toml.contains("threads =") {
            ""
        } else {
            "threads = 1\n"
        };
        let bootstrap = format!(
            "listen = \"{proxy}\"\nadmin_listen = \"{admin}\"\ndata_dir = \"{}\"\nstore = \"{store_url}\"\n\
             {threads}config_poll_interval_ms = 50\n{grace}\
             graceful_shutdown_timeout_seconds = 1\n{egress}{clients}{extra_toml}\n",
            dir.join("data").display()
        );
        let config = dir.join("wharf.toml");
        std::fs::write(&config, bootstrap).expect("write bootstrap");
        std::fs::File::create(dir.join("wharf.log")).expect("log file");
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let child = spawn("serve", &config, &extra_args, &dir);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
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
    pub(crate) async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.respawn().await;
    }

    /// Sends SIGTERM and waits for the process to finish its requests and exit; returns how long
    /// that took.
    pub(crate) async fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the process again after it exited (same ports, data dir and store). A port the
    /// old process held can be taken for a moment by another test's connection (it was free
    /// when chosen): the start is retried for a few seconds then.
    pub(crate) async fn respawn(&mut self) {
        for attempt in 0.. {
            self.child = spawn("serve", &self.config, &self.extra_args, &self.dir);
            match self.wait_ready().await {
                Ok(()) => return,
                Err(log) if attempt < 20 && log.contains("Address already in use") => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(log) => panic!("wharf did not restart:\n{log}"),
            }
        }
    }

    /// `wharf upgrade` with the same bootstrap file: the new process takes the listeners over,
    /// the old one drains and exits. Returns the time from the upgrade's start to the old
    /// process's exit, once the new one is ready.
    pub(crate) async fn upgrade(&mut self) -> Duration {
        let started = Instant::now();
        let new = spawn("upgrade", &self.config, &self.extra_args, &self.dir);
        let mut old = std::mem::replace(&mut self.child, new);
        let exited = loop {
            if let Ok(Some(status)) = old.try_wait() {
                // Its log is the same file: what it said before it went (a panic, an abort).
                assert!(
                    status.success(),
                    "the old process exited with {status}:\n{}",
                    self.log()
                );
                break started.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let _ = old.kill();
                panic!("the upgrade exited with {status}:\n{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the old process did not exit after the upgrade:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Err(log) = self.wait_ready().await {
            panic!("the upgraded process is not ready:\n{log}");
        }
        exited
    }

    /// The process serving now.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
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
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Resident memory of the gateway process, in bytes.
    pub(crate) fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("wharf.log")).unwrap_or_default()
    }

    /// A request through the proxy with the given Host header.
    pub(crate) async fn request(
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

    pub(crate) async fn get(&self, host: &str, path: &str) -> Reply {
        self.request("GET", host, path, &[]).await
    }

    pub(crate) async fn healthz(&self) -> serde_json::Value {
        self.client
            .get(format!("http://{}/healthz", self.admin))
            .send()
            .await
            .expect("healthz")
            .json()
            .await
            .expect("healthz json")
    }

    pub(crate) async fn config_version(&self) -> i64 {
        self.healthz().await["config_version"]
            .as_i64()
            .expect("config_version")
    }

    /// Waits until this node serves config `version` (or newer); returns how long that took.
    pub(crate) async fn wait_for_version(&self, version: i64) -> Duration {
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
    pub(crate) async fn metrics(&self) -> String {
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
    pub(crate) fn operator_token(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.config).ok()?;
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("operator_token"))?;
        Some(line.split('"').nth(1)?.to_string())
    }

    /// Metrics are recorded in the logging phase, after the client has its response: poll.
    pub(crate) async fn wait_metric(&self, series: &str, expected: f64) -> String {
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
