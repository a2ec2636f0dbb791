//! A plugin author's path with the real binary, from an empty folder: `wharf plugin new`,
//! `wharf plugin build` (the pinned toolchain, from the cache), `wharf plugin test`, then the
//! upload and attach through the admin API and a request through the gateway carrying what the
//! plugin added; for C, JavaScript, Python and Rust, and AssemblyScript (a proxy-wasm module).

use std::path::Path;
use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::api::{Api, Body, OP};
use crate::support::*;

/// Runs `wharf ARGS` in `dir` with only the system's tools and wharf itself on PATH.
fn wharf_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_wharf"));
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        bin.parent().unwrap().display()
    );
    let out = std::process::Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .expect("run wharf");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn new_build_test_upload_serve_in_c_javascript_python_and_rust() {
    let dir = std::env::temp_dir().join(format!("wharf-dev-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start_configured(&url, &format!("operator_token = \"{OP}\""), &[]).await;
    let api = Api::new(&gw);
    let up = Upstream::start("up").await;
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/tenants".to_string(),
            json!({"id": "dev", "hostnames": ["dev.test"]}),
        ),
        (
            Method::PUT,
            "/v1/tenants/dev/routes/all".into(),
            json!({"path_prefix": "/", "upstreams": [{"addr": up.target()}]}),
        ),
    ] {
        let (s, v) = api
            .call(method, &path, Some(OP), Some(Body::Json(body)))
            .await;
        assert!(s.is_success(), "{path}: {v}");
    }

    // (language, template's config, what `plugin test` and the upstream then show)
    let cases = [
        (
            "c",
            vec!["request-header=x-hello", "request-value=world"],
            "set x-hello: world",
            ("x-hello", "world"),
        ),
        (
            "js",
            vec!["from=/", "to=/v2"],
            "path rewritten to /v2",
            ("x-original-path", "/"),
        ),
        (
            "python",
            vec!["origin=https://app.test"],
            "set access-control-allow-origin: https://app.test",
            ("", ""),
        ),
        (
            "rust",
            vec!["request-header=x-rs", "request-value=1"],
            "set x-rs: 1",
            ("x-rs", "1"),
        ),
    ];
    for (lang, config, shows, upstream_sees) in cases {
        let name = format!("hello-{lang}");
        let started = Instant::now();
        let (ok, out) = wharf_in(&dir, &["plugin", "new", &name, "--lang", lang]);
        assert!(ok, "{out}");
        let (ok, out) = wharf_in(&dir, &["plugin", "build", &name]);
        assert!(ok && out.contains("ready: "), "{out}");
        let mut args = vec![
            "plugin",
            "test",
            name.as_str(),
            "--request",
            "GET /",
            "-H",
            "origin: https://app.test",
        ];
        for c in &config {
            args.extend(["--config", c]);
        }
        let (ok, out) = wharf_in(&dir, &args);
        assert!(
            ok && out.contains(shows),
            "{lang}: {shows:?} missing:\n{out}"
        );
        eprintln!("{lang}: new + build + test in {:?}", started.elapsed());

        let bytes = std::fs::read(dir.join(&name).join("plugin.wasm")).unwrap();
        let (s, v) = api.put_plugin("dev", &name, OP, bytes).await;
        assert!(s.is_success(), "{v}");
        let cfg: serde_json::Map<String, serde_json::Value> = config
            .iter()
            .map(|c| {
                let (k, v) = c.split_once('=').unwrap();
                (k.to_string(), json!(v))
            })
            .collect();
        let (s, v) = api
            .call(
                Method::PUT,
                &format!("/v1/tenants/dev/routes/all/plugins/{name}"),
                Some(OP),
                Some(Body::Json(json!({"config": cfg}))),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        gw.wait_for_version(v["config_version"].as_i64().unwrap())
            .await;
        let r = gw
            .request("GET", "dev.test", "/", &[("origin", "https://app.test")])
            .await;
        assert_eq!(r.status, 200, "{lang}: {}", r.json);
        let (header, value) = upstream_sees;
        if !header.is_empty() {
            assert_eq!(r.json["headers"][header], value, "{lang}: {}", r.json);
        }
        // Detached again: the next language's plugin alone on the route.
        let (s, v) = api
            .call(
                Method::DELETE,
                &format!("/v1/tenants/dev/routes/all/plugins/{name}"),
                Some(OP),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

/// `--lang assemblyscript`: a proxy-wasm module from the as-headers example, built with the
/// pinned npm toolchain, tried locally with its plugin_config, then uploaded, attached with that
/// plugin_config and seen on a request through the gateway; the local-response template answers
/// by itself in `plugin test`.
#[tokio::test]
async fn new_build_test_upload_serve_in_assemblyscript() {
    let dir = std::env::temp_dir().join(format!("wharf-dev-as-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let (ok, out) = wharf_in(
        &dir,
        &["plugin", "new", "hello-as", "--lang", "assemblyscript"],
    );
    assert!(ok, "{out}");
    let package = std::fs::read_to_string(dir.join("hello-as/package.json")).unwrap();
    assert!(
        package.contains("\"@gcoredev/proxy-wasm-sdk-as\": \"1.2.3\""),
        "{package}"
    );
    let (ok, out) = wharf_in(&dir, &["plugin", "build", "hello-as"]);
    assert!(ok && out.contains("proxy-wasm ABI 0.2.1"), "{out}");
    let config = r#"{"header":"x-hello","value":"as"}"#;
    let (ok, out) = wharf_in(
        &dir,
        &[
            "plugin",
            "test",
            "hello-as",
            "--request",
            "GET /",
            "--config",
            config,
        ],
    );
    assert!(
        ok && out.contains("set x-hello: as") && out.contains("x-as-plugin: as-headers"),
        "{out}"
    );
    eprintln!(
        "assemblyscript: new + build + test in {:?}",
        started.elapsed()
    );

    // Another template: a local reply, the upstream not called.
    let (ok, out) = wharf_in(
        &dir,
        &[
            "plugin",
            "new",
            "deny",
            "--lang",
            "as",
            "--template",
            "local-response",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = wharf_in(&dir, &["plugin", "build", "deny"]);
    assert!(ok, "{out}");
    let (ok, out) = wharf_in(&dir, &["plugin", "test", "deny", "-H", "x-deny: 1"]);
    assert!(ok && out.contains("answers 403 itself"), "{out}");
    // A module that traps: the error the gateway would answer, exit status 2.
    let (ok, out) = wharf_in(&dir, &["plugin", "new", "trap", "--lang", "as"]);
    assert!(ok, "{out}");
    let source = dir.join("trap/index.ts");
    let text = std::fs::read_to_string(&source).unwrap().replace(
        "    const root = this.root_context as HeadersRoot;",
        "    unreachable();\n    const root = this.root_context as HeadersRoot;",
    );
    std::fs::write(&source, text).unwrap();
    let (ok, out) = wharf_in(&dir, &["plugin", "build", "trap"]);
    assert!(ok, "{out}");
    let (ok, out) = wharf_in(&dir, &["plugin", "test", "trap"]);
    assert!(
        !ok && out.contains("the gateway would answer 502 plugin_trap"),
        "{out}"
    );

    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let gw = Wharf::start_configured(&url, &format!("operator_token = \"{OP}\""), &[]).await;
    let api = Api::new(&gw);
    let up = Upstream::start("up").await;
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/tenants".to_string(),
            json!({"id": "dev", "hostnames": ["dev.test"]}),
        ),
        (
            Method::PUT,
            "/v1/tenants/dev/routes/all".into(),
            json!({"path_prefix": "/", "upstreams": [{"addr": up.target()}]}),
        ),
    ] {
        let (s, v) = api
            .call(method, &path, Some(OP), Some(Body::Json(body)))
            .await;
        assert!(s.is_success(), "{path}: {v}");
    }
    let bytes = std::fs::read(dir.join("hello-as/plugin.wasm")).unwrap();
    let (s, v) = api.put_plugin("dev", "hello-as", OP, bytes).await;
    assert!(s.is_success(), "{v}");
    let plugin_config: serde_json::Value = serde_json::from_str(config).unwrap();
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/tenants/dev/routes/all/plugins/hello-as",
            Some(OP),
            Some(Body::Json(json!({"plugin_config": plugin_config}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    let r = gw.request("GET", "dev.test", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["headers"]["x-hello"], "as", "{}", r.json);
    assert_eq!(r.headers["x-as-plugin"], "as-headers");
}

/// `wharf dev`: a local gateway with the demo tenant serving the folder's plugin, redeployed when
/// a source changes; a broken build keeps the last good version serving.
#[tokio::test]
async fn wharf_dev_serves_a_plugin_folder_and_reloads_it_on_change() {
    let dir = std::env::temp_dir().join(format!("wharf-devloop-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, out) = wharf_in(&dir, &["plugin", "new", "live", "--lang", "c"]);
    assert!(ok, "{out}");
    let project = dir.join("live");
    std::fs::write(
        project.join("dev.config"),
        "request-header=x-dev\nrequest-value=1\n",
    )
    .unwrap();
    let [listen, admin] = free_addrs();
    let log = std::fs::File::create(dir.join("dev.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "dev",
            "live",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
            "--rounds",
            "240",
        ])
        .current_dir(&dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let seen = |want: &'static str| {
        let client = client.clone();
        async move {
            for _ in 0..120 {
                let r = client
                    .get(format!("http://{listen}/"))
                    .header("Host", "demo.localhost")
                    .send()
                    .await;
                if let Ok(r) = r {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    if v["headers"]["x-dev"] == want {
                        return true;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            false
        }
    };
    let started = Instant::now();
    assert!(
        seen("1").await,
        "never served:\n{}",
        std::fs::read_to_string(dir.join("dev.log")).unwrap()
    );
    eprintln!(
        "wharf dev: first version serving after {:?}",
        started.elapsed()
    );
    std::fs::write(
        project.join("dev.config"),
        "request-header=x-dev\nrequest-value=2\n",
    )
    .unwrap();
    let changed = Instant::now();
    assert!(
        seen("2").await,
        "the change was not served:\n{}",
        std::fs::read_to_string(dir.join("dev.log")).unwrap()
    );
    eprintln!("wharf dev: a change serving after {:?}", changed.elapsed());
    // A source that does not compile: reported, and version 2 keeps serving.
    let source = project.join("plugin.c");
    let mut text = std::fs::read_to_string(&source).unwrap();
    text.push_str("\nthis does not compile\n");
    std::fs::write(&source, text).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(seen("2").await);
    let log = std::fs::read_to_string(dir.join("dev.log")).unwrap();
    assert!(log.contains("the last good version keeps serving"), "{log}");
    // Terminated, it stops its gateway too (nothing left listening).
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        std::net::TcpStream::connect(listen).is_err(),
        "the dev gateway outlived wharf dev"
    );
}

/// `wharf dev` with an AssemblyScript folder: the proxy-wasm module serving on the demo route,
/// dev.config's KEY=VALUE lines as its plugin_config (a JSON object of strings).
#[tokio::test]
async fn wharf_dev_serves_an_assemblyscript_folder_with_dev_config_as_plugin_config() {
    let dir = std::env::temp_dir().join(format!("wharf-devloop-as-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, out) = wharf_in(&dir, &["plugin", "new", "live", "--lang", "assemblyscript"]);
    assert!(ok, "{out}");
    std::fs::write(dir.join("live/dev.config"), "header=x-dev\nvalue=as\n").unwrap();
    let [listen, admin] = free_addrs();
    let log = std::fs::File::create(dir.join("dev.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "dev",
            "live",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
            "--rounds",
            "240",
        ])
        .current_dir(&dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut served = false;
    for _ in 0..240 {
        let r = client
            .get(format!("http://{listen}/"))
            .header("Host", "demo.localhost")
            .send()
            .await;
        if let Ok(r) = r {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if v["headers"]["x-dev"] == "as" {
                served = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(
        served,
        "never served:\n{}",
        std::fs::read_to_string(dir.join("dev.log")).unwrap()
    );
}
