//! Operating a fleet: readiness, and restarts that lose no request. Two nodes on one Postgres
//! under steady load; one is stopped with SIGTERM and started again while a client that behaves
//! like a load balancer (idempotent GETs retried on the other node when a connection is refused
//! or reset before any answer) keeps sending. A single node upgraded in place (`wharf upgrade`:
//! the listening sockets handed to the new process) under load never refuses a connection.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::api::OP;
use support::tls::{acme_over_https, https_get, AcmeOverHttps};
use support::*;

/// Why a GET got no status.
#[derive(Debug, PartialEq)]
enum Miss {
    /// No listener: the connection was refused.
    Refused,
    /// Connected, but closed or reset before any answer byte (safe to retry an idempotent GET).
    NoAnswer,
    /// The answer started and broke off.
    Broken,
}

/// One GET / on a new connection.
async fn get(addr: SocketAddr) -> Result<u16, Miss> {
    get_path(addr, "/").await
}

async fn get_path(addr: SocketAddr, path: &str) -> Result<u16, Miss> {
    let mut s = TcpStream::connect(addr).await.map_err(|_| Miss::Refused)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|_| Miss::NoAnswer)?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out).await {
        Ok(_) | Err(_) if out.is_empty() => Err(Miss::NoAnswer),
        Ok(_) => std::str::from_utf8(&out)
            .ok()
            .and_then(|t| t.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or(Miss::Broken),
        Err(_) => Err(Miss::Broken),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_node_under_load_loses_no_request() {
    let (url, store) = fresh_store(StoreKind::Postgres).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "acme",
        &["acme.test"],
        route("all", "/", &[&up.target()]),
    )
    .await;
    let mut n1 = Wharf::start(&url).await;
    let n2 = Wharf::start(&url).await;

    // Ready: config loaded, listener accepting, not draining.
    let ready = reqwest::get(format!("http://{}/readyz", n1.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");

    let nodes = [n1.proxy, n2.proxy];
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, retried) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for c in 0..4usize {
        let (stop, ok, retried, failures) =
            (stop.clone(), ok.clone(), retried.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            // Bounded: stops when told, or after 20,000 requests.
            for i in 0..20_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let first = nodes[(c + i) % 2];
                let answer = match get(first).await {
                    Err(Miss::Refused | Miss::NoAnswer) => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        get(nodes[(c + i + 1) % 2]).await
                    }
                    other => other,
                };
                match answer {
                    Ok(200) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.lock().push(format!("{first}: {other:?}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A slow request (the upstream answers after 1 s) is in flight when SIGTERM comes: the node
    // stops accepting, finishes it, and exits as soon as it is done (not after the whole grace
    // period, 5 s here).
    let slow = tokio::spawn(get_path(n1.proxy, "/?sleep_ms=1000"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = n1.terminate().await;
    assert_eq!(
        slow.await.unwrap(),
        Ok(200),
        "the request in flight finished"
    );
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(4500),
        "exited once drained: {took:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    n1.respawn().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().clone();
    let (ok, retried) = (ok.load(Ordering::Relaxed), retried.load(Ordering::Relaxed));
    println!("restart under load: {ok} answered, {retried} retried on the other node, {} failed; SIGTERM to exit {took:?}", failures.len());
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "the load ran ({ok})");
    assert!(retried > 0, "requests did reach the stopped node's address");
    // The restarted node serves again.
    assert_eq!(n1.get("acme.test", "/").await.status, 200);
}

/// The SQLite store survives `kill -9` in the middle of writes (WAL, synchronous commits): the
/// node starts again, the database checks clean, and every write it acknowledged is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_survives_kill_9_mid_write() {
    let (url, _) = fresh_store(StoreKind::Sqlite).await;
    let mut gw = Wharf::start_configured(&url, &format!("operator_token = \"{OP}\""), &[]).await;
    let base = format!("http://{}/v1/tenants", gw.admin);
    let acked = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (base, acked) = (base.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            for i in 0..200 {
                let id = format!("w{w}-t{i}");
                let body = serde_json::json!({"id": id, "hostnames": [format!("{id}.test")]});
                let sent = client.post(&base).bearer_auth(OP).json(&body).send().await;
                match sent {
                    // Only a 201 the client saw counts as acknowledged.
                    Ok(r) if r.status() == 201 => acked.lock().push(id),
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    gw.restart().await; // SIGKILL mid-write, then start again on the same database
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(acked.len() > 5, "writes were under way ({})", acked.len());

    let store = wharf_tenancy::Store::connect(&url).await.unwrap();
    let ids: std::collections::HashSet<String> = store
        .load()
        .await
        .unwrap()
        .tenants
        .into_iter()
        .map(|t| t.id)
        .collect();
    let lost: Vec<_> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    use sqlx::Connection;
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let check: (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(check.0, "ok");
    println!(
        "kill -9 mid-write: {} acknowledged writes, all present",
        acked.len()
    );
    assert_eq!(gw.get("w0-t0.test", "/").await.json["error"], "no_route");
}

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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["upgrade", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no running node to upgrade"), "{err}");
    // A pid file whose pid now names another process is refused (its start time differs):
    // this test's own pid stands for the reused one, so nothing else is ever signalled.
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/wharf.pid"),
        format!("{} 1\n", std::process::id()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["upgrade", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("has exited"), "{err}");
}

/// SIGTERM while an admin write is under way (a JavaScript plugin upload: validated and compiled
/// for seconds before it is stored): the node finishes it, answers 201, then exits; the version
/// is in the store. Admin requests count as in flight just like proxied ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_admin_write_finishes_it_first() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let mut gw = Wharf::start_configured(
        &url,
        &format!("operator_token = \"{OP}\"\ngrace_period_seconds = 60"),
        &[],
    )
    .await;
    store.create_tenant("acme", "Acme", &[]).await.unwrap();
    let bytes = wharf_plugins::test_support::example_plugin("path-rewrite");
    let upload = tokio::spawn(
        reqwest::Client::new()
            .put(format!(
                "http://{}/v1/tenants/acme/plugins/rewrite",
                gw.admin
            ))
            .bearer_auth(OP)
            .body(bytes)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!upload.is_finished(), "the upload is still compiling");
    let took = gw.terminate().await;
    let answer = upload.await.unwrap().expect("answered");
    assert_eq!(answer.status(), 201, "{:?}", answer.text().await);
    let versions = store.tenant("acme").await.unwrap().plugins;
    assert_eq!(versions.len(), 1, "stored");
    println!("SIGTERM during an upload: answered 201, exited {took:?} after SIGTERM");
}
