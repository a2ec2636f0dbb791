//! Operating a fleet: readiness, and restarts that lose no request. Two nodes on one Postgres
//! under steady load; one is stopped with SIGTERM and started again while a client that behaves
//! like a load balancer (idempotent GETs retried on the other node when a connection is refused
//! or reset before any answer) keeps sending. Shutdown finishes what is in flight, admin writes
//! included; the SQLite store survives `kill -9`. Upgrades in place: `upgrade.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::api::OP;
use crate::support::raw::{get, get_path, Miss};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_node_under_load_loses_no_request() {
    let (url, _, _up) = acme_routed(StoreKind::Postgres).await;
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
    // A tenant whose write was acknowledged routes after the restart (a writer's first write
    // may have timed out on a loaded machine: `w0-t0` itself is not promised).
    let host = format!("{}.test", acked[0]);
    assert_eq!(gw.get(&host, "/").await.json["error"], "no_route");
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
