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
    /// Have the fleet obtain (and renew) a certificate over ACME for one of the tenant's
    /// exact hostnames; it must resolve to the fleet's plain HTTP listener (HTTP-01).
    Acme {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        hostname: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The tenant's ACME hostnames: state, expiry, next order, last error.
    AcmeStatus {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Stop ACME for a hostname: no more renewals, its issued certificate removed.
    AcmeOff {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        hostname: String,
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
        CertCmd::Acme {
            tenant,
            hostname,
            store,
        } => {
            let h = ApiClient::open(&store)
                .await?
                .enable_acme(&tenant, &hostname)
                .await?
                .hostname;
            println!(
                "ACME for {} of {tenant}: {} (see `wharf cert acme-status`)",
                h.hostname,
                h.state.as_str()
            );
        }
        CertCmd::AcmeStatus { tenant, store } => {
            for h in ApiClient::open(&store)
                .await?
                .acme(&tenant)
                .await?
                .hostnames
            {
                println!(
                    "{}\t{}\texpires at {}\tnext order at {}\t{}",
                    h.hostname,
                    h.state.as_str(),
                    h.not_after_ms / 1000,
                    h.next_attempt_ms / 1000,
                    h.last_error
                );
            }
        }
        CertCmd::AcmeOff {
            tenant,
            hostname,
            store,
        } => {
            let v = ApiClient::open(&store)
                .await?
                .disable_acme(&tenant, &hostname)
                .await?;
            println!(
                "ACME off for {hostname} of {tenant}, its certificate removed (config version {})",
                v.config_version
            );
        }
    }
    Ok(())
}
