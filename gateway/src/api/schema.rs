//! What the admin API sends and accepts, as types: handlers return these, and the OpenAPI
//! document (`/v1/openapi.json`) is generated from them and from the handlers' annotations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use wharf_tenancy::{
    ApiKeyInfo, AuditEntry, HealthCheck, HostHeader, HostPattern, OnError, PluginAttachment,
    PluginVersion, QuotaRow, Quotas, Route, Timeouts, UpstreamProtocol, UpstreamTarget,
    UpstreamTls,
};

/// Every write answers with the config version it produced; nodes serve it once they reach it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Changed {
    pub config_version: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantCreated {
    pub id: String,
    pub config_version: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantSummary {
    pub id: String,
    pub display_name: String,
    pub hostnames: Vec<HostPattern>,
    /// How many routes it has.
    #[serde(default)]
    pub route_count: usize,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantSummary>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantDetail {
    pub id: String,
    pub display_name: String,
    pub hostnames: Vec<HostPattern>,
    pub quotas: Quotas,
    /// Route ids; `GET …/routes` has them in full.
    pub routes: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct QuotasChanged {
    pub quotas: Quotas,
    pub config_version: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyCreated {
    pub id: String,
    /// The secret: shown once, never again.
    pub key: String,
    pub note: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<ApiKeyInfo>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// Counter name (`requests`, `plugin_invocations`, `host_calls`, `quota_rejections`) →
/// breakdown (`route=api,code=200`, …) → count on this node.
pub type Usage = crate::usage::TenantCounters;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RouteList {
    pub routes: Vec<Route>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PluginAttached {
    /// The plugin version now attached.
    pub version: i64,
    pub config_version: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginVersion>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PluginVersions {
    pub name: String,
    pub versions: Vec<PluginVersion>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PluginUploaded {
    pub name: String,
    pub version: i64,
    pub sha256: String,
    pub config_version: i64,
    /// For a plugin pulled from a registry: the reference, pinned to the manifest it resolved
    /// to (`oci://registry/repository:tag@sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For a plugin pulled from a registry: the manifest's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A plugin version pulled from an OCI registry instead of uploaded (`PUT …/plugins/{plugin}`
/// with `Content-Type: application/json`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OciSource {
    /// `oci://registry[:port]/repository[:tag][@sha256:digest]`: a Wasm OCI artifact (a layer
    /// `application/wasm`) or Istio's image format (a tar layer holding `plugin.wasm`).
    /// Plain HTTP for a registry on loopback, HTTPS otherwise; dialled under the egress policy.
    pub oci: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RolledBack {
    /// Routes now running `version`.
    pub routes: Vec<String>,
    pub version: i64,
    pub config_version: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub id: String,
    pub display_name: Option<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    pub display_name: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NewHostname {
    pub hostname: String,
}

/// The route as sent by clients: the id comes from the URL, plugins from attach/detach.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    pub path_prefix: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub upstreams: Vec<UpstreamTarget>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub upstream_protocol: UpstreamProtocol,
    /// Other targets tried after a failed connection (within the route's retry budget).
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    #[serde(default)]
    pub host_header: HostHeader,
}

fn default_retries() -> u32 {
    wharf_tenancy::DEFAULT_RETRIES
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachBody {
    /// Default: the newest version.
    pub version: Option<i64>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub on_error: OnError,
    /// Place in the chain, 0 = first; default: keep its place, or last when new.
    pub position: Option<usize>,
    /// Where the plugin may send HTTP requests (`https://auth.example.com`,
    /// `https://*.example.com`, `http://10.0.0.5:8080`); default: nowhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// A proxy-wasm plugin's configuration (`proxy_on_configure`): any JSON (Istio's
    /// `pluginConfig`, Higress's rules), or a string handed over as its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub plugin_config: Option<wharf_tenancy::proxy_config::ProxyConfig>,
    /// A proxy-wasm plugin's VM configuration (`proxy_on_vm_start`), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub vm_config: Option<wharf_tenancy::proxy_config::ProxyConfig>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub version: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpload {
    /// PEM: the leaf certificate first, then each intermediate.
    pub chain_pem: String,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1). Stored sealed, never returned.
    pub key_pem: String,
}

/// A certificate as the API shows it: never its key.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CertificateInfo {
    pub name: String,
    pub hostnames: Vec<String>,
    pub not_after_ms: i64,
    pub fingerprint: String,
    pub updated_at_ms: i64,
    pub chain_pem: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CertificateList {
    pub certificates: Vec<CertificateInfo>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CertificateStored {
    pub config_version: i64,
    pub certificate: CertificateInfo,
}

/// A tenant's hostnames with ACME certificates, each with its order's state and last error.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AcmeList {
    pub hostnames: Vec<wharf_tenancy::AcmeHostname>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AcmeEnabled {
    pub config_version: i64,
    pub hostname: wharf_tenancy::AcmeHostname,
}

/// Every quota a tenant has: its name, default, bounds and meaning.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct QuotaTable {
    pub quotas: Vec<QuotaRow>,
}

/// A route as stored, and its targets as this node sees them now.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RouteDetail {
    #[serde(flatten)]
    pub route: Route,
    /// This node's view: resolved addresses, active health, passive-health ejections (empty
    /// where the API runs without a proxy, as the CLI's own).
    #[serde(default)]
    pub targets: Vec<TargetState>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TargetState {
    /// The address dialled.
    pub addr: String,
    /// The name it was resolved from, for a named target.
    pub name: Option<String>,
    /// Active health (true without a health check).
    pub healthy: bool,
    /// Left out of selection for now after failed connections or 5xx answers.
    pub ejected: bool,
}

/// Every refusal: a stable code to branch on and a message that says what to do.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Wharf admin API", version = "1"),
    modifiers(&Bearer),
    security(("bearer" = [])),
    components(schemas(PluginAttachment, ErrorBody))
)]
pub struct ApiDoc;

/// The operator token or a tenant API key, as `Authorization: Bearer …`.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The operator token, or a tenant API key"))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}
