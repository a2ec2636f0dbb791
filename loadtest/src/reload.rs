//! How long one tenant's change takes to serve, and its admin read, as the tenant count grows
//! (#13): a node with `tenants` tenants (one host, one route each), then `changes` route edits
//! on one tenant, each timed from the API's answer until the proxy serves the new route.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::http_load::{exchange, load, Target};
use crate::node::{block_on, Api, Node, OPERATOR};
use crate::noisy::start_upstream;
use crate::stats::{micros, Summary};

pub(crate) struct Args {
    pub wharf: PathBuf,
    pub tenants: Vec<usize>,
    pub changes: usize,
    pub routes: usize,
    pub extra_toml: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    block_on(scenario(args))?
}

async fn scenario(args: Args) -> anyhow::Result<()> {
    let upstream = start_upstream().await?;
    println!("| tenants | seeding | change until served p50 | max | admin GET of one tenant p50 | max | RSS | proxy p99 quiet | with 10 changes/s | ratio | node CPU per change |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.tenants {
        let node = Node::start(&args.wharf, &args.extra_toml)?;
        let api = Api::new(&node.admin);
        api.wait_ready().await?;
        let seeding = Instant::now();
        api.seed_tenants(0..n, args.routes, &upstream).await?;
        let seeding = seeding.elapsed();
        let mut served = Vec::new();
        let mut reads = Vec::new();
        for i in 0..args.changes {
            let prefix = format!("/v{i}");
            let route =
                json!({"path_prefix": prefix, "upstreams": [{"addr": upstream, "weight": 1}]});
            api.call("PUT", "/v1/tenants/t0/routes/main", OPERATOR, route)
                .await?;
            let changed = Instant::now();
            wait_for(&node.proxy, "t0.test", &format!("{prefix}/x")).await?;
            served.push(changed.elapsed());
            let read = Instant::now();
            api.get_text("/v1/tenants/t0", OPERATOR).await?;
            reads.push(read.elapsed());
        }
        let (s, r) = (Summary::of(&mut served), Summary::of(&mut reads));
        let rss = node.rss_bytes()? as f64 / (1024.0 * 1024.0);
        let (quiet, churned) = churn(&node, &api, &upstream, n).await?;
        let cpu = cpu_per_change(&node, &api, &upstream).await?;
        println!(
            "| {n} | {:.1} s | {} | {} | {} | {} | {rss:.0} MiB | {} | {} | {:.2} | {:.1} ms |",
            seeding.as_secs_f64(),
            micros(s.p50),
            micros(s.max),
            micros(r.p50),
            micros(r.max),
            micros(quiet),
            micros(churned),
            churned.as_secs_f64() / quiet.as_secs_f64().max(1e-9),
            cpu * 1e3
        );
    }
    Ok(())
}

/// Proxy p99 on one tenant's route (8 connections, 5 s) without config changes, then while
/// another tenant's route is edited 10 times a second.
async fn churn(
    node: &Node,
    api: &Api,
    upstream: &str,
    tenants: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let target = Target {
        label: "t1".into(),
        addr: node.proxy.clone(),
        host: format!("t{}.test", tenants.min(2) - 1),
        path: "/".into(),
    };
    let span = Duration::from_secs(5);
    let (quiet, _, _) = load(&target, 8, span).await?;
    let edits = async {
        let end = Instant::now() + span;
        let mut i = 0;
        while Instant::now() < end {
            let route = json!({"path_prefix": format!("/c{i}"), "upstreams": [{"addr": upstream, "weight": 1}]});
            api.call("PUT", "/v1/tenants/t0/routes/main", OPERATOR, route)
                .await?;
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    };
    let (loaded, edited) = tokio::join!(load(&target, 8, span), edits);
    edited?;
    Ok((quiet.p99, loaded?.0.p99))
}

/// The node's CPU time per config change (the API's write and every node-side reload step):
/// 20 changes over 2 s, minus the CPU of 2 idle seconds.
async fn cpu_per_change(node: &Node, api: &Api, upstream: &str) -> anyhow::Result<f64> {
    let span = Duration::from_secs(2);
    let idle_from = node.cpu_seconds()?;
    tokio::time::sleep(span).await;
    let idle = node.cpu_seconds()? - idle_from;
    let from = node.cpu_seconds()?;
    for i in 0..20 {
        let route = json!({"path_prefix": format!("/cpu{i}"), "upstreams": [{"addr": upstream, "weight": 1}]});
        api.call("PUT", "/v1/tenants/t0/routes/main", OPERATOR, route)
            .await?;
        tokio::time::sleep(span / 20).await;
    }
    let busy = node.cpu_seconds()? - from;
    Ok(((busy - idle) / 20.0).max(0.0))
}

/// Polls until `path` on `host` answers 200 (the new route serves), on one kept-alive connection.
async fn wait_for(proxy: &str, host: &str, path: &str) -> anyhow::Result<()> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = BufReader::new(TcpStream::connect(proxy).await?);
    while Instant::now() < deadline {
        match exchange(&mut conn, request.as_bytes()).await {
            Ok((200, _)) => return Ok(()),
            Ok((_, true)) => {}
            _ => conn = BufReader::new(TcpStream::connect(proxy).await?),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("{host}{path} did not start serving within 30 s")
}
