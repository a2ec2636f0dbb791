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
        // Uploads only: an issued certificate is the fleet's to order again (its ACME rows,
        // like its orders, are not config a backup carries).
        certificates: t
            .certificates
            .iter()
            .filter(|c| !c.name.starts_with(wharf_tenancy::store::ISSUED_PREFIX))
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

/// Recreates the tenant (which must not exist) from a backup: all or nothing. The file is checked
/// whole before anything is written (plugin bytes against their sha256, routes, the chains'
/// plugin versions); if the store still refuses a step, the tenant is removed again.
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
    let mut order: Vec<usize> = (0..b.plugins.len()).collect();
    order.sort_by_key(|&i| (b.plugins[i].name.clone(), b.plugins[i].version));
    let mut routes = b.routes;
    for route in &mut routes {
        route
            .validate()
            .with_context(|| format!("route {}", route.id))?;
        for a in &route.plugins {
            if !b
                .plugins
                .iter()
                .any(|p| p.name == a.plugin && p.version == a.version)
            {
                bail!(
                    "route {}: plugin {} v{} not in the backup",
                    route.id,
                    a.plugin,
                    a.version
                );
            }
        }
    }

    let hosts: Vec<&str> = b.hostnames.iter().map(String::as_str).collect();
    // Refused when the tenant exists: nothing of it is touched.
    store.create_tenant(&b.id, &b.display_name, &hosts).await?;
    let restored = Restore {
        quotas: b.quotas,
        plugins: order
            .into_iter()
            .map(|i| {
                (
                    b.plugins[i].name.clone(),
                    b.plugins[i].version,
                    std::mem::take(&mut blobs[i]),
                )
            })
            .collect(),
        routes,
        certificates: b.certificates,
    }
    .write(store, &b.id)
    .await;
    if let Err(e) = restored {
        // The tenant did not exist before: removing it leaves the store as it was.
        return match store.remove_tenant(&b.id).await {
            Ok(_) => Err(e.context(format!(
                "restoring tenant {} failed; the partly restored tenant was removed",
                b.id
            ))),
            Err(r) => Err(e.context(format!(
                "restoring tenant {} failed, and removing the partly restored tenant failed too \
                 ({r}): remove it with `wharf tenant remove {}`",
                b.id, b.id
            ))),
        };
    }
    eprintln!("tenant {} restored from {}", b.id, file.display());
    Ok(())
}

/// What a restore writes after creating the tenant, checked already.
struct Restore {
    quotas: Quotas,
    /// (name, version in the backup, bytes), in version order per plugin.
    plugins: Vec<(String, i64, Vec<u8>)>,
    routes: Vec<Route>,
    certificates: Vec<CertBackup>,
}

impl Restore {
    /// Plugin versions are renumbered from 1 in their original order; the routes' chains follow.
    async fn write(self, store: &Store, tenant: &str) -> anyhow::Result<()> {
        store
            .patch_quotas(tenant, &serde_json::to_value(&self.quotas)?)
            .await?;
        let mut renumbered: HashMap<(String, i64), i64> = HashMap::new();
        for (name, old, bytes) in self.plugins {
            let (version, _) = store.add_plugin_version(tenant, &name, &bytes).await?;
            renumbered.insert((name, old), version);
        }
        for mut route in self.routes {
            for a in &mut route.plugins {
                if let Some(v) = renumbered.get(&(a.plugin.clone(), a.version)) {
                    a.version = *v;
                }
            }
            let id = route.id.clone();
            store
                .put_route(tenant, route)
                .await
                .with_context(|| format!("route {id}"))?;
        }
        for c in self.certificates {
            let name = c.name.clone();
            let cert = TlsCertificate {
                name: c.name,
                chain_pem: c.chain_pem,
                hostnames: c.hostnames,
                not_after_ms: c.not_after_ms,
                fingerprint: c.fingerprint,
                updated_at_ms: 0,
                key_sealed: c.key_sealed,
            };
            store
                .put_certificate(tenant, &cert)
                .await
                .with_context(|| format!("certificate {name}"))?;
        }
        Ok(())
    }
}
