//! The console in a real browser: headless Chromium driven by Selenium
//! (`tests/console/console_test.py`) against a real `wharf serve`, a real upstream and a plugin
//! built from source, and a real DNS server (dnsmasq) for a route to a named target. Screenshots go to a temp dir, or to docs/console/ with
//! WHARF_UPDATE_SCREENSHOTS=1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support;
use crate::support::api::{setup_configured, Api, Body};
use crate::support::dns::Dns;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    // up.a.test names the upstream: the console's route view shows what it resolved to.
    let dns = Dns::start(&[("up.a.test", "127.0.0.1")]);
    let (gw, api, key_a, key_b, _) = setup_configured(
        StoreKind::Sqlite,
        // An ACME CA where nothing listens: a hostname turned on fails for real, and the
        // console shows the reason.
        &format!(
            "[dns]\nservers = [\"{}\"]\n[acme]\ndirectory_url = \"https://{}/dir\"\n\
             check_interval_ms = 200\nchallenge_refresh_ms = 100\nretry_min_seconds = 3600\n",
            dns.addr,
            dead_addr()
        ),
    )
    .await;
    let up = Upstream::start("up").await;
    let api: Api = api;
    let (s, v) = api
        .call(
            reqwest::Method::PUT,
            "/v1/tenants/a/routes/api",
            Some(&key_a),
            Some(Body::Json(serde_json::json!({
                "path_prefix": "/",
                "upstreams": [{"addr": up.target(), "weight": 1}]
            }))),
        )
        .await;
    assert!(s.is_success(), "{v}");

    let shots = if std::env::var_os("WHARF_UPDATE_SCREENSHOTS").is_some() {
        crate::support::package_dir().join("../docs/console")
    } else {
        std::env::temp_dir().join(format!("wharf-console-{}", std::process::id()))
    };
    std::fs::create_dir_all(&shots).unwrap();
    // Chromedriver takes canonical paths only.
    let shots = shots.canonicalize().unwrap();
    let not_wasm = std::env::temp_dir().join(format!("not-a-plugin-{}.wasm", std::process::id()));
    std::fs::write(&not_wasm, b"this is not WebAssembly").unwrap();
    // Certificates for the certificate form: one for tenant a's hostname, one for b's (refused).
    let pems = std::env::temp_dir().join(format!("wharf-console-pem-{}", std::process::id()));
    std::fs::create_dir_all(&pems).unwrap();
    let ca = support::tls::Ca::new("console CA");
    for (host, stem) in [("a.test", "a"), ("b.test", "b")] {
        let (chain, key, _) = ca.leaf(&[host]);
        std::fs::write(pems.join(format!("{stem}-chain.pem")), chain).unwrap();
        std::fs::write(pems.join(format!("{stem}-key.pem")), key).unwrap();
    }
    std::fs::write(pems.join("ca.pem"), ca.cert.pem()).unwrap();
    let pems = pems.canonicalize().unwrap();
    let plugin_dir = std::env::var("WHARF_PLUGIN_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/wharf/plugins", std::env::var("HOME").unwrap()));
    let python = std::env::var("WHARF_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/wharf/tools/py/bin/python",
            std::env::var("HOME").unwrap()
        )
    });
    let script = crate::support::package_dir().join("tests/console/console_test.py");
    // Blocking on a runtime thread is fine here: the gateway is another process.
    let out = std::process::Command::new(&python)
        .arg(&script)
        .env("WHARF_ADMIN", gw.admin.to_string())
        .env("WHARF_PROXY", gw.proxy.to_string())
        .env("WHARF_OP", support::api::OP)
        .env("WHARF_KEY_A", &key_a)
        .env("WHARF_KEY_B", &key_b)
        .env("WHARF_UPSTREAM", up.target())
        .env(
            "WHARF_NAMED",
            format!("http://up.a.test:{}", up.addr.port()),
        )
        .env("WHARF_PLUGIN", format!("{plugin_dir}/add-header.wasm"))
        .env("WHARF_NOT_WASM", &not_wasm)
        .env("WHARF_PEMS", &pems)
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/test installs selenium)"));
    let _ = std::fs::remove_file(&not_wasm);
    let _ = std::fs::remove_dir_all(&pems);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{text}\nwharf log:\n{}",
        gw.log()
    );
    assert!(text.contains("console: all steps passed"), "{text}");
}
