//! The CLI's client of the admin API, typed with the API's own types (`api/schema.rs`): a schema
//! change breaks the build, not a user. It reaches a running gateway (`--api URL --token T`) or,
//! on a node, the same API served in this process over the config store (`local.rs`), so each
//! admin operation is implemented once, by its API handler.

use anyhow::{anyhow, Context};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreArgs;
use crate::api::schema::{
    AcmeEnabled, AcmeList, AttachBody, CertificateList, CertificateStored, CertificateUpload,
    Changed, NewHostname, NewTenant, PluginAttached, PluginList, PluginUploaded, QuotaTable,
    QuotasChanged, Rollback, RolledBack, RouteBody, RouteList, TenantCreated, TenantList,
};

pub struct ApiClient {
    transport: Transport,
    token: String,
}

enum Transport {
    Http {
        base: String,
        http: reqwest::Client,
    },
    /// The API's router in this process, over the store the command line names.
    Local(axum::Router),
}

pub enum Body {
    None,
    Json(serde_json::Value),
    Bytes(Vec<u8>),
}

impl ApiClient {
    /// `--api`: that gateway's API; otherwise this process's own over the store.
    pub async fn open(args: &StoreArgs) -> anyhow::Result<ApiClient> {
        match &args.api {
            Some(base) => ApiClient::http(base, args.token.as_deref()),
            None => super::local::api(args).await,
        }
    }

    pub fn http(base: &str, token: Option<&str>) -> anyhow::Result<ApiClient> {
        let token = token.context(
            "--api needs --token (or WHARF_TOKEN): a tenant API key or the operator token",
        )?;
        Ok(ApiClient {
            transport: Transport::Http {
                base: base.trim_end_matches('/').to_string(),
                http: reqwest::Client::new(),
            },
            token: token.to_string(),
        })
    }

    pub(super) fn local(router: axum::Router, token: String) -> ApiClient {
        ApiClient {
            transport: Transport::Local(router),
            token,
        }
    }

    /// Calls the API; an error response becomes an error carrying the API's own message.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> anyhow::Result<T> {
        let (status, text) = match &self.transport {
            Transport::Http { base, http } => {
                let url = format!("{base}{path}");
                let mut req = http.request(method.clone(), &url).bearer_auth(&self.token);
                req = match body {
                    Body::None => req,
                    Body::Json(v) => req.json(&v),
                    Body::Bytes(b) => req.header("content-type", "application/wasm").body(b),
                };
                let resp = req
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {url}"))?;
                (resp.status(), resp.text().await.unwrap_or_default())
            }
            Transport::Local(router) => self.local_call(router, &method, path, body).await?,
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() {
            let message = value["message"].as_str().map_or(text, str::to_string);
            return Err(match self.transport {
                Transport::Http { .. } => anyhow!("{method} {path}: {status}: {message}"),
                Transport::Local(_) => anyhow!("{message}"),
            });
        }
        serde_json::from_value(value)
            .with_context(|| format!("{method} {path}: the answer is not what this CLI expects"))
    }

    async fn local_call(
        &self,
        router: &axum::Router,
        method: &Method,
        path: &str,
        body: Body,
    ) -> anyhow::Result<(http::StatusCode, String)> {
        use tower_service::Service;
        let (content_type, bytes) = match body {
            Body::None => ("application/json", Vec::new()),
            Body::Json(v) => ("application/json", serde_json::to_vec(&v)?),
            Body::Bytes(b) => ("application/wasm", b),
        };
        let mut req = http::Request::builder()
            .method(method.as_str())
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(axum::body::Body::from(bytes))?;
        // What the listener would add: the caller's address, for the per-address budgets.
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                0,
            ))));
        let mut router = router.clone();
        std::future::poll_fn(|cx| {
            <axum::Router as Service<http::Request<axum::body::Body>>>::poll_ready(&mut router, cx)
        })
        .await?;
        let resp = router.call(req).await?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.call(method, path, Body::Json(serde_json::to_value(body)?))
            .await
    }

    pub async fn create_tenant(&self, t: &NewTenant) -> anyhow::Result<TenantCreated> {
        self.json(Method::POST, "/v1/tenants", t).await
    }

    pub async fn tenants(&self) -> anyhow::Result<TenantList> {
        self.call(Method::GET, "/v1/tenants", Body::None).await
    }

    pub async fn remove_tenant(&self, tenant: &str) -> anyhow::Result<Changed> {
        let path = format!("/v1/tenants/{}", seg(tenant));
        self.call(Method::DELETE, &path, Body::None).await
    }

    pub async fn add_hostname(&self, tenant: &str, host: &str) -> anyhow::Result<Changed> {
        let path = format!("/v1/tenants/{}/hostnames", seg(tenant));
        let body = NewHostname {
            hostname: host.to_string(),
        };
        self.json(Method::POST, &path, &body).await
    }

    pub async fn remove_hostname(&self, tenant: &str, host: &str) -> anyhow::Result<Changed> {
        let path = format!("/v1/tenants/{}/hostnames/{}", seg(tenant), seg(host));
        self.call(Method::DELETE, &path, Body::None).await
    }

    pub async fn set_quotas(
        &self,
        tenant: &str,
        patch: &serde_json::Value,
    ) -> anyhow::Result<QuotasChanged> {
        let path = format!("/v1/tenants/{}/quotas", seg(tenant));
        self.json(Method::PATCH, &path, patch).await
    }

    pub async fn quota_table(&self) -> anyhow::Result<QuotaTable> {
        self.call(Method::GET, "/v1/quotas", Body::None).await
    }

    pub async fn routes(&self, tenant: &str) -> anyhow::Result<RouteList> {
        let path = format!("/v1/tenants/{}/routes", seg(tenant));
        self.call(Method::GET, &path, Body::None).await
    }

    /// Creates or replaces a route, keeping its plugin chain.
    pub async fn put_route(
        &self,
        tenant: &str,
        id: &str,
        route: &RouteBody,
    ) -> anyhow::Result<Changed> {
        let path = format!("/v1/tenants/{}/routes/{}", seg(tenant), seg(id));
        self.json(Method::PUT, &path, route).await
    }

    pub async fn remove_route(&self, tenant: &str, id: &str) -> anyhow::Result<Changed> {
        let path = format!("/v1/tenants/{}/routes/{}", seg(tenant), seg(id));
        self.call(Method::DELETE, &path, Body::None).await
    }

    pub async fn attach(
        &self,
        tenant: &str,
        route: &str,
        plugin: &str,
        body: &AttachBody,
    ) -> anyhow::Result<PluginAttached> {
        let path = attachment(tenant, route, plugin);
        self.json(Method::PUT, &path, body).await
    }

    pub async fn detach(&self, tenant: &str, route: &str, plugin: &str) -> anyhow::Result<Changed> {
        let path = attachment(tenant, route, plugin);
        self.call(Method::DELETE, &path, Body::None).await
    }

    pub async fn plugins(&self, tenant: &str) -> anyhow::Result<PluginList> {
        let path = format!("/v1/tenants/{}/plugins", seg(tenant));
        self.call(Method::GET, &path, Body::None).await
    }

    pub async fn upload_plugin(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<PluginUploaded> {
        let path = format!("/v1/tenants/{}/plugins/{}", seg(tenant), seg(name));
        self.call(Method::PUT, &path, Body::Bytes(bytes)).await
    }

    /// Has the gateway pull the plugin from an OCI registry and store it as the next version.
    pub async fn pull_plugin(
        &self,
        tenant: &str,
        name: &str,
        reference: &str,
    ) -> anyhow::Result<PluginUploaded> {
        let path = format!("/v1/tenants/{}/plugins/{}", seg(tenant), seg(name));
        let body = serde_json::json!({ "oci": reference });
        self.call(Method::PUT, &path, Body::Json(body)).await
    }

    pub async fn rollback(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> anyhow::Result<RolledBack> {
        let path = format!("/v1/tenants/{}/plugins/{}/rollback", seg(tenant), seg(name));
        self.json(Method::POST, &path, &Rollback { version }).await
    }

    pub async fn certificates(&self, tenant: &str) -> anyhow::Result<CertificateList> {
        let path = format!("/v1/tenants/{}/certificates", seg(tenant));
        self.call(Method::GET, &path, Body::None).await
    }

    pub async fn put_certificate(
        &self,
        tenant: &str,
        name: &str,
        upload: &CertificateUpload,
    ) -> anyhow::Result<CertificateStored> {
        let path = format!("/v1/tenants/{}/certificates/{}", seg(tenant), seg(name));
        self.json(Method::PUT, &path, upload).await
    }

    pub async fn remove_certificate(&self, tenant: &str, name: &str) -> anyhow::Result<Changed> {
        let path = format!("/v1/tenants/{}/certificates/{}", seg(tenant), seg(name));
        self.call(Method::DELETE, &path, Body::None).await
    }

    pub async fn acme(&self, tenant: &str) -> anyhow::Result<AcmeList> {
        let path = format!("/v1/tenants/{}/acme", seg(tenant));
        self.call(Method::GET, &path, Body::None).await
    }

    pub async fn enable_acme(&self, tenant: &str, hostname: &str) -> anyhow::Result<AcmeEnabled> {
        let path = format!("/v1/tenants/{}/acme/{}", seg(tenant), seg(hostname));
        self.call(Method::PUT, &path, Body::None).await
    }

    pub async fn disable_acme(&self, tenant: &str, hostname: &str) -> anyhow::Result<Changed> {
        let path = format!("/v1/tenants/{}/acme/{}", seg(tenant), seg(hostname));
        self.call(Method::DELETE, &path, Body::None).await
    }
}

fn attachment(tenant: &str, route: &str, plugin: &str) -> String {
    format!(
        "/v1/tenants/{}/routes/{}/plugins/{}",
        seg(tenant),
        seg(route),
        seg(plugin)
    )
}

/// A path segment, percent-encoded (a wildcard hostname's `*`, anything a user typed).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
