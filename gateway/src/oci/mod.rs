//! Plugins from OCI registries, as Istio's `WasmPlugin` (`url: oci://…`) and Higress distribute
//! them. The node handling the upload resolves the reference to a manifest digest, pulls the
//! one layer that holds the module ([`registry`], under the egress policy), verifies every
//! sha256 and hands the bytes to the same path as an upload (size quota, validation, compile,
//! dedup by hash). Formats: the Wasm OCI artifact (a layer `application/wasm`) and Istio's
//! image format (a tar layer holding `plugin.wasm`, [`layer`]).

pub mod layer;
pub mod reference;
pub mod registry;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use reference::Reference;
pub use registry::Dialer;

use registry::Session;

/// Why a pull failed. Every message starts with `oci:`, the field the tenant wrote.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("oci: {0}")]
    BadReference(String),
    /// An address the egress policy refuses: nothing was dialled.
    #[error("oci: {0}")]
    Forbidden(String),
    #[error("oci: cannot reach the registry: {0}")]
    Unreachable(String),
    #[error("oci: {0}")]
    Registry(String),
    #[error("oci: {0}")]
    NoWasm(String),
    #[error("oci: {what} is {} bytes, the limit is {limit}", size.map_or("over the limit".to_string(), |s| s.to_string()))]
    TooLarge {
        what: &'static str,
        size: Option<u64>,
        limit: u64,
    },
    #[error("oci: {what} does not match its digest: expected {expected}, got {got}")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error("oci: the pull took longer than {0} s")]
    Timeout(u64),
}

/// A module pulled, and where from.
pub struct Pulled {
    pub wasm: Vec<u8>,
    /// The reference pinned to the manifest it resolved to (`oci://…@sha256:…`).
    pub source: String,
    /// The manifest's digest.
    pub digest: String,
}

/// A manifest (or manifest list), at most this large (the distribution spec's own bound).
const MANIFEST_BYTES: u64 = 4 << 20;
/// A pull, start to end, at most this long: it holds an upload slot meanwhile.
pub const PULL_SECONDS: u64 = 120;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// An index (multi-platform): the manifests it lists.
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

/// Pulls the module `reference` names, at most `limit` bytes.
pub async fn pull(dialer: &Dialer, reference: &str, limit: u64) -> Result<Pulled, OciError> {
    let r = Reference::parse(reference)?;
    tokio::time::timeout(
        std::time::Duration::from_secs(PULL_SECONDS),
        pull_parsed(dialer, &r, limit),
    )
    .await
    .unwrap_or(Err(OciError::Timeout(PULL_SECONDS)))
}

async fn pull_parsed(dialer: &Dialer, r: &Reference, limit: u64) -> Result<Pulled, OciError> {
    let mut s = Session::new(dialer);
    let base = format!("{}/v2/{}", r.base_url(), r.repository);
    let (mut manifest, digest) =
        manifest(&mut s, &base, r.manifest_ref(), r.digest.as_deref()).await?;
    if let Some(first) = manifest.manifests.first() {
        // An index: its Wasm entry if it names one, else its first (one level, no deeper).
        let pick = manifest
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture == "wasm" || p.os.starts_with("wasi"))
            })
            .unwrap_or(first);
        let at = pick.digest.clone();
        manifest = manifest_at(&mut s, &base, &at).await?;
    }
    let (desc, raw) = pick_layer(&manifest.layers)?;
    if desc.size > limit {
        return Err(OciError::TooLarge {
            what: "the image's wasm layer",
            size: Some(desc.size),
            limit,
        });
    }
    // Read no further than the manifest declares: a registry sending more is lying.
    let blob = s
        .get(
            &format!("{base}/blobs/{}", desc.digest),
            "*/*",
            desc.size,
            "the image's wasm layer",
        )
        .await
        .map_err(|e| match e {
            OciError::TooLarge { .. } => OciError::Registry(format!(
                "the image's wasm layer: the registry sent more than the {} bytes its manifest declares",
                desc.size
            )),
            e => e,
        })?;
    verify("the image's wasm layer", &desc.digest, &blob.bytes)?;
    let wasm = if raw {
        blob.bytes
    } else {
        // Decompressing takes CPU: off the API's async threads.
        let bytes = blob.bytes;
        tokio::task::spawn_blocking(move || layer::wasm_from_tar(&bytes, limit))
            .await
            .map_err(|_| OciError::NoWasm("the layer could not be read".into()))??
    };
    Ok(Pulled {
        wasm,
        source: r.pinned(&digest),
        digest,
    })
}

/// The manifest `at` (tag or digest) and the digest it resolved to, checked against `pinned`
/// and the registry's `Docker-Content-Digest`.
async fn manifest(
    s: &mut Session<'_>,
    base: &str,
    at: &str,
    pinned: Option<&str>,
) -> Result<(Manifest, String), OciError> {
    let m = s
        .get(
            &format!("{base}/manifests/{at}"),
            MANIFEST_TYPES,
            MANIFEST_BYTES,
            "the manifest",
        )
        .await?;
    let got = format!("sha256:{}", hex::encode(Sha256::digest(&m.bytes)));
    for expected in [pinned, m.digest.as_deref()].into_iter().flatten() {
        if expected != got {
            return Err(OciError::DigestMismatch {
                what: "the manifest",
                expected: expected.to_string(),
                got,
            });
        }
    }
    let parsed: Manifest = serde_json::from_slice(&m.bytes).map_err(|e| {
        OciError::Registry(format!(
            "the manifest ({}) is not an OCI or Docker manifest: {e}",
            m.content_type.unwrap_or_default()
        ))
    })?;
    Ok((parsed, got))
}

async fn manifest_at(s: &mut Session<'_>, base: &str, digest: &str) -> Result<Manifest, OciError> {
    if !reference::is_sha256_digest(digest) {
        return Err(OciError::Registry(format!(
            "the index names {digest:?}, not a sha256 digest"
        )));
    }
    Ok(manifest(s, base, digest, Some(digest)).await?.0)
}

/// The layer holding the module: a Wasm layer, else the last tar layer (the image's top);
/// `true` when the layer is the module itself.
fn pick_layer(layers: &[Descriptor]) -> Result<(&Descriptor, bool), OciError> {
    let ok = |d: &&Descriptor| reference::is_sha256_digest(&d.digest);
    if let Some(d) = layers
        .iter()
        .filter(ok)
        .find(|d| layer::WASM_LAYERS.contains(&d.media_type.as_str()))
    {
        return Ok((d, true));
    }
    if let Some(d) = layers
        .iter()
        .filter(ok)
        .rfind(|d| layer::is_tar_layer(&d.media_type))
    {
        return Ok((d, false));
    }
    let seen: Vec<&str> = layers.iter().map(|d| d.media_type.as_str()).collect();
    Err(OciError::NoWasm(format!(
        "the manifest has no wasm layer (application/wasm, or a tar layer with plugin.wasm); its layers: {seen:?}"
    )))
}

fn verify(what: &'static str, expected: &str, bytes: &[u8]) -> Result<(), OciError> {
    let got = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if got != expected {
        return Err(OciError::DigestMismatch {
            what,
            expected: expected.to_string(),
            got,
        });
    }
    Ok(())
}

/// IPv4-mapped IPv6 taken as the IPv4 address, as the egress policy compares them.
fn egress_canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    wharf_plugins::capabilities::networking::egress::canonical(ip)
}
