//! `wharf backup` / `wharf restore`: one tenant's whole config as one JSON file — hostnames,
//! quotas, routes with their plugin chains, every plugin version with its bytes (checked against
//! their sha256 on restore), and certificates with their keys still sealed (they open only on a
//! fleet with the same key-encryption key). Straight from and into the store.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wharf_tenancy::{Quotas, Route, Store, TlsCertificate};

const FORMAT: &str = "wharf-tenant-backup/1";

#[derive(Serialize, Deserialize)]
pub struct TenantBackup {
    format: String,
    id: String,
    display_name: String,
    hostnames: Vec<String>,
    quotas: Quotas,
    routes: Vec<Route>,
    plugins: Vec<PluginBackup>,
    certificates: Vec<CertBackup>,
}

#[derive(Serialize, Deserialize)]
struct PluginBackup {
    name: String,
    version: i64,
    sha256: String,
    /// The component, hex.
    bytes: String,
}

#[derive(Serialize, Deserialize)]
struct CertBackup {
    name: String,
    chain_pem: String,
    hostnames: Vec<String>,
    not_after_ms: i64,
    fingerprint: String,
    key_sealed: String,
}

pub async fn backup(store: &Store, tenant: &str, out: Option<PathBuf>) -> anyhow::Result<()> {
    let t = store.tenant(tenant).await?;
    let mut plugins = Vec::new();
    for p in &t.plugins {
        let bytes = store
            .plugin_blob(&p.sha256)
            .await?
            .with_context(|| format!("plugin {} v{}: bytes missing", p.name, p.version))?;
        plugins.push(PluginBackup {
            name: p.name.clone(),
            version: p.version,
            sha256: p.sha256.clone(),
            bytes: hex::encode(bytes),
        });
    }
    let b = TenantBackup {
        format: FORMAT.into(),
        id: t.id.clone(),
        display_name: t.display_name.clone(),
        hostnames: t.hostnames.iter().map(|h| h.to_string()).collect(),
        quotas: t.quotas.clone(),
        routes: t.routes.clone(),
        plugins,
        certificates: t
            .certificates
            .iter()
            .map(|c| CertBackup {
                name: c.name.clone(),
                chain_pem: c.chain_pem.clone(),
                hostnames: c.hostnames.clone(),
                not_after_ms: c.not_after_ms,
                fingerprint: c.fingerprint.clone(),
                key_sealed: c.key_sealed.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&b)?;
    match out {
        Some(path) => std::fs::write(&path, json)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::Write::write_all(&mut std::io::stdout(), &json)?,
    }
    eprintln!(
        "tenant {tenant}: {} hostnames, {} routes, {} plugin versions, {} certificates",
        b.hostnames.len(),
        b.routes.len(),
        b.plugins.len(),
        b.certificates.len()
    );
    Ok(())
}

/// Recreates the tenant (which must not exist) from a backup. Plugin versions are renumbered
/// from 1 in their original order and the routes' chains follow them.
pub async fn restore(store: &Store, file: PathBuf) -> anyhow::Result<()> {
    let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let b: TenantBackup = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a Wharf tenant backup", file.display()))?;
    if b.format != FORMAT {
        bail!(
            "{}: format {:?}, expected {FORMAT:?}",
            file.display(),
            b.format
        );
    }
    // Everything is checked before anything is written.
    let mut blobs = Vec::new();
    for p in &b.plugins {
        let bytes = hex::decode(&p.bytes)
            .with_context(|| format!("plugin {} v{}: bytes are not hex", p.name, p.version))?;
        if hex::encode(Sha256::digest(&bytes)) != p.sha256 {
            bail!(
                "plugin {} v{}: bytes do not match sha256 {}",
                p.name,
                p.version,
                p.sha256
            );
        }
        blobs.push(bytes);
    }
    let hosts: Vec<&str> = b.hostnames.iter().map(String::as_str).collect();
    store.create_tenant(&b.id, &b.display_name, &hosts).await?;
    store
        .patch_quotas(&b.id, &serde_json::to_value(&b.quotas)?)
        .await?;
    let mut order: Vec<usize> = (0..b.plugins.len()).collect();
    order.sort_by_key(|&i| (b.plugins[i].name.clone(), b.plugins[i].version));
    let mut renumbered: HashMap<(String, i64), i64> = HashMap::new();
    for i in order {
        let p = &b.plugins[i];
        let (version, _) = store.add_plugin_version(&b.id, &p.name, &blobs[i]).await?;
        renumbered.insert((p.name.clone(), p.version), version);
    }
    for mut route in b.routes {
        for a in &mut route.plugins {
            a.version = *renumbered
                .get(&(a.plugin.clone(), a.version))
                .with_context(|| {
                    format!(
                        "route {}: plugin {} v{} not in the backup",
                        route.id, a.plugin, a.version
                    )
                })?;
        }
        store.put_route(&b.id, route).await?;
    }
    for c in b.certificates {
        let cert = TlsCertificate {
            name: c.name,
            chain_pem: c.chain_pem,
            hostnames: c.hostnames,
            not_after_ms: c.not_after_ms,
            fingerprint: c.fingerprint,
            updated_at_ms: 0,
            key_sealed: c.key_sealed,
        };
        store.put_certificate(&b.id, &cert).await?;
    }
    eprintln!("tenant {} restored from {}", b.id, file.display());
    Ok(())
}
