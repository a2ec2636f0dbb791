//! The OpenAPI document at /v1/openapi.json against the router that serves the API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::api::setup;
use reqwest::{Method, StatusCode};

/// The API as documented and the API as served are the same: every operation of the router is
/// in the document (the list below is the whole surface), and every documented operation is
/// served (it answers 401 to a request without credentials, not 404/405).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_and_router_agree() {
    let (_gw, api, _, _, _) = setup().await;
    let (s, doc) = api.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let served: Vec<(&str, &str)> = vec![
        ("get", "/v1/openapi.json"),
        ("get", "/v1/tenants"),
        ("post", "/v1/tenants"),
        ("get", "/v1/tenants/{tenant}"),
        ("patch", "/v1/tenants/{tenant}"),
        ("delete", "/v1/tenants/{tenant}"),
        ("patch", "/v1/tenants/{tenant}/quotas"),
        ("post", "/v1/tenants/{tenant}/hostnames"),
        ("delete", "/v1/tenants/{tenant}/hostnames/{host}"),
        ("get", "/v1/tenants/{tenant}/api-keys"),
        ("post", "/v1/tenants/{tenant}/api-keys"),
        ("delete", "/v1/tenants/{tenant}/api-keys/{key}"),
        ("get", "/v1/tenants/{tenant}/usage"),
        ("get", "/v1/audit"),
        ("get", "/v1/whoami"),
        ("get", "/v1/nodes"),
        ("get", "/v1/quotas"),
        ("get", "/v1/tenants/{tenant}/audit"),
        ("get", "/v1/tenants/{tenant}/usage/history"),
        ("get", "/v1/tenants/{tenant}/routes"),
        ("get", "/v1/tenants/{tenant}/routes/{route}"),
        ("put", "/v1/tenants/{tenant}/routes/{route}"),
        ("delete", "/v1/tenants/{tenant}/routes/{route}"),
        (
            "put",
            "/v1/tenants/{tenant}/routes/{route}/plugins/{plugin}",
        ),
        (
            "delete",
            "/v1/tenants/{tenant}/routes/{route}/plugins/{plugin}",
        ),
        ("get", "/v1/tenants/{tenant}/certificates"),
        ("put", "/v1/tenants/{tenant}/certificates/{name}"),
        ("delete", "/v1/tenants/{tenant}/certificates/{name}"),
        ("get", "/v1/tenants/{tenant}/acme"),
        ("put", "/v1/tenants/{tenant}/acme/{hostname}"),
        ("delete", "/v1/tenants/{tenant}/acme/{hostname}"),
        ("get", "/v1/tenants/{tenant}/plugins"),
        ("put", "/v1/tenants/{tenant}/plugins/{plugin}"),
        ("get", "/v1/tenants/{tenant}/plugins/{plugin}"),
        ("delete", "/v1/tenants/{tenant}/plugins/{plugin}"),
        ("post", "/v1/tenants/{tenant}/plugins/{plugin}/rollback"),
    ];
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.push((method.to_string(), path.clone()));
            }
        }
    }
    let mut expected: Vec<(String, String)> = served
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    documented.sort();
    assert_eq!(documented, expected, "document and router differ");

    for (method, path) in &documented {
        let concrete = path
            .replace("{tenant}", "a")
            .replace("{route}", "r")
            .replace("{plugin}", "p")
            .replace("{host}", "x.a.test")
            .replace("{key}", "k");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = api.call(m, &concrete, None, None).await;
        let want = if path == "/v1/openapi.json" {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(
            status, want,
            "{method} {path} is documented but not served: {body}"
        );
    }
    // Typed answers: the schemas are in the document, not free-form objects.
    for schema in [
        "Route",
        "Quotas",
        "TenantDetail",
        "PluginUploaded",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "schema {schema} missing"
        );
    }
}
