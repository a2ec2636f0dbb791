//! HTTPS for tenants' own hostnames, with real TLS clients (rustls, curl, openssl s_client):
//! certificates uploaded through the admin API and chosen by SNI from the tenant owning the
//! name, wildcard certificates, unknown names refused, uploads validated, keys never returned,
//! SNI/Host mismatch refused with 421, HTTP/2 by ALPN (rotation, the CLI and the default
//! certificate: tls_operations.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::api::{Api, OP};
use crate::support::tls::*;
use crate::support::*;

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
    // A huge upload is refused before it is read whole, let alone parsed: the client gets 413,
    // or sees the connection closed while still sending (the node stopped reading).
    let huge = json!({"chain_pem": "A".repeat(4 << 20), "key_pem": key});
    let sent = reqwest::Client::new()
        .put(format!(
            "http://{}/v1/tenants/acme/certificates/main",
            gw.admin
        ))
        .bearer_auth(&ka)
        .json(&huge)
        .send()
        .await;
    match sent {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request() && !e.is_timeout(), "{e:?}"),
    }
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
