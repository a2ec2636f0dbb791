//! HTTPS upstreams: nginx from Debian serving a certificate of a private test CA. Served when the
//! route carries that CA; refused (502 upstream_tls) with the system's roots, or for another
//! name. A CA bundle with no certificate is a 400 naming the field. gRPC reaches a TLS upstream
//! over HTTP/2 negotiated by ALPN, trailers included.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::api::{Api, Body, OP};
use crate::support::nginx::Nginx;
use crate::support::tls::{upload, Ca};
use crate::support::*;

/// A gateway with an operator token and tenant `id` owning `host`; h2c on, so gRPC clients
/// reach it without TLS of their own.
async fn gateway_with_tenant(id: &str, host: &str) -> (Wharf, Api) {
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let gw =
        Wharf::start_configured(&url, &format!("operator_token = \"{OP}\"\nh2c = true"), &[]).await;
    let api = Api::new(&gw);
    let body = json!({"id": id, "hostnames": [host]});
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(OP),
            Some(Body::Json(body)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (gw, api)
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_routes_ca_for_their_name() {
    let ca = Ca::new("Upstream Test CA");
    let (chain, key, _) = ca.leaf(&["tls.up.test"]);
    let nginx = Nginx::tls(&chain, &key, "nginx-tls");
    let (gw, api) = gateway_with_tenant("t", "tls.test").await;
    let target = format!("https://{}", nginx.addr);
    let put = |path: &'static str, tls: serde_json::Value| {
        let body =
            json!({"path_prefix": path, "upstreams": [{"addr": target}], "upstream_tls": tls});
        let url = format!("/v1/tenants/t/routes/{}", path.trim_start_matches('/'));
        let api = &api;
        async move {
            api.call(Method::PUT, &url, Some(OP), Some(Body::Json(body)))
                .await
        }
    };
    let ca_pem = ca.cert.pem();
    let mut version = 0;
    for (path, tls) in [
        (
            "/trusted",
            json!({"server_name": "tls.up.test", "ca_pem": ca_pem}),
        ),
        ("/system-roots", json!({"server_name": "tls.up.test"})),
        (
            "/other-name",
            json!({"server_name": "other.up.test", "ca_pem": ca_pem}),
        ),
    ] {
        let (s, v) = put(path, tls).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        version = v["config_version"].as_i64().unwrap();
    }
    // Refused at write time: an address without a server name, a bundle without a certificate.
    let (s, v) = put("/no-name", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("server_name"),
        "{v}"
    );
    let (s, v) = put("/bad-ca", json!({"server_name": "tls.up.test", "ca_pem": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("ca_pem"), "{v}");

    gw.wait_for_version(version).await;
    let mut ok = None;
    for _ in 0..40 {
        let r = gw.request("GET", "tls.test", "/trusted", &[]).await;
        if r.status == 200 {
            ok = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = ok.expect("the trusted route answers");
    assert_eq!(r.json["upstream"], "nginx-tls");
    for path in ["/system-roots", "/other-name"] {
        let r = gw.get("tls.test", path).await;
        assert_eq!(r.status, 502, "{path}: {}", r.json);
        assert_eq!(r.json["error"], "upstream_tls", "{path}: {}", r.json);
    }
}

#[tokio::test]
async fn an_upstream_that_requires_a_client_certificate_gets_the_tenants() {
    let server_ca = Ca::new("Upstream Server CA");
    let client_ca = Ca::new("Upstream Client CA");
    let (chain, key, _) = server_ca.leaf(&["mtls.up.test"]);
    let nginx = Nginx::tls_with(&chain, &key, "nginx-mtls", Some(&client_ca.cert.pem()));
    let (gw, api) = gateway_with_tenant("m", "mtls.test").await;
    // The tenant's own certificate, issued by the upstream's client CA.
    let (client_chain, client_key, _) = client_ca.leaf(&["mtls.test"]);
    let (s, v) = upload(&api, "m", OP, "client", &client_chain, &client_key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let target = format!("https://{}", nginx.addr);
    let mut version = 0;
    for (id, tls) in [
        (
            "with",
            json!({"server_name": "mtls.up.test", "ca_pem": server_ca.cert.pem(), "client_certificate": "client"}),
        ),
        (
            "without",
            json!({"server_name": "mtls.up.test", "ca_pem": server_ca.cert.pem()}),
        ),
    ] {
        let body = json!({"path_prefix": format!("/{id}"), "upstreams": [{"addr": target}], "upstream_tls": tls});
        let (s, v) = api
            .call(
                Method::PUT,
                &format!("/v1/tenants/m/routes/{id}"),
                Some(OP),
                Some(Body::Json(body)),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{id}: {v}");
        version = v["config_version"].as_i64().unwrap();
    }
    // A certificate the tenant does not have is a 400 naming the field.
    let body = json!({"path_prefix": "/x", "upstreams": [{"addr": target}],
        "upstream_tls": {"server_name": "mtls.up.test", "client_certificate": "nobody"}});
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/m/routes/x",
            Some(OP),
            Some(Body::Json(body)),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("client_certificate"),
        "{v}"
    );

    gw.wait_for_version(version).await;
    let r = gw.get("mtls.test", "/with").await;
    assert_eq!(
        (r.status, r.json["upstream"].as_str()),
        (200, Some("nginx-mtls")),
        "{}",
        r.json
    );
    // Without it nginx refuses the request (its own 400 passes through).
    let r = reqwest::Client::new()
        .get(format!("http://{}/without", gw.proxy))
        .header("Host", "mtls.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("No required SSL certificate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reaches_a_tls_upstream_over_http2_by_alpn() {
    use crate::support::grpc::{serve_echo, EchoClient};

    let ca = Ca::new("gRPC Upstream CA");
    let (chain, key, _) = ca.leaf(&["grpc.up.test"]);
    let nginx = Nginx::grpc_tls(&chain, &key, &serve_echo().await);
    let (gw, api) = gateway_with_tenant("g", "grpc.test").await;
    let body = json!({"path_prefix": "/wharf.test.Echo", "upstreams": [{"addr": format!("https://{}", nginx.addr)}],
        "upstream_protocol": "http2",
        "upstream_tls": {"server_name": "grpc.up.test", "ca_pem": ca.cert.pem()}});
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/g/routes/echo",
            Some(OP),
            Some(Body::Json(body)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;

    let mut client = EchoClient::connect(gw.proxy, "grpc.test").await;
    // The balancer may take a moment to have the new route's target.
    let mut reply = client.say("hi").await;
    for _ in 0..40 {
        if reply.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        reply = client.say("hi").await;
    }
    let reply = reply.expect("the unary call through the TLS upstream");
    assert_eq!(reply, "echo: hi (plugin: -)");

    // Server streaming: the messages, then the status in the trailers, across TLS and HTTP/2.
    let (got, status) = client.count(3).await;
    assert_eq!(got, ["0", "1", "2"]);
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(status.message(), "counted to the end");

    // nginx logged every call as HTTP/2: ALPN gave h2 (gRPC over HTTP/1.1 would not work at all,
    // but say so rather than infer it).
    let protocols = nginx.protocols();
    assert!(protocols.len() >= 2, "{protocols:?}");
    assert!(protocols.iter().all(|p| p == "HTTP/2.0"), "{protocols:?}");
}
