//! What the admin API sends and accepts, as types: handlers return these, and the OpenAPI
//! document (`/v1/openapi.json`) is generated from them and from the handlers' annotations.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use wharf_tenancy::{
    ApiKeyInfo, AuditEntry, HostPattern, PluginAttachment, PluginVersion, Quotas, Route,
};

/// Every write answers with the config version it produced; nodes serve it once they reach it.
#[derive(Serialize, ToSchema)]
pub struct Changed {
    pub config_version: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TenantCreated {
    pub id: String,
    pub config_version: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TenantSummary {
    pub id: String,
    pub display_name: String,
    pub hostnames: Vec<HostPattern>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantDetail {
    pub id: String,
    pub display_name: String,
    pub hostnames: Vec<HostPattern>,
    pub quotas: Quotas,
    /// Route ids; `GET …/routes` has them in full.
    pub routes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct QuotasChanged {
    pub quotas: Quotas,
    pub config_version: i64,
}

#[derive(Serialize, ToSchema)]
pub struct KeyCreated {
    pub id: String,
    /// The secret: shown once, never again.
    pub key: String,
    pub note: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<ApiKeyInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// Counter name (`requests`, `plugin_invocations`, `host_calls`, `quota_rejections`) →
/// breakdown (`route=api,code=200`, …) → count on this node.
pub type Usage = crate::usage::TenantCounters;

#[derive(Serialize, ToSchema)]
pub struct RouteList {
    pub routes: Vec<Route>,
}

#[derive(Serialize, ToSchema)]
pub struct PluginAttached {
    /// The plugin version now attached.
    pub version: i64,
    pub config_version: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginVersion>,
}

#[derive(Serialize, ToSchema)]
pub struct PluginVersions {
    pub name: String,
    pub versions: Vec<PluginVersion>,
}

#[derive(Serialize, ToSchema)]
pub struct PluginUploaded {
    pub name: String,
    pub version: i64,
    pub sha256: String,
    pub config_version: i64,
}

#[derive(Serialize, ToSchema)]
pub struct RolledBack {
    /// Routes now running `version`.
    pub routes: Vec<String>,
    pub version: i64,
    pub config_version: i64,
}

/// Every refusal: a stable code to branch on and a message that says what to do.
#[derive(Serialize, ToSchema)]
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
