//! deploy/ with real tools: `tests/deploy/check_deploy.py` (docker-compose, the Kubernetes
//! client's API models, checkov; installed by scripts/test), and the gateway started with exactly
//! the bootstrap file the image and the manifests use (addresses and data dir overridden by flags
//! so the test can run beside others), answering /readyz through `wharf probe`, the command the
//! image's HEALTHCHECK runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn repo() -> std::path::PathBuf {
    crate::support::package_dir()
        .join("..")
        .canonicalize()
        .unwrap()
}

#[test]
fn deploy_files_pass_compose_kubernetes_models_and_checkov() {
    let python = std::env::var("WHARF_DEPLOY_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/wharf/tools/deploy-py/bin/python",
            std::env::var("HOME").unwrap()
        )
    });
    let out = Command::new(&python)
        .arg(repo().join("gateway/tests/deploy/check_deploy.py"))
        .env("WHARF_REPO", repo())
        .output()
        .unwrap_or_else(|e| {
            panic!("{python}: {e} (scripts/test installs checkov, docker-compose, kubernetes)")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("deploy: all checks passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_bootstrap_file_starts_a_node_that_the_healthcheck_sees_ready() {
    let (url, _) = fresh_store(StoreKind::Postgres).await;
    let (proxy, admin) = (free_addr(), free_addr());
    let data = std::env::temp_dir().join(format!("wharf-deploy-{}", admin.port()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("serve")
        .arg("--config")
        .arg(repo().join("deploy/docker/wharf.toml"))
        .args([
            "--listen",
            &proxy.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("WHARF_STORE", &url)
        .env("WHARF_OPERATOR_TOKEN", "deploy-test-token")
        .env("WHARF_TLS_KEY_ENCRYPTION_KEY", "ab".repeat(32))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let probe = |path: &str| {
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["probe", &format!("http://{admin}{path}")])
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let mut ready = probe("/readyz");
    while !ready.status.success() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = probe("/readyz");
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&data).ok();
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let refused = probe("/readyz");
    assert!(
        !refused.status.success(),
        "the probe fails when the node is gone"
    );
}

/// The image built for real with buildah from a debootstrap root filesystem, and smoke-tested by
/// running it (scripts/build-image). Needs root and buildah (scripts/test installs buildah and
/// debootstrap); elsewhere it says why it did not run.
#[test]
fn the_image_builds_with_buildah_and_serves_a_request() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let buildah = Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !root || !buildah {
        eprintln!(
            "skipped: building the image needs root and buildah (root: {root}, buildah: {buildah})"
        );
        return;
    }
    let out = Command::new(repo().join("scripts/build-image"))
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("smoke test passed"), "{text}");
}
