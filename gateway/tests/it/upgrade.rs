//! Upgrading a node in place: `wharf upgrade` hands the listening sockets (proxy, HTTPS, admin)
//! to a new process, which never refuses a connection, under load.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::raw::{get, get_path, Miss};
use crate::support::tls::{acme_over_https, https_get, AcmeOverHttps};
use crate::support::*;

/// `wharf upgrade` under load on a single node (SQLite, the single-node default): the new
/// process takes the proxy's, the HTTPS listener's and the admin API's listening sockets over,
/// the old one drains and exits. Two upgrades in a row (the second proves the new process passes the sockets on). No
/// connection is ever refused, to the proxy or the admin API; no request fails. A request caught
/// on a connection the old process closed before answering is retried once on the same address,
/// as a load balancer retries an idempotent request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_a_node_in_place_under_load_refuses_no_connection() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    // acme serves HTTPS with its own certificate (its key sealed under the key-encryption key
    // the first process generated into the data dir, which the upgraded ones read).
    let AcmeOverHttps {
        gw: mut node,
        tls_addr,
        ca,
        ..
    } = acme_over_https(&url, &store, &up.target(), "upgrade CA").await;
    let (proxy, admin) = (node.proxy, node.admin);
    let first_pid = node.pid();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let misses = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    // Three clients on the proxy and one on the admin API, a new connection each.
    for c in 0..4usize {
        let (stop, ok, retried, misses) =
            (stop.clone(), ok.clone(), retried.clone(), misses.clone());
        let addr = if c == 3 { admin } else { proxy };
        clients.push(tokio::spawn(async move {
            for _ in 0..50_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let answer = match get(addr).await {
                    Err(Miss::NoAnswer) => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        get(addr).await
                    }
                    other => other,
                };
                match answer {
                    // The admin API answers 404 to `GET /` with Host acme.test: it answered.
                    Ok(200) | Ok(404) if c == 3 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        misses.lock().push(format!("{addr}: {other:?}"));
                        0
                    }
                };
            }
        }));
    }
    // One HTTPS client, a new TLS connection per request.
    let https_ok = Arc::new(AtomicUsize::new(0));
    let tls_client = {
        let (stop, ok, retried, misses, ca) = (
            stop.clone(),
            https_ok.clone(),
            retried.clone(),
            misses.clone(),
            ca.clone(),
        );
        tokio::spawn(async move {
            let https = || https_get(tls_addr, &ca, "acme.test", "acme.test", &[b"http/1.1"]);
            for _ in 0..50_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let answer = match https().await {
                    // Connected, but the handshake or the answer never came: retry once.
                    Err(e) if !e.contains("refused") => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        https().await
                    }
                    Ok((_, _, 0, _)) => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        https().await
                    }
                    other => other,
                };
                match answer {
                    Ok((_, _, 200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        misses.lock().push(format!("https: {other:?}"));
                        0
                    }
                };
            }
        })
    };
    // And one keep-alive client, as a load balancer's connection pool.
    let pooled_retries = Arc::new(AtomicUsize::new(0));
    let keep_alive = {
        let (stop, ok, retried, misses) = (
            stop.clone(),
            ok.clone(),
            pooled_retries.clone(),
            misses.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = format!("http://{proxy}/");
            for _ in 0..50_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let send = || client.get(&url).header("Host", "acme.test").send();
                let answer = match send().await {
                    Err(_) => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        send().await
                    }
                    other => other,
                };
                let failure = match answer {
                    Ok(r) if r.status() == 200 => r.bytes().await.err().map(|e| e.to_string()),
                    Ok(r) => Some(r.status().to_string()),
                    Err(e) => Some(e.to_string()),
                };
                match failure {
                    None => ok.fetch_add(1, Ordering::Relaxed),
                    Some(f) => {
                        misses.lock().push(format!("keep-alive: {f}"));
                        0
                    }
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A request the old process still handles when it stops accepting (its upstream answers
    // after 7 s; the old process serves on for 5 s after the handover) finishes too.
    let slow = tokio::spawn(get_path(proxy, "/?sleep_ms=7000"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = node.upgrade().await;
    assert_eq!(
        slow.await.unwrap(),
        Ok(200),
        "the request in flight finished"
    );
    let second_pid = node.pid();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = node.upgrade().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    keep_alive.await.unwrap();
    tls_client.await.unwrap();

    let misses = misses.lock().clone();
    let (ok, retried) = (ok.load(Ordering::Relaxed), retried.load(Ordering::Relaxed));
    let pooled_retries = pooled_retries.load(Ordering::Relaxed);
    let https_ok = https_ok.load(Ordering::Relaxed);
    println!(
        "two upgrades under load: {ok} answered over HTTP, {https_ok} over HTTPS, {} failed; \
         retried on the same address: \
         {retried} on new connections, {pooled_retries} on the keep-alive pool; old process \
         exited {first:?} and {second:?} after `wharf upgrade` started",
        misses.len()
    );
    assert!(
        misses.is_empty(),
        "{} failed (a refusal means a socket was closed): {:?}",
        misses.len(),
        &misses[..misses.len().min(5)]
    );
    assert!(ok > 100 && https_ok > 10, "the load ran ({ok}, {https_ok})");
    let pids = [first_pid, second_pid, node.pid()];
    assert!(
        pids[0] != pids[1] && pids[1] != pids[2],
        "new processes: {pids:?}"
    );
    // The node on the same addresses is the last process: it serves and records itself.
    assert_eq!(node.get("acme.test", "/").await.status, 200);
    let recorded = std::fs::read_to_string(node.data_dir().join("wharf.pid")).unwrap();
    assert!(
        recorded.starts_with(&format!("{} ", node.pid())),
        "{recorded}"
    );
    assert_eq!(node.healthz().await["status"], "ok");
}

/// An upgrade with nothing to take over from fails at once, with a reason, and starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_without_a_running_node_refuses_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("wharf-noup-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("wharf.toml");
    let bootstrap = format!(
        "listen = \"{}\"\nadmin_listen = \"{}\"\ndata_dir = \"{}\"\n",
        free_addr(),
        free_addr(),
        dir.join("data").display()
    );
    std::fs::write(&config, bootstrap).unwrap();
    let upgrade = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["upgrade", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = upgrade();
    assert!(err.contains("no running node to upgrade"), "{err}");
    // A pid file whose pid now names another process is refused (its start time differs):
    // this test's own pid stands for the reused one, so nothing else is ever signalled.
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/wharf.pid"),
        format!("{} 1\n", std::process::id()),
    )
    .unwrap();
    let err = upgrade();
    assert!(err.contains("has exited"), "{err}");
}
