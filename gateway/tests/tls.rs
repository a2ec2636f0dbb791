//! HTTPS for tenants' own hostnames, with real TLS clients (rustls, curl, openssl s_client):
//! certificates uploaded through the admin API and chosen by SNI from the tenant owning the
//! name, wildcard certificates, unknown names refused, uploads validated, keys never returned,
//! SNI/Host mismatch refused with 421, rotation live, HTTP/2 by ALPN.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use reqwest::{Method, StatusCode};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::api::{Api, Body, OP};
use support::*;

/// A test CA that issues leaf certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// (chain PEM, key PEM, leaf DER) for `names`, valid from `from` to `until` (years).
    fn leaf_valid(&self, names: &[&str], from: i32, until: i32) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(until, 1, 1);
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn leaf(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        self.leaf_valid(names, 2020, 2090)
    }

    /// An intermediate CA signed by this one.
    fn intermediate(&self, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            cert: p.signed_by(&key, &self.cert, &self.key).unwrap(),
            key,
        }
    }
}

/// A TLS client trusting `ca`: the handshake's peer certificate (DER) and negotiated ALPN,
/// and the answer to one HTTP/1.1 request (status, body), or the handshake error.
async fn https_get(
    addr: SocketAddr,
    ca: &Ca,
    sni: &str,
    host: &str,
    alpn: &[&[u8]],
) -> Result<(Vec<u8>, Option<Vec<u8>>, u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let peer: Vec<u8> = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c: &CertificateDer<'_>| c.to_vec())
        .unwrap_or_default();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    if alpn.as_deref() == Some(b"h2") {
        return Ok((peer, alpn, 0, String::new()));
    }
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((peer, alpn, status, body))
}

async fn create_tenant(api: &Api, id: &str, hosts: &[&str]) -> String {
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(OP),
            Some(Body::Json(json!({"id": id, "hostnames": hosts}))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{id}/api-keys"),
            Some(OP),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["key"].as_str().unwrap().to_string()
}

async fn upload(
    api: &Api,
    tenant: &str,
    key: &str,
    name: &str,
    chain: &str,
    private: &str,
) -> (StatusCode, Value) {
    api.call(
        Method::PUT,
        &format!("/v1/tenants/{tenant}/certificates/{name}"),
        Some(key),
        Some(Body::Json(json!({"chain_pem": chain, "key_pem": private}))),
    )
    .await
}

fn sha(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_certificates_by_sni_with_real_clients() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    let tls_addr = free_addr();
    let kek = "11".repeat(32);
    let gw = Wharf::start_configured(
        &url,
        &format!(
            "operator_token = \"{OP}\"\ntls_listen = \"{tls_addr}\"\n[tls]\nkey_encryption_key = \"{kek}\""
        ),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    let ka = create_tenant(&api, "acme", &["acme.test", "*.acme.test"]).await;
    let kb = create_tenant(&api, "beta", &["beta.test"]).await;
    for t in ["acme", "beta"] {
        store
            .put_route(t, route("all", "/", &[&up.target()]))
            .await
            .unwrap();
    }
    let ca = Ca::new("Wharf test CA");
    let inter = ca.intermediate("Wharf test intermediate");

    // Refused uploads, each with its reason in words.
    let (chain, key, _) = ca.leaf(&["beta.test"]);
    let (s, v) = upload(&api, "acme", &ka, "stolen", &chain, &key).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("none of which is a hostname of this tenant"),
        "{v}"
    );
    let (chain, _, _) = ca.leaf(&["acme.test"]);
    let (_, other_key, _) = ca.leaf(&["acme.test"]);
    let (s, v) = upload(&api, "acme", &ka, "main", &chain, &other_key).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["message"].as_str().unwrap().contains("does not belong"),
        "{v}"
    );
    let (chain, key, _) = ca.leaf_valid(&["acme.test"], 2000, 2001);
    let (s, v) = upload(&api, "acme", &ka, "main", &chain, &key).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
    let (leaf_pem, key, _) = inter.leaf(&["acme.test"]);
    let disordered = format!("{}{}", inter.cert.pem(), leaf_pem);
    let (s, v) = upload(&api, "acme", &ka, "main", &disordered, &key).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["message"].as_str().unwrap().contains("out of order"),
        "{v}"
    );
    let (s, v) = upload(&api, "acme", &ka, "main", "not a pem", &key).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no PEM certificate"),
        "{v}"
    );
    let (s, _) = upload(&api, "beta", &ka, "x", &chain, &key).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another tenant's API: as if it did not exist"
    );

    // Accepted: acme's exact host (leaf + intermediate), its wildcard, beta's host.
    let ordered = format!("{}{}", leaf_pem, inter.cert.pem());
    let (s, v) = upload(&api, "acme", &ka, "main", &ordered, &key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["certificate"]["hostnames"], json!(["acme.test"]));
    let (wild_chain, wild_key, wild_der) = ca.leaf(&["*.acme.test"]);
    let (s, v) = upload(&api, "acme", &ka, "wild", &wild_chain, &wild_key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (b_chain, b_key, b_der) = ca.leaf(&["beta.test"]);
    let (s, v) = upload(&api, "beta", &kb, "main", &b_chain, &b_key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;

    // The private key is never returned, and is stored sealed.
    let (_, listed) = api
        .call(
            Method::GET,
            "/v1/tenants/acme/certificates",
            Some(&ka),
            None,
        )
        .await;
    assert_eq!(listed["certificates"].as_array().unwrap().len(), 2);
    let (_, tenant) = api
        .call(Method::GET, "/v1/tenants/acme", Some(&ka), None)
        .await;
    for text in [listed.to_string(), tenant.to_string(), gw.log()] {
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("key_sealed"),
            "{text}"
        );
    }
    let stored = store.tenant("acme").await.unwrap().certificates;
    assert!(stored
        .iter()
        .all(|c| c.key_sealed.starts_with("v1:") && !c.key_sealed.contains("PRIVATE")));

    // SNI picks the owner's certificate: exact, wildcard, another tenant.
    let leaf_der = rustls_pemfile::certs(&mut leaf_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec();
    let (peer, _, status, body) = https_get(tls_addr, &ca, "acme.test", "acme.test", &[])
        .await
        .unwrap();
    assert_eq!(sha(&peer), sha(&leaf_der));
    assert_eq!(status, 200, "{body}");
    let (peer, _, status, _) = https_get(tls_addr, &ca, "www.acme.test", "www.acme.test", &[])
        .await
        .unwrap();
    assert_eq!(sha(&peer), sha(&wild_der), "wildcard certificate");
    assert_eq!(status, 200);
    let (peer, _, status, _) = https_get(tls_addr, &ca, "beta.test", "beta.test", &[])
        .await
        .unwrap();
    assert_eq!(sha(&peer), sha(&b_der));
    assert_eq!(status, 200);

    // A name nobody owns (no default certificate configured): no handshake, no certificate.
    let unknown = https_get(tls_addr, &ca, "nobody.test", "nobody.test", &[]).await;
    assert!(unknown.is_err(), "{unknown:?}");

    // One TLS session never reaches another tenant.
    let (_, _, status, body) = https_get(tls_addr, &ca, "acme.test", "beta.test", &[])
        .await
        .unwrap();
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("misdirected_request"), "{body}");

    // HTTP/2 by ALPN, and a real h2 request with curl.
    let (_, alpn, _, _) = https_get(
        tls_addr,
        &ca,
        "acme.test",
        "acme.test",
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let ca_file = std::env::temp_dir().join(format!("wharf-test-ca-{}.pem", tls_addr.port()));
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let curl = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--resolve")
        .arg(format!("beta.test:{}:127.0.0.1", tls_addr.port()))
        .arg("--cacert")
        .arg(&ca_file)
        .arg(format!("https://beta.test:{}/", tls_addr.port()))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // openssl s_client sees the chain acme uploaded, and TLS 1.1 is refused.
    let s_client = |extra: &[&str]| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &tls_addr.to_string(),
            "-servername",
            "acme.test",
            "-showcerts",
        ])
        .args(extra)
        .stdin(std::process::Stdio::null());
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let shown = s_client(&[]);
    assert!(shown.contains("Wharf test intermediate"), "{shown}");
    assert!(shown.contains("TLSv1.3"), "{shown}");
    let old = s_client(&["-tls1_1"]);
    assert!(
        !old.contains("BEGIN CERTIFICATE"),
        "TLS 1.1 must not complete: {old}"
    );

    // Rotation: a new certificate under the same name serves new handshakes.
    let (new_chain, new_key, new_der) = ca.leaf(&["beta.test"]);
    let (s, v) = upload(&api, "beta", &kb, "main", &new_chain, &new_key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    let (peer, _, status, _) = https_get(tls_addr, &ca, "beta.test", "beta.test", &[])
        .await
        .unwrap();
    assert_eq!(sha(&peer), sha(&new_der), "rotated without a restart");
    assert_eq!(status, 200);

    // Metrics: handshakes by tenant and outcome, expiry per host.
    let m = gw.metrics().await;
    assert!(
        metric_value(
            &m,
            r#"wharf_tls_handshakes_total{outcome="tenant_certificate",tenant="acme"}"#
        ) >= 3.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            r#"wharf_tls_handshakes_total{outcome="refused",tenant="_unknown"}"#
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"wharf_tls_certificate_expiry_timestamp_seconds{host="beta.test",tenant="beta"}"#
        ),
        3786912000.0,
        "2090-01-01"
    );

    // Deleting the certificate: beta.test has none any more.
    let (s, v) = api
        .call(
            Method::DELETE,
            "/v1/tenants/beta/certificates/main",
            Some(&kb),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    assert!(https_get(tls_addr, &ca, "beta.test", "beta.test", &[])
        .await
        .is_err());
}

/// An HTTPS client trusting `ca` that resolves every name to the gateway's TLS listener and
/// reports the server certificate of each answer.
fn https_client(ca: &Ca, tls_addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(ca.cert.der()).unwrap())
        .resolve("acme.test", tls_addr)
        .tls_info(true)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The leaf certificate (DER) an answer came over.
async fn served_cert(client: &reqwest::Client, port: u16) -> Result<Vec<u8>, String> {
    let resp = client
        .get(format!("https://acme.test:{port}/"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let der = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .ok_or("no TLS info")?;
    let _ = resp.bytes().await;
    Ok(der)
}

/// Rotating a certificate three times while clients keep opening connections: no handshake or
/// request fails, new connections get the newest certificate, and a connection opened before
/// the rotations keeps serving (with the certificate it was opened with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_drops_no_connection() {
    let (url, store) = fresh_store(StoreKind::Postgres).await;
    let up = Upstream::start("up").await;
    let tls_addr = free_addr();
    let gw = Wharf::start_configured(
        &url,
        &format!("operator_token = \"{OP}\"\ntls_listen = \"{tls_addr}\""),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    let key = create_tenant(&api, "acme", &["acme.test"]).await;
    store
        .put_route("acme", route("all", "/", &[&up.target()]))
        .await
        .unwrap();
    let ca = Arc::new(Ca::new("Wharf rotation CA"));
    let (chain, private, first) = ca.leaf(&["acme.test"]);
    let (_, v) = upload(&api, "acme", &key, "main", &chain, &private).await;
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;

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
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "acme",
        &["acme.test"],
        route("all", "/", &[&up.target()]),
    )
    .await;
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
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    tenant_with_route(
        &store,
        "acme",
        &["acme.test"],
        route("all", "/", &[&up.target()]),
    )
    .await;
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
