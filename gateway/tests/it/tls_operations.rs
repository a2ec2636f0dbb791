//! Operating HTTPS: certificate rotation under load, the CLI's certificate commands, the
//! operator's default certificate and session resumption, with real TLS clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use reqwest::{Method, StatusCode};

use crate::support::api::{Api, OP};
use crate::support::tls::*;
use crate::support::*;

/// Rotating a certificate three times while clients keep opening connections: no handshake or
/// request fails, new connections get the newest certificate, and a connection opened before
/// the rotations keeps serving (with the certificate it was opened with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_drops_no_connection() {
    let (url, store) = fresh_store(StoreKind::Postgres).await;
    let up = Upstream::start("up").await;
    let AcmeOverHttps {
        gw,
        tls_addr,
        ca,
        leaf: first,
        key,
    } = acme_over_https(&url, &store, &up.target(), "Wharf rotation CA").await;
    let api = Api::new(&gw);

    let kept = https_client(&ca, tls_addr);
    assert_eq!(
        sha(&served_cert(&kept, tls_addr.port()).await.unwrap()),
        sha(&first)
    );

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (ca, stop) = (ca.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            // Bounded: at most 2,000 handshakes per task, stopping once rotations are done.
            for _ in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                // A new client per request: a new connection and handshake each time.
                match served_cert(&https_client(&ca, tls_addr), tls_addr.port()).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }));
    }
    let mut newest = first.clone();
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (chain, private, der) = ca.leaf(&["acme.test"]);
        let (s, v) = upload(&api, "acme", &key, "main", &chain, &private).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        gw.wait_for_version(v["config_version"].as_i64().unwrap())
            .await;
        newest = der;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for t in load {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 20, "the load ran ({ok} requests)");
    assert_eq!(
        sha(&served_cert(&https_client(&ca, tls_addr), tls_addr.port())
            .await
            .unwrap()),
        sha(&newest),
        "new connections get the newest certificate"
    );
    assert_eq!(
        sha(&served_cert(&kept, tls_addr.port()).await.unwrap()),
        sha(&first),
        "the connection opened before the rotations is still serving"
    );
}

/// The CLI stores a certificate straight into the store (sealing the key with the fleet's
/// key-encryption key) and lists it through the API; the gateway serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_stores_and_lists_certificates() {
    let (url, _, _up) = acme_routed(StoreKind::Sqlite).await;
    let ca = Ca::new("Wharf CLI CA");
    let (chain, private, der) = ca.leaf(&["acme.test"]);
    let dir = std::env::temp_dir().join(format!("wharf-cli-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("chain.pem"), &chain).unwrap();
    std::fs::write(dir.join("key.pem"), &private).unwrap();
    let kek = "42".repeat(32);
    let env = [("WHARF_TLS_KEY_ENCRYPTION_KEY", kek.as_str())];
    let (ok, out) = run_wharf(
        &[
            "cert",
            "add",
            "--tenant",
            "acme",
            "--name",
            "main",
            "--chain",
            dir.join("chain.pem").to_str().unwrap(),
            "--key",
            dir.join("key.pem").to_str().unwrap(),
            "--store",
            &url,
        ],
        &env,
    );
    assert!(ok, "{out}");
    assert!(out.contains("acme.test"), "{out}");
    let (ok, out) = run_wharf(
        &[
            "cert",
            "add",
            "--tenant",
            "acme",
            "--name",
            "bad",
            "--chain",
            dir.join("key.pem").to_str().unwrap(),
            "--key",
            dir.join("key.pem").to_str().unwrap(),
            "--store",
            &url,
        ],
        &env,
    );
    assert!(!ok && out.contains("no PEM certificate"), "{out}");

    let tls_addr = free_addr();
    let gw = Wharf::start_configured(
        &url,
        &format!("operator_token = \"{OP}\"\ntls_listen = \"{tls_addr}\"\n[tls]\nkey_encryption_key = \"{kek}\""),
        &[],
    )
    .await;
    let (peer, _, status, _) = https_get(tls_addr, &ca, "acme.test", "acme.test", &[])
        .await
        .unwrap();
    assert_eq!((sha(&peer), status), (sha(&der), 200));
    let admin = format!("http://{}", gw.admin);
    let (ok, out) = run_wharf(
        &[
            "cert", "list", "--tenant", "acme", "--api", &admin, "--token", OP,
        ],
        &[],
    );
    assert!(
        ok && out.contains("main") && out.contains("acme.test"),
        "{out}"
    );
    assert!(!out.contains("PRIVATE"), "{out}");
}

/// With an operator default certificate, names without a tenant certificate get it (never
/// another tenant's), requests for a tenant's Host over such a session are misdirected, and
/// sessions resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_certificate_for_unknown_names_and_session_resumption() {
    let (url, _, _up) = acme_routed(StoreKind::Sqlite).await;
    let ca = Ca::new("Wharf default CA");
    let (chain, private, default_der) = ca.leaf(&["gateway.operator.test"]);
    let dir = std::env::temp_dir().join(format!("wharf-default-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("default.pem"), &chain).unwrap();
    std::fs::write(dir.join("default.key"), &private).unwrap();
    let tls_addr = free_addr();
    let gw = Wharf::start_configured(
        &url,
        &format!(
            "operator_token = \"{OP}\"\ntls_listen = \"{tls_addr}\"\n[tls]\ndefault_certificate = \"{}\"\ndefault_key = \"{}\"",
            dir.join("default.pem").display(),
            dir.join("default.key").display()
        ),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    let (s, v) = api
        .call(Method::POST, "/v1/tenants/acme/api-keys", Some(OP), None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["key"].as_str().unwrap().to_string();
    let (a_chain, a_key, a_der) = ca.leaf(&["acme.test"]);
    let (s, v) = upload(&api, "acme", &key, "main", &a_chain, &a_key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;

    // A name nobody owns gets the operator's certificate; the name is not a tenant's, so the
    // client's own name check fails: that is the point, no tenant's certificate is shown.
    let unknown = https_get(tls_addr, &ca, "nobody.test", "nobody.test", &[]).await;
    let err = unknown.unwrap_err();
    assert!(
        err.contains("only valid for DnsName(\"gateway.operator.test\")"),
        "{err}"
    );
    let (peer, _, status, body) =
        https_get(tls_addr, &ca, "gateway.operator.test", "acme.test", &[])
            .await
            .unwrap();
    assert_eq!(
        sha(&peer),
        sha(&default_der),
        "the operator's default certificate"
    );
    assert_eq!(
        status, 421,
        "acme's Host over a session opened for another name: {body}"
    );
    let (peer, _, status, _) = https_get(tls_addr, &ca, "acme.test", "acme.test", &[])
        .await
        .unwrap();
    assert_eq!((sha(&peer), status), (sha(&a_der), 200));

    // Session resumption: openssl reconnects five times with the first session.
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &tls_addr.to_string(),
            "-servername",
            "acme.test",
            "-reconnect",
            "-tls1_2",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.matches("Reused, TLSv1.2").count() >= 4, "{text}");
    let m = gw.metrics().await;
    assert!(
        metric_value(
            &m,
            r#"wharf_tls_handshakes_total{outcome="default_certificate",tenant="_unknown"}"#
        ) >= 2.0,
        "{m}"
    );
}
