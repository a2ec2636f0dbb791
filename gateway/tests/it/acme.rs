//! Certificates issued and renewed over ACME, against a real ACME server: pebble on loopback,
//! validating HTTP-01 on the gateway's plain listener, resolving the tenants' names through a
//! real dnsmasq. No mocks: the certificate a TLS client then sees is pebble's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};

use crate::support::api::{Api, Body, OP};
use crate::support::dns::Dns;
use crate::support::pebble::Pebble;
use crate::support::tls::create_tenant;
use crate::support::{free_addr, fresh_store, route, StoreKind, Upstream, Wharf};

pub(crate) const HOST: &str = "shop.customer.test";

/// A TLS handshake with SNI `sni`, the chain verified against `root_pem`: the leaf (DER).
pub(crate) async fn handshake(
    addr: SocketAddr,
    root_pem: &str,
    sni: &str,
) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok(leaf)
}

/// The leaf served for `sni` once a handshake verifies against `root_pem` (the node applies
/// an issued certificate on its next config poll).
pub(crate) async fn served(addr: SocketAddr, root_pem: &str, sni: &str) -> Vec<u8> {
    let start = Instant::now();
    loop {
        match handshake(addr, root_pem, sni).await {
            Ok(leaf) => return leaf,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "{addr} {sni}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tenant's ACME row for `host`, once `done` holds for it (within `within`).
pub(crate) async fn wait_acme(
    api: &Api,
    tenant: &str,
    key: &str,
    host: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (s, v) = api
            .call(
                Method::GET,
                &format!("/v1/tenants/{tenant}/acme"),
                Some(key),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let row = v["hostnames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["hostname"] == host)
            .cloned()
            .unwrap_or(Value::Null);
        if done(&row) {
            return row;
        }
        assert!(start.elapsed() < within, "ACME row of {host} now: {row}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A node with HTTPS and ACME against a fresh pebble issuing `validity_secs` certificates.
pub(crate) async fn node_with_pebble(
    url: &str,
    dns: &Dns,
    validity_secs: u64,
) -> (Wharf, SocketAddr, Pebble) {
    let mut pebble = Pebble::prepare();
    let tls_addr = free_addr();
    let gw = Wharf::start_configured(
        url,
        &format!(
            "operator_token = \"{OP}\"\ntls_listen = \"{tls_addr}\"\n{}",
            pebble.acme_toml()
        ),
        &[],
    )
    .await;
    pebble.start(gw.proxy.port(), tls_addr.port(), dns.addr, validity_secs);
    (gw, tls_addr, pebble)
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_gets_a_pebble_certificate_renewed_and_dropped_with_the_name() {
    let dns = Dns::start(&[(HOST, "127.0.0.1")]);
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("shop-upstream").await;
    // Short-lived: renewed at about two thirds, ~16 s in.
    let (gw, tls_addr, pebble) = node_with_pebble(&url, &dns, 24).await;
    let api = Api::new(&gw);
    let key = create_tenant(&api, "shop", &[HOST]).await;
    store
        .put_route("shop", route("all", "/", &[&up.addr.to_string()]))
        .await
        .unwrap();

    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/v1/tenants/shop/acme/{HOST}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["hostname"]["state"], "pending", "{v}");
    let row = wait_acme(&api, "shop", &key, HOST, Duration::from_secs(60), |r| {
        r["state"] == "valid"
    })
    .await;
    assert_eq!(row["last_error"], "", "{row}");
    let issued_at = row["issued_at_ms"].as_i64().unwrap();
    let not_after = row["not_after_ms"].as_i64().unwrap();
    let next = row["next_attempt_ms"].as_i64().unwrap();
    assert!(
        next > issued_at && next < not_after,
        "renewal between issue and expiry: {row}"
    );

    // Served by SNI, the chain verified against pebble's root only.
    let root = pebble.root_pem().await;
    let first = served(tls_addr, &root, HOST).await;
    let shown = crate::acme_tls_alpn::s_client(tls_addr, HOST, "http/1.1", "");
    assert!(
        crate::acme_tls_alpn::issued_by_pebble(&shown),
        "openssl s_client -servername {HOST}: {shown}"
    );
    let (s, certs) = api
        .call(
            Method::GET,
            "/v1/tenants/shop/certificates",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        certs["certificates"][0]["name"],
        format!("acme:{HOST}"),
        "{certs}"
    );
    assert_eq!(certs["certificates"][0]["fingerprint"], fingerprint(&first));

    // Renewed before expiry, validated again (no reused authorizations), served.
    let renewed = wait_acme(&api, "shop", &key, HOST, Duration::from_secs(40), |r| {
        r["issued_at_ms"].as_i64() > Some(issued_at)
    })
    .await;
    assert_eq!(renewed["state"], "valid", "{renewed}");
    let start = Instant::now();
    loop {
        let leaf = handshake(tls_addr, &root, HOST).await.unwrap_or_default();
        if !leaf.is_empty() && leaf != first {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "renewed certificate not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("wharf_acme_orders_total{outcome=\"issued\"} 2")
            || metrics.contains("wharf_acme_orders_total{outcome=\"issued\"} 3"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("acme"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The name removed: no more renewals, its certificate no longer served.
    let (s, v) = api
        .call(
            Method::DELETE,
            &format!("/v1/tenants/shop/hostnames/{HOST}"),
            Some(OP),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    let (_, list) = api
        .call(Method::GET, "/v1/tenants/shop/acme", Some(&key), None)
        .await;
    assert_eq!(list["hostnames"], json!([]), "{list}");
    assert!(
        handshake(tls_addr, &root, HOST).await.is_err(),
        "still served"
    );
    assert!(store.acme_due(100).await.unwrap().is_empty());
    drop(pebble);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_ownership_caps_and_tenant_deletion() {
    // The CA reaches 127.0.0.2, where nothing listens: validation fails for real.
    let broken = "broken.customer.test";
    let dns = Dns::start(&[(broken, "127.0.0.2")]);
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let (gw, _tls, pebble) = node_with_pebble(&url, &dns, 3600).await;
    let api = Api::new(&gw);
    let flood: Vec<String> = (1..=3).map(|i| format!("f{i}.customer.test")).collect();
    let mut names = vec![broken, "*.wild.customer.test"];
    names.extend(flood.iter().map(String::as_str));
    let key = create_tenant(&api, "shop", &names).await;
    let other = create_tenant(&api, "other", &["other.customer.test"]).await;

    let put = |tenant: &str, host: &str, key: &str| {
        let path = format!("/v1/tenants/{tenant}/acme/{host}");
        let key = key.to_string();
        let api = &api;
        async move { api.call(Method::PUT, &path, Some(&key), None).await }
    };
    // Another tenant's name, a name nobody owns, a wildcard, another tenant's API: refused.
    for (tenant, host, status) in [
        ("shop", "other.customer.test", StatusCode::BAD_REQUEST),
        ("shop", "nobody.customer.test", StatusCode::BAD_REQUEST),
        ("shop", "*.wild.customer.test", StatusCode::BAD_REQUEST),
        ("other", "other.customer.test", StatusCode::FORBIDDEN),
    ] {
        let (s, v) = put(tenant, host, &key).await;
        // Another tenant's path: refused by scope, whether as 403 or 404.
        let scoped = status == StatusCode::FORBIDDEN && s == StatusCode::NOT_FOUND;
        assert!(s == status || scoped, "{tenant} {host}: {s} {v}");
    }
    let (s, v) = put("shop", "other.customer.test", &key).await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("not a hostname of tenant shop"),
        "{s} {v}"
    );
    let (s, _) = put("other", "other.customer.test", &other).await;
    assert_eq!(s, StatusCode::OK);

    // A failing challenge: the tenant sees the CA's reason; retried with backoff.
    let (s, v) = put("shop", broken, &key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let row = wait_acme(&api, "shop", &key, broken, Duration::from_secs(60), |r| {
        r["state"] == "failed"
    })
    .await;
    let error = row["last_error"].as_str().unwrap();
    assert!(
        error.contains("127.0.0.2") || error.contains("onnection refused"),
        "{row}\npebble:\n{}",
        pebble.log()
    );
    wait_acme(&api, "shop", &key, broken, Duration::from_secs(30), |r| {
        r["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert!(gw
        .metrics()
        .await
        .contains("wharf_acme_orders_total{outcome=\"failed\"}"));

    // The hourly order quota refuses a flood with 429, naming it.
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/shop/quotas",
            Some(OP),
            Some(Body::Json(json!({"acme_orders_per_hour": 4}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut refused = None;
    for host in &flood {
        let (s, v) = put("shop", host, &key).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(v);
            break;
        }
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let refused = refused.expect("the flood was not refused");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("acme_orders_per_hour"),
        "{refused}"
    );

    // The tenant deleted: its orders stop with it.
    let (s, v) = api
        .call(Method::DELETE, "/v1/tenants/shop", Some(OP), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = api
        .call(Method::GET, "/v1/tenants/shop/acme", Some(OP), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(store.acme_hostnames("shop").await.unwrap().is_empty());
}
