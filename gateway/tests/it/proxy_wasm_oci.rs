//! Plugins pulled from an OCI registry (Debian's `docker-registry` on loopback, images pushed
//! with `skopeo`): a Higress plugin nobody here wrote, pushed as a Wasm OCI artifact and in
//! Istio's image format, is pulled through the admin API, stored like an upload (same bytes,
//! same sha256) and serves its header edit. Refused with a reason naming `oci`: a malformed
//! reference, the registry's error, a manifest without a wasm layer, a blob that does not match
//! its digest, a layer over the size limit (never read: the gateway's memory does not grow by
//! it), and a registry outside the egress policy (never dialled: the registry logs nothing).
//! Over HTTPS by name with the operator's CA. Token auth, redirects and a lying registry:
//! proxy_wasm_oci_auth.rs.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::proxy_wasm_serve::{higress, route_to};
use crate::support::api::{setup, Api, Body, OP};
use crate::support::dns::Dns;
use crate::support::registry::{digest, tar_of, Registry};
use crate::support::tls::Ca;
use crate::support::*;

pub(crate) async fn pull(api: &Api, name: &str, reference: &str) -> (StatusCode, Value) {
    api.call(
        Method::PUT,
        &format!("/v1/tenants/a/plugins/{name}"),
        Some(OP),
        Some(Body::Json(json!({ "oci": reference }))),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higress_plugin_pulled_in_both_formats_serves_its_edit() {
    let reg = Registry::start().await;
    let wasm = higress("gpustack-set-header-pre-route");
    let artifact = reg.push_wasm_artifact("higress/set-header", "1.0.0", &wasm);
    let image = reg.push_istio_image("istio/set-header", "1.0.0", &wasm);
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let sha = digest(&wasm)[7..].to_string();

    for (version, repo, manifest) in [
        (1, "higress/set-header", &artifact),
        (2, "istio/set-header", &image),
    ] {
        let reference = format!("oci://{}/{repo}:1.0.0", reg.addr);
        let (s, v) = pull(&api, "set-header", &reference).await;
        assert_eq!(s, StatusCode::CREATED, "{repo}: {v}");
        assert_eq!(v["version"], version, "{v}");
        // The module itself, whichever way it was packed: one blob in the store, one compile.
        assert_eq!(v["sha256"], sha, "{v}");
        assert_eq!(v["digest"], manifest.as_str(), "{v}");
        assert_eq!(v["source"], format!("{reference}@{manifest}"), "{v}");

        let attach = json!({
            "version": version,
            "plugin_config": {"routeNameHeader": "x-route-name", "enableOnPathPrefix": ["/orders"]},
        });
        let (s, v) = api
            .call(
                Method::PUT,
                "/v1/tenants/a/routes/api/plugins/set-header",
                Some(OP),
                Some(Body::Json(attach)),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        gw.wait_for_version(v["config_version"].as_i64().unwrap())
            .await;
        let r = gw.request("GET", "a.test", "/orders/1", &[]).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["headers"]["x-route-name"], "api", "{}", r.json);
    }

    // Pinned by digest, as Istio resolves a tag once.
    let pinned = format!("oci://{}/higress/set-header@{artifact}", reg.addr);
    let (s, v) = pull(&api, "set-header", &pinned).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["version"], 3, "{v}");
    // The CLI asks the gateway to pull.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "plugin", "push", "--tenant", "a", "--name", "from-cli", "--oci",
        ])
        .arg(format!("oci://{}/istio/set-header:1.0.0", reg.addr))
        .args(["--api", &format!("http://{}", gw.admin), "--token", OP])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "pulled from oci://{}/istio/set-header:1.0.0@{image}",
            reg.addr
        )),
        "{text}"
    );

    // The versions listed are what was pulled; the node asked the registry itself.
    let (_, v) = api
        .call(
            Method::GET,
            "/v1/tenants/a/plugins/set-header",
            Some(OP),
            None,
        )
        .await;
    assert_eq!(v["versions"].as_array().unwrap().len(), 3, "{v}");
    let src = |i: usize| {
        v["versions"][i]["source"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        src(0),
        format!("oci://{}/higress/set-header:1.0.0@{artifact}", reg.addr)
    );
    assert_eq!(
        src(1),
        format!("oci://{}/istio/set-header:1.0.0@{image}", reg.addr)
    );
    assert_eq!(src(2), pinned);
    let log = reg.log();
    assert!(
        log.contains("GET /v2/istio/set-header/blobs/sha256:"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pulls_are_refused_naming_the_reference() {
    let reg = Registry::start().await;
    let (gw, api, _a, _b, _r) = setup().await;
    let at = |repo: &str| format!("oci://{}/{repo}", reg.addr);
    let wasm_config = (
        "application/vnd.wasm.config.v0+json",
        br#"{"architecture":"wasm","os":"wasip1"}"#.as_slice(),
    );

    let refusals = |s: StatusCode, v: &Value, code: &str, says: &str| {
        assert_eq!(v["error"], code, "{s} {v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.starts_with("oci") && m.contains(says), "{v}");
    };
    let (s, v) = pull(&api, "p", "oci://no-repository").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    refusals(s, &v, "invalid", "registry/repository");
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/a/plugins/p",
            Some(OP),
            Some(Body::Json(json!({"url": at("x:1")}))),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // The registry's own error, passed on.
    let (s, v) = pull(&api, "p", &at("absent/plugin:1.0")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    refusals(s, &v, "oci_registry_error", "MANIFEST_UNKNOWN");
    let (s, v) = pull(
        &api,
        "p",
        &format!("{}@sha256:{}", at("absent/plugin"), "0".repeat(64)),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Manifests without a module.
    reg.push("text/only", "1", wasm_config, &[("text/plain", b"hello")]);
    let (s, v) = pull(&api, "p", &at("text/only:1")).await;
    refusals(s, &v, "oci_no_wasm", "no wasm layer");
    let tar = tar_of(&[("README", b"no plugin here")]);
    let image_config = ("application/vnd.oci.image.config.v1+json", b"{}".as_slice());
    reg.push(
        "istio/empty",
        "1",
        image_config,
        &[("application/vnd.oci.image.layer.v1.tar", &tar)],
    );
    let (s, v) = pull(&api, "p", &at("istio/empty:1")).await;
    refusals(s, &v, "oci_no_wasm", "plugin.wasm");

    // A blob changed behind the registry's back: its bytes no longer hash to its digest.
    let module = b"\0asm\x01\0\0\0(a module whose bytes the registry will change)";
    reg.push_wasm_artifact("corrupt/plugin", "1", module);
    let path = reg.blob_path(&digest(module));
    let mut changed = module.to_vec();
    changed[10] ^= 0xff;
    std::fs::write(&path, &changed).unwrap();
    let (s, v) = pull(&api, "p", &at("corrupt/plugin:1")).await;
    refusals(s, &v, "oci_digest_mismatch", &digest(module));

    // 64 MiB, twice the plugin size limit: refused without reading it.
    let huge = vec![0u8; 64 << 20];
    reg.push_wasm_artifact("huge/plugin", "1", &huge);
    drop(huge);
    let before = gw.rss_bytes();
    let (s, v) = pull(&api, "p", &at("huge/plugin:1")).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    refusals(s, &v, "too_large", "the limit is");
    let grown = gw.rss_bytes().saturating_sub(before);
    assert!(grown < 16 << 20, "the gateway grew by {grown} bytes");
    assert!(!reg.log().contains("GET /v2/huge/plugin/blobs/"));

    // Nothing of it was stored.
    let (_, v) = api
        .call(Method::GET, "/v1/tenants/a/plugins", Some(OP), None)
        .await;
    assert_eq!(v["plugins"], json!([]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outside_the_egress_policy_is_never_dialled() {
    let reg = Registry::start().await;
    let (url, _) = fresh_store(StoreKind::Sqlite).await;
    // Loopback is not allowed on this node: only a private range is.
    let gw = Wharf::start_configured(
        &url,
        &format!("egress_allow = [\"10.0.0.0/8\"]\noperator_token = \"{OP}\"\n"),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(OP),
            Some(Body::Json(json!({"id": "a", "hostnames": ["a.test"]}))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let reference = format!("oci://{}/never-dialled/plugin:1", reg.addr);
    let (s, v) = pull(&api, "p", &reference).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "egress_forbidden", "{v}");
    assert!(v["message"].as_str().unwrap().contains("loopback"), "{v}");
    // The same through a name that resolves to loopback.
    let by_name = format!("oci://localhost:{}/never-dialled/plugin:1", reg.addr.port());
    let (s, v) = pull(&api, "p", &by_name).await;
    assert!(s.is_client_error(), "{s} {v}");
    let log = reg.log();
    assert!(!log.contains("never-dialled"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_by_name_over_https_verified_with_the_operators_ca() {
    let ca = Ca::new("Wharf OCI test CA");
    let (chain, key, _) = ca.leaf(&["registry.oci.test"]);
    let reg = Registry::start_tls(Some((&chain, &key))).await;
    let module = wharf_plugins::test_support::example_plugin("add-header");
    reg.push_wasm_artifact("wasm/add-header", "1", &module);
    let dns = Dns::start(&[
        ("registry.oci.test", "127.0.0.1"),
        ("other.oci.test", "127.0.0.1"),
    ]);
    let ca_file = reg.dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let (url, _) = fresh_store(StoreKind::Sqlite).await;
    let toml = format!(
        "operator_token = \"{OP}\"\negress_allow = [\"127.0.0.1/32\"]\n\
         [dns]\nservers = [\"{}\"]\n[outbound_http]\nca_file = \"{}\"\n",
        dns.addr,
        ca_file.display()
    );
    let gw = Wharf::start_configured(&url, &toml, &[]).await;
    let api = Api::new(&gw);
    let tenant = json!({"id": "a", "hostnames": ["a.test"]});
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(OP),
            Some(Body::Json(tenant)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Not loopback by name: HTTPS, the name resolved by the node's resolver, the certificate
    // verified against the operator's CA.
    let reference = format!(
        "oci://registry.oci.test:{}/wasm/add-header:1",
        reg.addr.port()
    );
    let (s, v) = pull(&api, "p", &reference).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["sha256"], digest(&module)[7..], "{v}");

    // A name the registry's certificate does not carry: refused by the TLS check.
    let other = format!("oci://other.oci.test:{}/wasm/add-header:1", reg.addr.port());
    let (s, v) = pull(&api, "q", &other).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "oci_unreachable", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("certificate"),
        "{v}"
    );

    // The name re-pointed at an address the policy refuses: refused before it is dialled.
    dns.set(&[("registry.oci.test", "127.0.0.2")]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let moved = format!("oci://registry.oci.test:{}/moved/plugin:1", reg.addr.port());
    let (s, v) = pull(&api, "p", &moved).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"].as_str().unwrap().contains("127.0.0.2"), "{v}");
    assert!(!reg.log().contains("moved/plugin"));
}
