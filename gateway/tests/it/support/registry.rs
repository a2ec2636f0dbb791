//! A real OCI registry on loopback (Debian's `docker-registry`, installed by scripts/test) with
//! its storage in a temp dir, and images pushed to it with `skopeo copy` from OCI layout
//! directories the tests write themselves: a Wasm OCI artifact, or Istio's image format.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;

pub(crate) struct Registry {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `sha256:<hex>` of `b`.
pub(crate) fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

impl Registry {
    /// Starts `docker-registry serve` on a free port; waits until `/v2/` answers.
    pub(crate) async fn start() -> Registry {
        Self::start_tls(None).await
    }

    /// [`Registry::start`], serving HTTPS with `tls` (certificate chain PEM, key PEM) if given.
    pub(crate) async fn start_tls(tls: Option<(&str, &str)>) -> Registry {
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!("wharf-registry-{}", unique_suffix()));
            std::fs::create_dir_all(&dir).unwrap();
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.join("storage").display()
            );
            if let Some((chain, key)) = tls {
                std::fs::write(dir.join("cert.pem"), chain).unwrap();
                std::fs::write(dir.join("key.pem"), key).unwrap();
                config += &format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.join("cert.pem").display(),
                    dir.join("key.pem").display()
                );
            }
            std::fs::write(dir.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry (apt-get install docker-registry; scripts/test does)");
            let r = Registry { child, addr, dir };
            // The readiness probe checks no certificate: the registry's name is the test's.
            let client = reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap();
            let scheme = if tls.is_some() { "https" } else { "http" };
            for _ in 0..100 {
                let up = client.get(format!("{scheme}://{addr}/v2/")).send().await;
                if up.is_ok_and(|r| r.status().is_success()) {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(r); // the port was taken meanwhile: another one
        }
        panic!("docker-registry did not start")
    }

    /// What the registry logged (every request, with its URI).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Pushes an OCI layout of one manifest (`config` and `layers` as (media type, bytes)) as
    /// `repo:tag`; returns the manifest's digest.
    pub(crate) fn push(
        &self,
        repo: &str,
        tag: &str,
        config: (&str, &[u8]),
        layers: &[(&str, &[u8])],
    ) -> String {
        let dir = self.dir.join(format!("layout-{}", unique_suffix()));
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let blob = |media: &str, b: &[u8]| -> Value {
            let d = digest(b);
            std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
            json!({"mediaType": media, "digest": d, "size": b.len()})
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": blob(config.0, config.1),
            "layers": layers.iter().map(|(m, b)| blob(m, b)).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let m = blob("application/vnd.oci.image.manifest.v1+json", &bytes);
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"],
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }]});
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--quiet"])
            .arg(format!("oci:{}:{tag}", dir.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.addr))
            .output()
            .expect("skopeo (apt-get install skopeo; scripts/test does)");
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);
        m["digest"].as_str().unwrap().to_string()
    }

    /// `wasm` as a Wasm OCI artifact (config `application/vnd.wasm.config.v0+json`, one layer
    /// `application/wasm`).
    pub(crate) fn push_wasm_artifact(&self, repo: &str, tag: &str, wasm: &[u8]) -> String {
        let config =
            json!({"architecture": "wasm", "os": "wasip1", "layerDigests": [digest(wasm)]});
        self.push(
            repo,
            tag,
            (
                "application/vnd.wasm.config.v0+json",
                config.to_string().as_bytes(),
            ),
            &[("application/wasm", wasm)],
        )
    }

    /// `wasm` in Istio's image format: one gzipped tar layer holding `plugin.wasm`.
    pub(crate) fn push_istio_image(&self, repo: &str, tag: &str, wasm: &[u8]) -> String {
        let tar = tar_of(&[("plugin.wasm", wasm)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let layer = gz.finish().unwrap();
        let config = json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
        });
        self.push(
            repo,
            tag,
            (
                "application/vnd.oci.image.config.v1+json",
                config.to_string().as_bytes(),
            ),
            &[("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
        )
    }

    /// Where the registry keeps blob `digest` (to corrupt it behind the registry's back).
    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// A ustar archive of regular files.
pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend([0u8; 1024]);
    out
}
