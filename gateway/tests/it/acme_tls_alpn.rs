//! TLS-ALPN-01 (RFC 8737) on the TLS listener, against a real pebble validating over TLS and a
//! real dnsmasq, and from a hostile client's side with `openssl s_client -alpn acme-tls/1`: a
//! challenge certificate only for a name with an order waiting, never a routed connection.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use x509_parser::prelude::*;

use crate::acme::{served, wait_acme};
use crate::support::api::{Api, OP};
use crate::support::dns::Dns;
use crate::support::pebble::Pebble;
use crate::support::tls::create_tenant;
use crate::support::{free_addr, fresh_store, route, run_wharf, StoreKind, Upstream, Wharf};

/// `openssl s_client` to `addr` for `sni` offering `alpn`, `input` written after the handshake:
/// its output (stdout and stderr).
pub(crate) fn s_client(addr: std::net::SocketAddr, sni: &str, alpn: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(addr.to_string())
        .args(["-servername", sni, "-alpn", alpn, "-showcerts", "-ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Whether s_client saw a leaf issued by pebble's CA ("Pebble Intermediate CA …").
pub(crate) fn issued_by_pebble(shown: &str) -> bool {
    shown
        .lines()
        .find(|l| l.contains("i:"))
        .is_some_and(|l| l.contains("Pebble"))
}

/// The leaf s_client printed (DER), if the handshake got one.
fn leaf(shown: &str) -> Option<Vec<u8>> {
    let pem = shown.split("-----BEGIN CERTIFICATE-----").nth(1)?;
    let pem = format!("-----BEGIN CERTIFICATE-----{pem}");
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .map(|c| c.unwrap().to_vec());
    der
}

/// The acmeIdentifier extension's value (RFC 8737 §3), if the certificate carries one.
fn acme_identifier(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .map(|e| e.value.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_a_certificate_over_the_tls_listener() {
    let host = "alpn.customer.test";
    let dns = Dns::start(&[(host, "127.0.0.1")]);
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("alpn-upstream").await;
    let mut pebble = Pebble::prepare();
    let tls_addr = free_addr();
    let gw = Wharf::start_configured(
        &url,
        &format!(
            "operator_token = \"{OP}\"\ntls_listen = \"{tls_addr}\"\n{}challenge = \"tls-alpn-01\"\n",
            pebble.acme_toml()
        ),
        &[],
    )
    .await;
    // HTTP-01 would go to a port where nothing listens: only the TLS listener can answer.
    pebble.start(free_addr().port(), tls_addr.port(), dns.addr, 3600);
    let api = Api::new(&gw);
    let key = create_tenant(&api, "alpn", &[host]).await;
    store
        .put_route("alpn", route("all", "/", &[&up.addr.to_string()]))
        .await
        .unwrap();

    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/v1/tenants/alpn/acme/{host}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let row = wait_acme(&api, "alpn", &key, host, Duration::from_secs(60), |r| {
        r["state"] != "pending"
    })
    .await;
    assert_eq!(row["state"], "valid", "{row}\npebble:\n{}", pebble.log());

    // Served by SNI, verified against pebble's root; openssl sees pebble's CA as the issuer.
    let root = pebble.root_pem().await;
    served(tls_addr, &root, host).await;
    let shown = s_client(tls_addr, host, "http/1.1", "");
    assert!(issued_by_pebble(&shown), "{shown}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("wharf_tls_handshakes_total{outcome=\"acme_challenge\",tenant=\"alpn\"}"),
        "validated over TLS-ALPN-01: {}",
        metrics
            .lines()
            .filter(|l| l.contains("handshakes"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(pebble);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_tls_hellos_get_a_challenge_certificate_only_for_a_waiting_order() {
    let (shop, rival) = ("waiting.customer.test", "rival.customer.test");
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("waiting-upstream").await;
    let tls_addr = free_addr();
    // Answers challenges only (no CA reachable, no orders placed): the published answers are
    // what any node of a fleet would serve.
    let gw = Wharf::start_configured(
        &url,
        &format!(
            "operator_token = \"{OP}\"\ntls_listen = \"{tls_addr}\"\n[acme]\n\
             directory_url = \"https://127.0.0.1:9/dir\"\nplace_orders = false\n\
             challenge_refresh_ms = 100\nchallenge = \"tls-alpn-01\"\n"
        ),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    create_tenant(&api, "shop", &[shop]).await;
    create_tenant(&api, "rival", &[rival]).await;
    store
        .put_route("shop", route("all", "/", &[&up.addr.to_string()]))
        .await
        .unwrap();
    let ka = "tok-shop.thumbprint";
    let expires = wharf_tenancy::store::now_ms() + 60_000;
    store
        .put_acme_challenge("tok-shop", shop, ka, "tls-alpn-01", expires)
        .await
        .unwrap();

    // The CA's hello for the waiting name: the challenge certificate, acme-tls/1 negotiated.
    let start = Instant::now();
    let shown = loop {
        let shown = s_client(tls_addr, shop, "acme-tls/1", "");
        if shown.contains("BEGIN CERTIFICATE") {
            break shown;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(shown.contains("ALPN protocol: acme-tls/1"), "{shown}");
    let der = leaf(&shown).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, ka.as_bytes());
    let mut expected = vec![0x04, 32];
    expected.extend_from_slice(digest.as_ref());
    assert_eq!(acme_identifier(&der), Some(expected), "{shown}");

    // Hostile hellos: another tenant's name, a name nobody owns (no order waits on either),
    // and the waiting name asking for HTTP as well: no challenge certificate.
    for (sni, alpn) in [
        (rival, "acme-tls/1"),
        ("nobody.customer.test", "acme-tls/1"),
        (shop, "h2,acme-tls/1"),
    ] {
        let shown = s_client(tls_addr, sni, alpn, "");
        let got = leaf(&shown);
        assert!(
            got.as_deref().and_then(acme_identifier).is_none(),
            "{sni} {alpn}: {shown}"
        );
    }
    // A request sent over the validation connection is never routed: closed after the handshake.
    let shown = s_client(
        tls_addr,
        shop,
        "acme-tls/1",
        &format!("GET / HTTP/1.1\r\nHost: {shop}\r\n\r\n"),
    );
    assert!(shown.contains("ALPN protocol: acme-tls/1"), "{shown}");
    assert!(!shown.contains("HTTP/1.1 "), "routed: {shown}");
    assert!(!shown.contains("waiting-upstream"), "routed: {shown}");

    // The answer withdrawn: the name's acme-tls/1 hellos are refused again.
    store.delete_acme_challenge("tok-shop").await.unwrap();
    let start = Instant::now();
    while leaf(&s_client(tls_addr, shop, "acme-tls/1", "")).is_some() {
        assert!(start.elapsed() < Duration::from_secs(10), "still answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("wharf_tls_handshakes_total{outcome=\"refused\",tenant=\"rival\"}"),
        "{metrics}"
    );
}

#[test]
fn an_unknown_challenge_or_tls_alpn_01_without_a_tls_listener_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("wharf-alpn-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("wharf.toml");
    let data = dir.join("data");
    for (toml, says) in [
        (
            "[acme]\nchallenge = \"dns-01\"\n",
            "unknown variant `dns-01`",
        ),
        ("[acme]\nchallenge = \"tls-alpn-01\"\n", "set tls_listen"),
    ] {
        std::fs::write(&config, toml).unwrap();
        let (ok, out) = run_wharf(
            &[
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &free_addr().to_string(),
                "--admin-listen",
                &free_addr().to_string(),
            ],
            &[],
        );
        assert!(!ok && out.contains(says), "{toml}: {out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
