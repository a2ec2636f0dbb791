//! What a gateway's memory grows with: resident memory of an idle node, then per tenant (each
//! with a hostname and a route) and per distinct compiled plugin (copies of add-header made
//! distinct by a custom section, each attached to a route and served once). Starts everything
//! itself; numbers go to docs/benchmarks.md (#12, #13).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::node::{block_on, Api, Node};
use crate::noisy::{start_upstream, wait_serving};
use crate::stats::{micros, Summary};

pub(crate) struct Args {
    pub wharf: PathBuf,
    pub plugin_dir: PathBuf,
    pub tenants: usize,
    pub plugins: usize,
    pub extra_toml: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    block_on(scenario(args))?
}

const MIB: f64 = 1024.0 * 1024.0;

async fn scenario(args: Args) -> anyhow::Result<()> {
    let add_header = std::fs::read(args.plugin_dir.join("add-header.wasm"))
        .context("add-header.wasm: build the plugins with scripts/build-plugins")?;
    let upstream = start_upstream().await?;
    let mut node = Node::start(&args.wharf, &args.extra_toml)?;
    let api = Api::new(&node.admin);
    api.wait_ready().await?;
    settle().await;
    let idle = node.rss_bytes()?;
    println!("idle node: RSS {:.1} MiB", idle as f64 / MIB);

    api.seed_tenants(0..args.tenants, 1, &upstream).await?;
    let last = args.tenants.saturating_sub(1);
    wait_serving(&node.proxy, &format!("t{last}.test"), "/").await?;
    settle().await;
    let with_tenants = node.rss_bytes()?;
    let per_1000 = (with_tenants.saturating_sub(idle)) as f64 / args.tenants.max(1) as f64 * 1000.0;
    println!(
        "{} tenants (1 host, 1 route each): RSS {:.1} MiB, {:.1} MiB per 1,000 tenants",
        args.tenants,
        with_tenants as f64 / MIB,
        per_1000 / MIB
    );

    let plugins = args.plugins.min(args.tenants);
    for i in 0..plugins {
        let t = format!("t{i}");
        let key = api.key(&t).await?;
        api.upload(&t, "tag", &key, distinct(&add_header, i))
            .await?;
        api.call(
            "PUT",
            &format!("/v1/tenants/{t}/routes/main/plugins/tag"),
            &key,
            json!({}),
        )
        .await?;
    }
    for i in 0..plugins {
        wait_serving(&node.proxy, &format!("t{i}.test"), "/").await?;
    }
    settle().await;
    let with_plugins = node.rss_bytes()?;
    let per_plugin = (with_plugins.saturating_sub(with_tenants)) as f64 / plugins.max(1) as f64;
    println!(
        "{plugins} distinct plugins (add-header, {} KB each), each attached and served once: RSS {:.1} MiB, {:.2} MiB per plugin",
        add_header.len() / 1000,
        with_plugins as f64 / MIB,
        per_plugin / MIB
    );

    // A restart with the disk cache warm: nothing recompiles and no plugin is read before the
    // node serves; each loads from the disk on its first request.
    node.restart()?;
    let started = Instant::now();
    api.wait_ready().await?;
    let ready = started.elapsed();
    let last = plugins.saturating_sub(1);
    wait_serving(&node.proxy, &format!("t{last}.test"), "/").await?;
    println!(
        "restart with a warm compiled cache and {plugins} plugins: admin ready after {:.2} s, first plugin request served after {:.2} s",
        ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    settle().await;
    let booted = node.rss_bytes()?;
    let mut first_use = Vec::with_capacity(plugins);
    for i in 0..plugins.saturating_sub(1) {
        let t = Instant::now();
        wait_serving(&node.proxy, &format!("t{i}.test"), "/").await?;
        first_use.push(t.elapsed());
    }
    let s = Summary::of(&mut first_use);
    settle().await;
    println!(
        "first request of each plugin after that restart (loads it from the disk cache): p50 {}, p99 {}, max {}; RSS {:.1} MiB after boot, {:.1} MiB once all were used",
        micros(s.p50),
        micros(s.p99),
        micros(s.max),
        booted as f64 / MIB,
        node.rss_bytes()? as f64 / MIB
    );

    // And cold: the compiled cache deleted, every plugin compiles again before serving (no
    // request waits for a compile).
    let _ = std::fs::remove_dir_all(node.data_dir().join("compiled"));
    node.restart()?;
    let started = Instant::now();
    api.wait_ready().await?;
    let ready = started.elapsed();
    wait_serving(&node.proxy, &format!("t{last}.test"), "/").await?;
    println!(
        "restart with an empty compiled cache and {plugins} plugins: admin ready after {:.2} s, first plugin request served after {:.2} s",
        ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Lets reloads and background compiles finish before a reading.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// The component with a custom section appended: same code, a distinct content hash (so a
/// distinct compiled artifact in the gateway's cache).
fn distinct(component: &[u8], i: usize) -> Vec<u8> {
    let name = b"wharf-bench";
    let payload = i.to_le_bytes();
    let mut section = leb128(name.len());
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.extend(leb128(section.len()));
    out.extend(section);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
