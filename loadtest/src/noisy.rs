//! Scenario `noisy-neighbour`: does one tenant's hostile plugin traffic slow down or fail another
//! tenant? Starts everything itself: an upstream, a `wharf` node (child process, its own data
//! dir), tenant `evil` with five hostile routes (a plugin that spins on host calls until its
//! deadline, burns fuel, hogs memory, traps, spams logs) and tenant `good` with a plain route
//! and a plugin route. Good is probed one request at a time, alone and then while every evil
//! route is driven by `connections` closed-loop clients, in the same run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::http_load::exchange;
use crate::node::{block_on, Api, Node, OPERATOR};
use crate::stats::{micros, Summary};

pub(crate) struct Args {
    pub wharf: PathBuf,
    pub plugin_dir: PathBuf,
    pub seconds: u64,
    pub connections: usize,
    /// Appended to the node's bootstrap file (e.g. `[plugins]` settings to compare).
    pub extra_toml: String,
}

const HOSTILE: &[&str] = &["spin", "fuel", "memory", "trap", "log-spam"];

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    block_on(scenario(args))?
}

async fn scenario(args: Args) -> anyhow::Result<()> {
    let hostile = std::fs::read(args.plugin_dir.join("hostile.wasm"))
        .context("hostile.wasm: build the plugins with scripts/build-plugins")?;
    let add_header = std::fs::read(args.plugin_dir.join("add-header.wasm"))
        .context("add-header.wasm: build the plugins with scripts/build-plugins")?;
    let upstream = start_upstream().await?;
    let node = Node::start(&args.wharf, &args.extra_toml)?;
    let api = Api::new(&node.admin);
    api.wait_ready().await?;

    for (tenant, host) in [("evil", "evil.test"), ("good", "good.test")] {
        api.call(
            "POST",
            "/v1/tenants",
            OPERATOR,
            json!({"id": tenant, "hostnames": [host]}),
        )
        .await?;
    }
    let evil = api.key("evil").await?;
    let good = api.key("good").await?;
    api.upload("evil", "hostile", &evil, hostile).await?;
    api.upload("good", "add-header", &good, add_header).await?;
    let route = |prefix: &str| json!({"path_prefix": prefix, "upstreams": [{"addr": upstream, "weight": 1}]});
    for mode in HOSTILE {
        let path = format!("/v1/tenants/evil/routes/{mode}");
        api.call("PUT", &path, &evil, route(&format!("/{mode}")))
            .await?;
        api.call(
            "PUT",
            &format!("{path}/plugins/hostile"),
            &evil,
            json!({"config": {"mode": mode}}),
        )
        .await?;
    }
    api.call("PUT", "/v1/tenants/good/routes/plain", &good, route("/"))
        .await?;
    api.call("PUT", "/v1/tenants/good/routes/plug", &good, route("/plug"))
        .await?;
    api.call(
        "PUT",
        "/v1/tenants/good/routes/plug/plugins/add-header",
        &good,
        json!({}),
    )
    .await?;
    wait_serving(&node.proxy, "good.test", "/plug").await?;
    wait_serving(&node.proxy, "evil.test", "/log-spam").await?;

    let span = Duration::from_secs(args.seconds);
    println!(
        "noisy-neighbour: {} s per phase; attack = {} hostile routes x {} connections; good probed one request at a time",
        args.seconds,
        HOSTILE.len(),
        args.connections
    );
    let alone = probe_both(&node.proxy, span).await;
    let before = api.get_text("/metrics", OPERATOR).await.unwrap_or_default();
    let attack: Vec<_> = HOSTILE
        .iter()
        .flat_map(|mode| {
            let path = format!("/{mode}");
            (0..args.connections).map(move |_| path.clone())
        })
        .map(|path| {
            let addr = node.proxy.clone();
            tokio::spawn(async move { attacker(&addr, &path, Instant::now() + span).await })
        })
        .collect();
    let under = probe_both(&node.proxy, span).await;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for a in attack {
        for (status, n) in a.await? {
            *statuses.entry(status).or_default() += n;
        }
    }

    println!("| good route | phase | requests | p50 | p99 | max | success |");
    println!("|---|---|---|---|---|---|---|");
    for (i, route) in ["/ (no plugin)", "/plug (add-header)"].iter().enumerate() {
        for (phase, probes) in [("alone", &alone[i]), ("under attack", &under[i])] {
            probes.row(route, phase);
        }
    }
    for (i, route) in ["/", "/plug"].iter().enumerate() {
        let (a, u) = (alone[i].summary(), under[i].summary());
        println!(
            "good {route}: p99 under attack / alone = {:.2} (target <= 2), success {:.2}% (target 100%)",
            u.p99.as_secs_f64() / a.p99.as_secs_f64().max(1e-9),
            under[i].success_pct()
        );
    }
    let total: u64 = statuses.values().sum();
    println!("evil's requests under attack: {total} answered, by status {statuses:?}");
    let metrics = api.get_text("/metrics", OPERATOR).await.unwrap_or_default();
    println!("good's time inside the gateway under attack (p99 from the histograms' buckets):");
    for (name, filter) in GOOD_BREAKDOWN {
        let p99 = histogram_delta_p99(&before, &metrics, name, filter);
        println!(
            "  {name}{{{filter}}}: p99 <= {}",
            p99.map_or("n/a".into(), |s| format!("{:.2} ms", s * 1e3))
        );
    }
    for line in metrics.lines().filter(|l| {
        l.starts_with("wharf_plugin_cpu_seconds_total")
            || l.starts_with("wharf_plugin_yields_total")
    }) {
        println!("  {line}");
    }
    Ok(())
}

/// Probes of one route: latency of each request and whether it succeeded (200).
#[derive(Default)]
struct Probes {
    samples: Vec<Duration>,
    ok: usize,
    failed: BTreeMap<String, usize>,
}

impl Probes {
    fn summary(&self) -> Summary {
        Summary::of(&mut self.samples.clone())
    }

    fn success_pct(&self) -> f64 {
        100.0 * self.ok as f64 / self.samples.len().max(1) as f64
    }

    fn row(&self, route: &str, phase: &str) {
        let s = self.summary();
        println!(
            "| {route} | {phase} | {} | {} | {} | {} | {:.2}%{} |",
            self.samples.len(),
            micros(s.p50),
            micros(s.p99),
            micros(s.max),
            self.success_pct(),
            if self.failed.is_empty() {
                String::new()
            } else {
                format!(" {:?}", self.failed)
            }
        );
    }
}

/// Probes good's two routes side by side, each one request at a time.
async fn probe_both(addr: &str, span: Duration) -> [Probes; 2] {
    let until = Instant::now() + span;
    let (a, b) = tokio::join!(probe(addr, "/", until), probe(addr, "/plug", until));
    [a, b]
}

async fn probe(addr: &str, path: &str, until: Instant) -> Probes {
    let request = format!("GET {path} HTTP/1.1\r\nHost: good.test\r\n\r\n").into_bytes();
    let mut probes = Probes::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    while Instant::now() < until {
        let started = Instant::now();
        let result = async {
            if conn.is_none() {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                conn = Some(BufReader::new(s));
            }
            let Some(c) = conn.as_mut() else {
                bail!("no connection")
            };
            exchange(c, &request).await
        }
        .await;
        probes.samples.push(started.elapsed());
        match result {
            Ok((200, keep)) => {
                probes.ok += 1;
                if !keep {
                    conn = None;
                }
            }
            Ok((status, _)) => {
                *probes.failed.entry(status.to_string()).or_default() += 1;
                conn = None;
            }
            Err(e) => {
                *probes.failed.entry(format!("{e}")).or_default() += 1;
                conn = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    probes
}

/// One hostile client: closed loop on one route until `until`; counts answers by status.
async fn attacker(addr: &str, path: &str, until: Instant) -> BTreeMap<u16, u64> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: evil.test\r\n\r\n").into_bytes();
    let mut statuses = BTreeMap::new();
    let mut conn: Option<BufReader<TcpStream>> = None;
    while Instant::now() < until {
        if conn.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => conn = Some(BufReader::new(s)),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match exchange(c, &request).await {
            Ok((status, keep)) => {
                *statuses.entry(status).or_default() += 1;
                if !keep {
                    conn = None;
                }
            }
            Err(_) => conn = None,
        }
    }
    statuses
}

pub(crate) async fn wait_serving(addr: &str, host: &str, path: &str) -> anyhow::Result<()> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    for _ in 0..2400 {
        if let Ok(s) = TcpStream::connect(addr).await {
            let mut c = BufReader::new(s);
            if let Ok((status, _)) = exchange(&mut c, request.as_bytes()).await {
                if status != 404 {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{host}{path} did not start serving")
}

/// A minimal keep-alive HTTP/1.1 upstream answering `200 ok` to everything.
pub(crate) async fn start_upstream() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 16 * 1024];
                let mut have = 0;
                loop {
                    let Ok(n) = s.read(&mut buf[have..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have += n;
                    while let Some(end) = find_end(&buf[..have]) {
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                        buf.copy_within(end..have, 0);
                        have -= end;
                    }
                    if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn find_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Good's server-side histograms whose tails locate its end-to-end p99 under attack.
const GOOD_BREAKDOWN: [(&str, &str); 4] = [
    ("wharf_gateway_duration_seconds", "tenant=\"good\""),
    (
        "wharf_plugin_duration_seconds",
        "phase=\"on_request\",tenant=\"good\"",
    ),
    (
        "wharf_plugin_duration_seconds",
        "phase=\"on_response\",tenant=\"good\"",
    ),
    ("wharf_plugin_queue_wait_seconds", "tenant=\"good\""),
];

/// The upper bound of the bucket holding the 99th percentile of the observations a histogram
/// series gained between two scrapes.
fn histogram_delta_p99(before: &str, after: &str, name: &str, labels: &str) -> Option<f64> {
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(labels))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let count = l.rsplit(' ').next()?.parse().ok()?;
                Some((le, count))
            })
            .collect()
    };
    let (b, a) = (buckets(before), buckets(after));
    let delta: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, n)| {
            let old = b.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
            (*le, n - old)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map(|(le, _)| *le)
}
