//! Scenario `http`: closed-loop HTTP/1.1 keep-alive load against one or more targets, measured
//! back to back in the same run so their ratio means something on a shared machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::stats::{micros, Summary};

pub(crate) struct Target {
    pub label: String,
    pub addr: String,
    pub host: String,
    pub path: String,
}

pub(crate) struct Args {
    pub targets: Vec<Target>,
    pub concurrency: usize,
    pub duration: Duration,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "{} connections, {:?} per target, closed loop (one client thread)",
        args.concurrency, args.duration
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "target", "req/s", "p50", "p90", "p99", "max", "errors"
    );
    let mut baseline: Option<(f64, Duration)> = None;
    for t in &args.targets {
        let (summary, rps, errors) = rt.block_on(load(t, args.concurrency, args.duration))?;
        println!(
            "{:<16} {:>10.0} {:>10} {:>10} {:>10} {:>10} {:>8}",
            t.label,
            rps,
            micros(summary.p50),
            micros(summary.p90),
            micros(summary.p99),
            micros(summary.max),
            errors
        );
        match baseline {
            None => baseline = Some((rps, summary.p50)),
            Some((base_rps, base_p50)) => println!(
                "{:<16} throughput {:.2}x of {}, median latency {:.2}x",
                "",
                rps / base_rps,
                args.targets[0].label,
                summary.p50.as_secs_f64() / base_p50.as_secs_f64()
            ),
        }
    }
    Ok(())
}

pub(crate) async fn load(
    t: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(Summary, f64, usize)> {
    let request = Arc::new(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wharf-load\r\n\r\n",
            t.path, t.host
        )
        .into_bytes(),
    );
    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (addr, request) = (t.addr.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            worker(addr, request, deadline).await
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (s, e) = w.await??;
        samples.extend(s);
        errors += e;
    }
    let rps = samples.len() as f64 / duration.as_secs_f64();
    Ok((Summary::of(&mut samples), rps, errors))
}

async fn worker(
    addr: String,
    request: Arc<Vec<u8>>,
    deadline: Instant,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut conn: Option<BufReader<TcpStream>> = None;
    while Instant::now() < deadline {
        if conn.is_none() {
            let stream = TcpStream::connect(&addr)
                .await
                .with_context(|| format!("connect {addr}"))?;
            stream.set_nodelay(true)?;
            conn = Some(BufReader::new(stream));
        }
        let Some(c) = conn.as_mut() else { continue };
        let start = Instant::now();
        match exchange(c, &request).await {
            Ok((status, keep_alive)) => {
                if status >= 500 {
                    errors += 1;
                }
                samples.push(start.elapsed());
                if !keep_alive {
                    conn = None;
                }
            }
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
    }
    Ok((samples, errors))
}

/// One request and its response; returns (status, whether the connection stays open).
pub(crate) async fn exchange(
    c: &mut BufReader<TcpStream>,
    request: &[u8],
) -> anyhow::Result<(u16, bool)> {
    c.get_mut().write_all(request).await?;
    let mut line = String::new();
    c.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let mut length: Option<usize> = None;
    let mut keep_alive = true;
    loop {
        line.clear();
        if c.read_line(&mut line).await? == 0 {
            bail!("connection closed in headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse().ok();
            } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if k == "transfer-encoding" {
                bail!("chunked responses are not supported by this load generator");
            }
        }
    }
    let mut body = vec![0u8; length.context("response without content-length")?];
    c.read_exact(&mut body).await?;
    Ok((status, keep_alive))
}
