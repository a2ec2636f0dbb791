//! Where route and plugin commands go: the config store directly, or a running gateway's admin
//! API. Each operation is written once per target here; the commands in `commands.rs` do not
//! care which.

use reqwest::Method;
use wharf_tenancy::{OnError, PluginAttachment, PluginVersion, Route, Store};

use super::client::{ApiClient, Body};
use super::StoreArgs;
use crate::bootstrap::open_store;

/// Where route and plugin commands go: the store directly (operators on a node) or a running
/// gateway's admin API (`--api`, as a tenant or the operator).
pub enum Target {
    Store(Store),
    Api(ApiClient),
}

impl Target {
    pub async fn open(args: &StoreArgs) -> anyhow::Result<Target> {
        Ok(match &args.api {
            Some(base) => Target::Api(ApiClient::new(base, args.token.as_deref())?),
            None => Target::Store(open_store(args).await?),
        })
    }

    pub async fn routes(&self, tenant: &str) -> anyhow::Result<Vec<Route>> {
        Ok(match self {
            Target::Store(s) => s.tenant(tenant).await?.routes,
            Target::Api(c) => {
                let v = c
                    .call(
                        Method::GET,
                        &format!("/v1/tenants/{tenant}/routes"),
                        Body::None,
                    )
                    .await?;
                serde_json::from_value(v["routes"].clone())?
            }
        })
    }

    /// Creates or replaces a route, keeping its plugin chain.
    pub async fn put_route(&self, tenant: &str, route: Route) -> anyhow::Result<i64> {
        Ok(match self {
            Target::Store(s) => s.put_route_keeping_plugins(tenant, route).await?,
            Target::Api(c) => {
                let mut body = serde_json::to_value(&route)?;
                if let Some(o) = body.as_object_mut() {
                    o.remove("id");
                    o.remove("plugins");
                }
                let path = format!("/v1/tenants/{tenant}/routes/{}", route.id);
                config_version(c.call(Method::PUT, &path, Body::Json(body)).await?)
            }
        })
    }

    pub async fn remove_route(&self, tenant: &str, id: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Target::Store(s) => s.remove_route(tenant, id).await?,
            Target::Api(c) => config_version(
                c.call(
                    Method::DELETE,
                    &format!("/v1/tenants/{tenant}/routes/{id}"),
                    Body::None,
                )
                .await?,
            ),
        })
    }

    /// Attaches; `version: None` means the newest. Returns (version, config version).
    pub async fn attach(
        &self,
        tenant: &str,
        route: &str,
        a: PluginAttachmentArgs,
    ) -> anyhow::Result<(i64, i64)> {
        Ok(match self {
            Target::Store(s) => {
                let version = match a.version {
                    Some(v) => v,
                    None => s.latest_plugin_version(tenant, &a.plugin).await?,
                };
                let att = PluginAttachment {
                    plugin: a.plugin,
                    version,
                    config: a.config,
                    on_error: a.on_error,
                };
                (version, s.attach_plugin(tenant, route, att).await?)
            }
            Target::Api(c) => {
                let body = serde_json::json!({ "version": a.version, "config": a.config, "on_error": a.on_error });
                let path = format!("/v1/tenants/{tenant}/routes/{route}/plugins/{}", a.plugin);
                let v = c.call(Method::PUT, &path, Body::Json(body)).await?;
                (v["version"].as_i64().unwrap_or_default(), config_version(v))
            }
        })
    }

    pub async fn detach(&self, tenant: &str, route: &str, plugin: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Target::Store(s) => s.detach_plugin(tenant, route, plugin).await?,
            Target::Api(c) => {
                let path = format!("/v1/tenants/{tenant}/routes/{route}/plugins/{plugin}");
                config_version(c.call(Method::DELETE, &path, Body::None).await?)
            }
        })
    }

    pub async fn plugins(&self, tenant: &str) -> anyhow::Result<Vec<PluginVersion>> {
        Ok(match self {
            Target::Store(s) => s.tenant(tenant).await?.plugins,
            Target::Api(c) => {
                let v = c
                    .call(
                        Method::GET,
                        &format!("/v1/tenants/{tenant}/plugins"),
                        Body::None,
                    )
                    .await?;
                serde_json::from_value(v["plugins"].clone())?
            }
        })
    }

    pub async fn rollback(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Target::Store(s) => s.rollback_plugin(tenant, name, version).await?.0,
            Target::Api(c) => {
                let path = format!("/v1/tenants/{tenant}/plugins/{name}/rollback");
                let v = c
                    .call(
                        Method::POST,
                        &path,
                        Body::Json(serde_json::json!({ "version": version })),
                    )
                    .await?;
                serde_json::from_value(v["routes"].clone())?
            }
        })
    }
}

pub struct PluginAttachmentArgs {
    pub plugin: String,
    pub version: Option<i64>,
    pub config: std::collections::BTreeMap<String, String>,
    pub on_error: OnError,
}

fn config_version(v: serde_json::Value) -> i64 {
    v["config_version"].as_i64().unwrap_or_default()
}
