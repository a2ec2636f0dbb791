//! Registry behaviours Debian's `docker-registry` does not show, against a registry written
//! here: a Bearer challenge answered with an anonymous token, a blob redirected to storage
//! elsewhere (followed without the registry's token), an index whose Wasm entry is taken, and a
//! blob longer than its manifest declares (cut off there: the gateway's memory does not grow).

use std::sync::Arc;

use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::proxy_wasm_oci::pull;
use crate::support::api::setup;
use crate::support::registry::digest;

/// A registry that asks for a Bearer token and sends blobs to storage elsewhere (as Docker Hub
/// and GHCR do), or lies about a layer's size: written here, as `docker-registry` does neither.
struct Fake {
    addr: std::net::SocketAddr,
    /// Every request: (path and query, its Authorization header).
    seen: Seen,
}

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

impl Fake {
    async fn start(wasm: Vec<u8>) -> Fake {
        let seen: Seen = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (log, wasm) = (seen.clone(), Arc::new(wasm));
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (log, wasm) = (log.clone(), wasm.clone());
            async move { fake_answer(addr, &log, &wasm, req) }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { addr, seen }
    }
}

fn fake_answer(
    addr: std::net::SocketAddr,
    log: &Mutex<Vec<(String, Option<String>)>>,
    wasm: &[u8],
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    log.lock().push((path.clone(), auth.clone()));
    let layer = digest(wasm);
    let manifest = |size: usize| {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/wasm", "digest": layer, "size": size}],
        })
        .to_string()
    };
    let oci = [("content-type", "application/vnd.oci.image.manifest.v1+json")];
    if path.starts_with("/token?") {
        assert!(
            path.contains("scope=repository%3Aauth%2Fplugin%3Apull"),
            "{path}"
        );
        return axum::Json(json!({"token": "t0k"})).into_response();
    }
    if path == "/storage/blob" {
        return wasm.to_vec().into_response();
    }
    if path.starts_with("/v2/auth/") && auth.as_deref() != Some("Bearer t0k") {
        let challenge = format!(
            "Bearer realm=\"http://{addr}/token\",service=\"fake\",scope=\"repository:auth/plugin:pull\""
        );
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response();
    }
    let exact = manifest(wasm.len());
    if path == format!("/v2/auth/plugin/manifests/{}", digest(exact.as_bytes())) {
        return (oci, exact).into_response();
    }
    match path.as_str() {
        "/v2/auth/plugin/manifests/1" => (oci, exact).into_response(),
        "/v2/auth/plugin/manifests/multi" => {
            // An index: a platform entry first, the Wasm one second (the one to take).
            let entry = |platform: Value| {
                json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(exact.as_bytes()), "size": exact.len(), "platform": platform})
            };
            let other = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(b"absent"), "size": 6, "platform": {"architecture": "amd64", "os": "linux"}});
            let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [other, entry(json!({"architecture": "wasm", "os": "wasip1"}))]});
            let ct = [("content-type", "application/vnd.oci.image.index.v1+json")];
            (ct, index.to_string()).into_response()
        }
        p if p.starts_with("/v2/auth/plugin/blobs/") => (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", "/storage/blob")],
        )
            .into_response(),
        "/v2/liar/plugin/manifests/1" => (oci, manifest(100)).into_response(),
        p if p.starts_with("/v2/liar/plugin/blobs/") => {
            // 64 MiB without a Content-Length, for a layer the manifest says is 100 bytes.
            let chunks = (0..1024).map(|_| Ok::<_, std::io::Error>(vec![0u8; 64 << 10]));
            axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_redirects_and_a_lying_registry() {
    // Wharf's own plugins come from registries too: a component, as an artifact.
    let module = wharf_plugins::test_support::example_plugin("add-header");
    let fake = Fake::start(module.clone()).await;
    let (gw, api, _a, _b, _r) = setup().await;

    // A Bearer challenge answered with an anonymous token; the blob's redirect followed
    // without the registry's token.
    let (s, v) = pull(&api, "p", &format!("oci://{}/auth/plugin:1", fake.addr)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["sha256"], digest(&module)[7..], "{v}");
    let seen = fake.seen.lock().clone();
    assert!(
        seen.iter().any(|(p, _)| p.starts_with("/token?")),
        "{seen:?}"
    );
    let storage: Vec<_> = seen.iter().filter(|(p, _)| p == "/storage/blob").collect();
    assert_eq!(storage.len(), 1, "{seen:?}");
    assert_eq!(storage[0].1, None, "{seen:?}");

    // An index's Wasm entry.
    let (s, v) = pull(&api, "p", &format!("oci://{}/auth/plugin:multi", fake.addr)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["sha256"], digest(&module)[7..], "{v}");

    // A blob longer than its manifest says: cut off at the declared size, not read to its end.
    let before = gw.rss_bytes();
    let (s, v) = pull(&api, "q", &format!("oci://{}/liar/plugin:1", fake.addr)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "oci_registry_error", "{v}");
    let grown = gw.rss_bytes().saturating_sub(before);
    assert!(grown < 16 << 20, "the gateway grew by {grown} bytes");
}
