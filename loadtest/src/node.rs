//! A throwaway `wharf` node for scenarios that start everything themselves: a child process on
//! free loopback ports with its own data dir, and the admin API as the operator and tenants use it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub(crate) const OPERATOR: &str = "noisy-neighbour-operator";

/// Runs a scenario that drives a node on a one-worker runtime (the node's process gets the
/// rest of the machine).
pub(crate) fn block_on<F: std::future::Future>(scenario: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    Ok(rt.block_on(scenario))
}

/// A `wharf serve` child process on free loopback ports, killed on drop.
pub(crate) struct Node {
    child: Child,
    wharf: PathBuf,
    pub proxy: String,
    pub admin: String,
    _dir: TempDir,
}

impl Node {
    pub(crate) fn start(wharf: &std::path::Path, extra_toml: &str) -> anyhow::Result<Node> {
        let dir = TempDir::new()?;
        let (proxy, admin) = (free_addr()?, free_addr()?);
        let config = dir.0.join("wharf.toml");
        // `threads` unless the extra TOML sets it (a key may appear once).
        let threads = if extra_toml
            .lines()
            .any(|l| l.trim_start().starts_with("threads"))
        {
            ""
        } else {
            "threads = 2\n"
        };
        std::fs::write(
            &config,
            format!(
                "listen = \"{proxy}\"\nadmin_listen = \"{admin}\"\ndata_dir = \"{}\"\n\
                 {threads}grace_period_seconds = 0\ngraceful_shutdown_timeout_seconds = 1\n\
                 config_poll_interval_ms = 50\noperator_token = \"{OPERATOR}\"\n\
                 egress_allow = [\"127.0.0.0/8\"]\n\
                 clients = {{ new_connections_per_second = 0, max_connections_per_address = 0 }}\n{extra_toml}\n",
                dir.0.join("data").display()
            ),
        )?;
        let child = spawn(wharf, &dir)?;
        Ok(Node {
            child,
            wharf: wharf.to_path_buf(),
            proxy,
            admin,
            _dir: dir,
        })
    }

    /// Stops the process and starts it again on the same config, store and caches.
    pub(crate) fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.wharf, &self._dir)?;
        Ok(())
    }
}

fn spawn(wharf: &std::path::Path, dir: &TempDir) -> anyhow::Result<Child> {
    // `WHARF_LOAD_NODE_CPUS=0`: the node on those CPUs only (`taskset -c`), apart from the load
    // generator (run it under `taskset` on the others), as a gateway and its clients would be.
    let mut cmd = match std::env::var("WHARF_LOAD_NODE_CPUS") {
        Ok(cpus) if !cpus.is_empty() => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpus]).arg(wharf);
            c
        }
        _ => Command::new(wharf),
    };
    cmd.args(["serve", "--config"])
        .arg(dir.0.join("wharf.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.0.join("wharf.log"))?,
        ))
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("cannot start {}", wharf.display()))
}

impl Node {
    /// CPU time the node's process has used (Linux: user + system, in USER_HZ ticks of 10 ms).
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = stat
            .rsplit_once(") ")
            .map(|(_, r)| r)
            .context("bad /proc/PID/stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok((field(11) + field(12)) as f64 / 100.0)
    }

    /// The node's data directory (store, compiled cache).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self._dir.0.join("data")
    }

    /// Resident memory of the node's process (Linux: `VmRSS`), in bytes.
    pub(crate) fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("no VmRSS in /proc/PID/status")?;
        Ok(kib * 1024)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!(
            "wharf-noisy-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// The admin API, as the operator and tenants use it.
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(admin: &str) -> Api {
        Api {
            base: format!("http://{admin}"),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..2400 {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("wharf did not become healthy in 120 s")
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {v}");
        }
        Ok(v)
    }

    pub(crate) async fn key(&self, tenant: &str) -> anyhow::Result<String> {
        let v = self
            .call(
                "POST",
                &format!("/v1/tenants/{tenant}/api-keys"),
                OPERATOR,
                json!({}),
            )
            .await?;
        v["key"]
            .as_str()
            .map(String::from)
            .context("no key in the answer")
    }

    pub(crate) async fn upload(
        &self,
        tenant: &str,
        name: &str,
        token: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!("{}/v1/tenants/{tenant}/plugins/{name}", self.base))
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "upload {name}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Tenants `t{i}`, each owning `t{i}.test` with route `main` on `/` to `upstream`, plus
    /// `routes - 1` more (`r{j}` on `/r{j}`).
    pub(crate) async fn seed_tenants(
        &self,
        ids: std::ops::Range<usize>,
        routes: usize,
        upstream: &str,
    ) -> anyhow::Result<()> {
        let route = |prefix: String| json!({"path_prefix": prefix, "upstreams": [{"addr": upstream, "weight": 1}]});
        for i in ids {
            let t = format!("t{i}");
            let tenant = json!({"id": t, "hostnames": [format!("{t}.test")]});
            self.call("POST", "/v1/tenants", OPERATOR, tenant).await?;
            let path = format!("/v1/tenants/{t}/routes");
            self.call("PUT", &format!("{path}/main"), OPERATOR, route("/".into()))
                .await?;
            for j in 1..routes {
                self.call(
                    "PUT",
                    &format!("{path}/r{j}"),
                    OPERATOR,
                    route(format!("/r{j}")),
                )
                .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn get_text(&self, path: &str, token: &str) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await?
            .text()
            .await?)
    }
}
