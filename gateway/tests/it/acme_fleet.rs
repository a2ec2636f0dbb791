//! ACME in a fleet and by the operator's default, against a real pebble and dnsmasq (see
//! `acme.rs`): one order per name for two nodes (over HTTP-01 and TLS-ALPN-01), every name
//! ordered unasked, uploads winning.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::acme::{served, wait_acme, HOST};
use crate::support::api::{Api, Body, OP};
use crate::support::dns::Dns;
use crate::support::pebble::Pebble;
use crate::support::tls::{create_tenant, https_get, upload, Ca};
use crate::support::{free_addr, fresh_store, StoreKind, Wharf};

/// Two nodes on one Postgres: one order for the name, placed by the node the CA does not reach
/// (the other answers its challenge from the store), and both serve the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_order_once_and_both_serve() {
    fleet_orders_once("http-01").await;
}

/// The same over TLS-ALPN-01: the CA reaches only A's TLS listener, whose challenge
/// certificate for B's order is built from the answer B published in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_order_once_over_tls_alpn_01() {
    fleet_orders_once("tls-alpn-01").await;
}

async fn fleet_orders_once(challenge: &str) {
    let dns = Dns::start(&[(HOST, "127.0.0.1")]);
    let (url, store) = fresh_store(StoreKind::Postgres).await;
    let mut pebble = Pebble::prepare();
    let kek = "11".repeat(32);
    let node = |tls: SocketAddr, extra: &str| {
        format!(
            "operator_token = \"{OP}\"\ntls_listen = \"{tls}\"\n[tls]\nkey_encryption_key = \"{kek}\"\n{}\
             challenge = \"{challenge}\"\n{extra}",
            pebble.acme_toml()
        )
    };
    let (tls_a, tls_b) = (free_addr(), free_addr());
    // The CA validates on A's ports; A places no orders, so B's order is answered by A.
    let a = Wharf::start_configured(&url, &node(tls_a, "place_orders = false\n"), &[]).await;
    let b = Wharf::start_configured(&url, &node(tls_b, ""), &[]).await;
    // Over TLS-ALPN-01, HTTP-01's port is one where nothing listens.
    let http_port = if challenge == "http-01" {
        a.proxy.port()
    } else {
        free_addr().port()
    };
    pebble.start(http_port, tls_a.port(), dns.addr, 3600);
    let api_a = Api::new(&a);
    let key = create_tenant(&api_a, "shop", &[HOST]).await;
    let (s, v) = Api::new(&b)
        .call(
            Method::PUT,
            &format!("/v1/tenants/shop/acme/{HOST}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_acme(&api_a, "shop", &key, HOST, Duration::from_secs(60), |r| {
        r["state"] == "valid"
    })
    .await;
    let root = pebble.root_pem().await;
    let mut leaves = Vec::new();
    for tls in [tls_a, tls_b] {
        leaves.push(served(tls, &root, HOST).await);
    }
    assert_eq!(leaves[0], leaves[1], "both nodes serve the one certificate");
    assert_eq!(store.acme_orders_this_hour("shop").await.unwrap(), (1, 1));
    assert!(b
        .metrics()
        .await
        .contains("wharf_acme_orders_total{outcome=\"issued\"} 1"));
    let a_metrics = a.metrics().await;
    assert!(!a_metrics.contains("wharf_acme_orders_total{outcome=\"issued\"} 1"));
    assert_eq!(
        a_metrics
            .contains("wharf_tls_handshakes_total{outcome=\"acme_challenge\",tenant=\"shop\"}"),
        challenge == "tls-alpn-01",
        "A answered the CA over TLS-ALPN-01 only if asked to"
    );
}

/// The operator's default orders for every exact name without asking; a tenant's own upload
/// stops the order for its name, and wins over an issued certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_default_orders_every_name_and_uploads_win() {
    let own = "own.customer.test";
    let dns = Dns::start(&[(HOST, "127.0.0.1"), (own, "127.0.0.1")]);
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let mut pebble = Pebble::prepare();
    let tls = free_addr();
    let gw = Wharf::start_configured(
        &url,
        &format!(
            "operator_token = \"{OP}\"\ntls_listen = \"{tls}\"\n{}all_hostnames = true\n",
            pebble.acme_toml()
        ),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    // The CA comes up once the names and the upload are in: an order the worker started for
    // `own` before its upload landed fails and, retried, sees the upload.
    let key = create_tenant(&api, "shop", &[]).await;
    let ca = Ca::new("shop's own CA");
    let (chain, private, _) = ca.leaf(&[own]);
    for name in [own, HOST] {
        let (s, v) = api
            .call(
                Method::POST,
                "/v1/tenants/shop/hostnames",
                Some(OP),
                Some(Body::Json(json!({ "hostname": name }))),
            )
            .await;
        assert!(s.is_success(), "{v}");
        if name == own {
            let (s, v) = upload(&api, "shop", &key, "mine", &chain, &private).await;
            assert!(s.is_success(), "{v}");
        }
    }
    pebble.start(gw.proxy.port(), tls.port(), dns.addr, 3600);
    // HOST is ordered without the tenant asking; `own` is left to the tenant's certificate.
    wait_acme(&api, "shop", &key, HOST, Duration::from_secs(60), |r| {
        r["state"] == "valid"
    })
    .await;
    let row = wait_acme(&api, "shop", &key, own, Duration::from_secs(30), |r| {
        r["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("uploaded certificate"))
    })
    .await;
    assert_ne!(row["state"], "valid", "{row}");
    assert_eq!(row["not_after_ms"], 0, "never issued: {row}");

    // The tenant uploads its own for HOST too: it wins over the issued certificate.
    let root = pebble.root_pem().await;
    served(tls, &root, HOST).await;
    let (chain, private, own_leaf) = ca.leaf(&[HOST]);
    let (s, v) = upload(&api, "shop", &key, "mine-too", &chain, &private).await;
    assert!(s.is_success(), "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    let (served, ..) = https_get(tls, &ca, HOST, HOST, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(served, own_leaf, "the tenant's upload is served");
}
