//! `wharf cert`: a tenant's TLS certificates, through the admin API or straight into the store
//! (sealing the key with this node's key-encryption key, as the gateway does).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::Body;
use super::target::Target;
use super::StoreArgs;
use crate::bootstrap::Bootstrap;
use crate::tls::upload::put_certificate;

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Store (or replace, by name) a certificate for the tenant's hostnames.
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// PEM file: the leaf certificate first, then each intermediate.
        #[arg(long)]
        chain: PathBuf,
        /// PEM file with the leaf's private key.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a tenant's certificates (never their keys).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a certificate.
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub async fn cert(cmd: CertCmd) -> anyhow::Result<()> {
    match cmd {
        CertCmd::Add {
            tenant,
            name,
            chain,
            key,
            store: args,
        } => {
            let (chain, key) = (read(&chain)?, read(&key)?);
            let (version, hosts) = match Target::open(&args).await? {
                Target::Api(c) => {
                    let v = c
                        .call(
                            Method::PUT,
                            &format!("/v1/tenants/{tenant}/certificates/{name}"),
                            Body::Json(json!({"chain_pem": chain, "key_pem": key})),
                        )
                        .await?;
                    (
                        v["config_version"].as_i64().unwrap_or_default(),
                        v["certificate"]["hostnames"].to_string(),
                    )
                }
                Target::Store(store) => {
                    let boot = Bootstrap::load(args.config.as_deref())?.with_store_args(&args);
                    let sealer = crate::tls::key_sealer(&boot.tls, &boot.data_dir)?;
                    let (v, c) =
                        put_certificate(&store, &sealer, &tenant, &name, &chain, &key).await?;
                    (v, format!("{:?}", c.hostnames))
                }
            };
            println!(
                "certificate {name} of {tenant} stored for {hosts} (config version {version})"
            );
        }
        CertCmd::List { tenant, store } => {
            let certs = match Target::open(&store).await? {
                Target::Api(c) => {
                    let v = c
                        .call(
                            Method::GET,
                            &format!("/v1/tenants/{tenant}/certificates"),
                            Body::None,
                        )
                        .await?;
                    v["certificates"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap_or_default().to_string(),
                                c["hostnames"].to_string(),
                                c["not_after_ms"].as_i64().unwrap_or_default(),
                            )
                        })
                        .collect::<Vec<_>>()
                }
                Target::Store(s) => s
                    .tenant(&tenant)
                    .await?
                    .certificates
                    .into_iter()
                    .map(|c| (c.name, format!("{:?}", c.hostnames), c.not_after_ms))
                    .collect(),
            };
            for (name, hosts, not_after_ms) in certs {
                println!(
                    "{name}\t{hosts}\texpires at {} (Unix time)",
                    not_after_ms / 1000
                );
            }
        }
        CertCmd::Remove {
            tenant,
            name,
            store,
        } => {
            let version = match Target::open(&store).await? {
                Target::Api(c) => c
                    .call(
                        Method::DELETE,
                        &format!("/v1/tenants/{tenant}/certificates/{name}"),
                        Body::None,
                    )
                    .await?["config_version"]
                    .as_i64()
                    .unwrap_or_default(),
                Target::Store(s) => s.delete_certificate(&tenant, &name).await?,
            };
            println!("certificate {name} of {tenant} removed (config version {version})");
        }
    }
    Ok(())
}
