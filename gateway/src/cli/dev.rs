//! `wharf dev DIR`: a local gateway with the demo tenant (`wharf serve --demo`, a child process
//! on its own data dir) serving the plugin project in DIR on the demo's route, rebuilt and
//! re-attached whenever a source file changes, so an author sees the plugin on real requests at
//! once. A failed build keeps the last good version serving. Uploads go to the gateway's store
//! through the same in-process admin API as the CLI's other commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::api::schema::AttachBody;
use crate::bootstrap::StoreArgs;
use crate::cli::client::ApiClient;

/// How often the sources are looked at.
const POLL: Duration = Duration::from_millis(500);

/// The demo's tenant and route (`serve.rs`).
const TENANT: &str = "demo";
const ROUTE: &str = "echo";

/// Serves until interrupted (or, with `rounds`, after that many looks: for tests).
pub async fn run(
    dir: &Path,
    listen: &str,
    admin_listen: &str,
    rounds: Option<u64>,
) -> anyhow::Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} is not a plugin folder", dir.display()))?;
    let name = dir
        .file_name()
        .map_or("plugin".into(), |n| n.to_string_lossy().into_owned());
    let data_dir = dir.join(".wharf-dev");
    let mut gateway = Gateway(
        Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--demo",
                "--listen",
                listen,
                "--admin-listen",
                admin_listen,
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .spawn()
            .context("cannot start the gateway")?,
    );
    let store = StoreArgs {
        data_dir: Some(data_dir),
        ..StoreArgs::default()
    };
    println!("wharf dev: serving {name} on curl -H 'Host: demo.localhost' http://{listen}/ (Ctrl-C stops)");
    let mut terminated = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut seen = None;
    let mut n = 0u64;
    loop {
        if let Some(code) = gateway.0.try_wait()? {
            anyhow::bail!("the gateway stopped ({code})");
        }
        let stamp = newest_source(&dir);
        if stamp != seen {
            seen = stamp;
            // The demo tenant is seeded by the gateway at start: wait for it on the first round.
            if let Err(e) = deploy(&dir, &name, &store).await {
                println!("wharf dev: {e:#}; the last good version keeps serving");
            }
        }
        n += 1;
        if rounds.is_some_and(|r| n >= r) {
            return Ok(());
        }
        // Interrupted or terminated: return, and the gateway child stops with us (`Drop`).
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminated.recv() => return Ok(()),
        }
    }
}

/// Builds the project and serves the result on the demo route.
async fn deploy(dir: &Path, name: &str, store: &StoreArgs) -> anyhow::Result<()> {
    let wasm = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            super::plugin_new::build(&dir, || {
                let boot = crate::bootstrap::Bootstrap::default();
                let metrics = std::sync::Arc::new(wharf_metrics::Metrics::new());
                wharf_plugins::PluginRuntime::new(boot.plugins, None, metrics)
            })
        })
        .await??
    };
    let bytes = std::fs::read(&wasm)?;
    let client = ApiClient::open(store).await?;
    let mut tries = 0;
    let uploaded = loop {
        match client.upload_plugin(TENANT, name, bytes.clone()).await {
            Ok(u) => break u,
            Err(_) if tries < 40 => {
                // The gateway is still seeding the demo tenant.
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    };
    // A proxy-wasm module reads dev.config as its plugin configuration, a JSON object.
    let config = read_config(dir)?;
    let proxy = super::plugin_new::project_lang(dir).as_deref() == Some("assemblyscript");
    let (config, plugin_config) = if proxy {
        let object = config
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let json = serde_json::Value::Object(object);
        (
            Default::default(),
            Some(wharf_tenancy::proxy_config::ProxyConfig(json)),
        )
    } else {
        (config, None)
    };
    let body = AttachBody {
        version: Some(uploaded.version),
        config,
        on_error: Default::default(),
        position: None,
        allowed_outbound_hosts: Vec::new(),
        plugin_config,
        vm_config: None,
    };
    client.attach(TENANT, ROUTE, name, &body).await?;
    println!("wharf dev: {name} v{} serving", uploaded.version);
    Ok(())
}

/// `dev.config` in the project, KEY=VALUE lines: the attachment's config while developing (for
/// a proxy-wasm module, its plugin_config: a JSON object of those strings).
fn read_config(dir: &Path) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(dir.join("dev.config")) else {
        return Ok(Default::default());
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .with_context(|| format!("dev.config: {l:?} is not KEY=VALUE"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The newest modification time among the project's sources (not what builds produce).
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            if name == ".wharf-dev"
                || name == "plugin.wasm"
                || name == "__pycache__"
                || name == "node_modules"
            {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}

/// The gateway child, stopped with this process.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
