//! Outbound HTTP for plugins (`wharf:plugin/http`): a plugin sends a request to a destination
//! its attachment allows (`allowed_outbound_hosts`); the networking capability's resolver and
//! egress policy decide which addresses may be dialled ([`connect`]); the tenant's
//! [`HttpQuotas`] bound what it spends ([`send`]). The wait is host-call time: the plugin's CPU
//! slot is free meanwhile, its deadline keeps running.

mod connect;
mod reclaim;
mod send;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use wasmtime::component::{HasSelf, Linker};
use wharf_tenancy::outbound::OutboundHost;
use wharf_tenancy::{HttpQuotas, Quotas};

use super::networking::Networking;
use super::{Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext};
use crate::bindings::wharf::plugin::http::{
    add_to_linker, Host, IncomingResponse, OutgoingRequest,
};
use crate::bindings::wharf::plugin::types::HostError as WitError;
use crate::state::{off_cpu, PluginState};
pub use send::TenantHttp;
pub(crate) use send::HOST_OWNED;

/// `[outbound_http]` in the bootstrap file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// CA certificates (PEM) trusted for plugins' HTTPS besides the system's roots: an
    /// operator's private CA.
    pub ca_file: Option<PathBuf>,
}

/// The capability: the node's TLS roots, a pooled client per tenant.
pub struct Http {
    settings: HttpSettings,
    /// Built on the first tenant's first call: reading the system's roots costs milliseconds.
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Http {
    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, HostError> {
        self.tls
            .get_or_init(|| client_config(&self.settings))
            .clone()
            .map_err(|e| {
                tracing::warn!("outbound HTTP has no TLS roots: {e}");
                HostError::BackendUnavailable
            })
    }
}

impl Http {
    /// The roots plugins' HTTPS verifies with (the system's and `ca_file`), for the node's own
    /// fetches on a tenant's behalf (plugins pulled from OCI registries).
    pub fn client_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls().ok()
    }
}

impl Capability for Http {
    const NAME: &'static str = "http";
    type Settings = HttpSettings;
    type Quotas = HttpQuotas;
    type TenantState = TenantHttp;
    /// The attachment's `allowed_outbound_hosts`.
    type InstanceState = Arc<[OutboundHost]>;

    fn new(settings: HttpSettings, _: &NodeContext) -> Result<Self, SettingsError> {
        if let Some(path) = &settings.ca_file {
            // Read once now, so a wrong path stops the gateway at start, not at a first call.
            read_pem(path).map_err(|reason| SettingsError {
                capability: Self::NAME,
                reason,
            })?;
        }
        Ok(Http {
            settings,
            tls: OnceLock::new(),
        })
    }

    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
    }

    fn quotas(all: &Quotas) -> &HttpQuotas {
        &all.http
    }

    fn instance(ctx: &InstanceContext<'_>) -> Self::InstanceState {
        ctx.outbound.clone()
    }

    async fn open(&self, ctx: TenantContext<'_, Self>) -> Result<TenantHttp, HostError> {
        let dialing = ctx.get::<Networking>().await?.clone();
        Ok(TenantHttp::new(
            ctx.tenant,
            ctx.all_quotas,
            dialing,
            self.tls()?,
            ctx.results().clone(),
            ctx.metrics().clone(),
        ))
    }
}

impl Host for PluginState {
    async fn send(&mut self, req: OutgoingRequest) -> Result<IncomingResponse, WitError> {
        let call = self.host_call("http.send");
        let left = self.call.left(&self.cpu);
        let io = async {
            if self.caps.http.is_empty() {
                return Err(HostError::Denied(
                    "this plugin's attachment allows no outbound hosts (allowed_outbound_hosts)"
                        .into(),
                ));
            }
            let http = self.capability::<Http>().await?;
            http.send(req, &self.caps.http, left).await
        };
        let result = off_cpu(self, io).await;
        call.finish(self, &result);
        result.map_err(Into::into)
    }
}

/// Verified TLS: the system's roots and the operator's `ca_file`; HTTP/1.1.
fn client_config(settings: &HttpSettings) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: the rest (and `ca_file`) still verify.
    if let Ok(native) = rustls_native_certs::load_native_certs() {
        roots.add_parsable_certificates(native);
    }
    if let Some(path) = &settings.ca_file {
        roots.add_parsable_certificates(read_pem(path)?);
    }
    if roots.is_empty() {
        return Err(
            "no CA certificates: install ca-certificates or set [outbound_http] ca_file".into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_pem(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {}: no certificates", path.display()));
    }
    Ok(certs)
}
