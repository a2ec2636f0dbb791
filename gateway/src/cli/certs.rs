//! `wharf cert`: a tenant's TLS certificates, through a gateway's admin API or the same API in
//! this process (sealing the key with this node's key-encryption key, as the gateway does).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use super::client::ApiClient;
use super::StoreArgs;
use crate::api::schema::CertificateUpload;

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
            store,
        } => {
            let upload = CertificateUpload {
                chain_pem: read(&chain)?,
                key_pem: read(&key)?,
            };
            // Sealed with the key-encryption key of the gateway, or of this node's bootstrap.
            let stored = ApiClient::open(&store)
                .await?
                .put_certificate(&tenant, &name, &upload)
                .await?;
            println!(
                "certificate {name} of {tenant} stored for {:?} (config version {})",
                stored.certificate.hostnames, stored.config_version
            );
        }
        CertCmd::List { tenant, store } => {
            let list = ApiClient::open(&store).await?.certificates(&tenant).await?;
            for c in list.certificates {
                println!(
                    "{}\t{:?}\texpires at {} (Unix time)",
                    c.name,
                    c.hostnames,
                    c.not_after_ms / 1000
                );
            }
        }
        CertCmd::Remove {
            tenant,
            name,
            store,
        } => {
            let v = ApiClient::open(&store)
                .await?
                .remove_certificate(&tenant, &name)
                .await?;
            println!(
                "certificate {name} of {tenant} removed (config version {})",
                v.config_version
            );
        }
    }
    Ok(())
}
