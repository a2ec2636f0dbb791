//! An admin API client for tests, and a fixture with two tenants and their keys.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use super::{fresh_store, StoreKind, Wharf};

pub(crate) const OP: &str = "op-secret-token";

pub(crate) struct Api {
    base: String,
    client: Client,
}

impl Api {
    pub(crate) fn new(gw: &Wharf) -> Api {
        Api {
            base: format!("http://{}", gw.admin),
            client: Client::new(),
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Body>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Bytes(b)) => req.body(b),
            None => req,
        };
        let resp = req.send().await.expect("api call");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Api {
    /// Sets tenant `t`'s quotas named in `quotas`, as the operator (the new configuration is
    /// served once the next change is: `upload_and_attach` and the like wait for theirs).
    pub(crate) async fn set_quotas(&self, t: &str, quotas: Value) {
        let path = format!("/v1/tenants/{t}/quotas");
        let (s, v) = self
            .call(Method::PATCH, &path, Some(OP), Some(Body::Json(quotas)))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// Uploads `bytes` as the next version of `tenant`'s plugin `name`.
    pub(crate) async fn put_plugin(
        &self,
        tenant: &str,
        name: &str,
        token: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.call(
            Method::PUT,
            &format!("/v1/tenants/{tenant}/plugins/{name}"),
            Some(token),
            Some(Body::Bytes(bytes)),
        )
        .await
    }
}

#[derive(Clone)]
pub(crate) enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

/// A gateway with tenants a and b: (gateway, client, a's key, b's key, a revoked key of a).
pub(crate) async fn setup() -> (Wharf, Api, String, String, String) {
    setup_on(StoreKind::Sqlite).await
}

/// [`setup`] on a store of the given kind.
pub(crate) async fn setup_on(kind: StoreKind) -> (Wharf, Api, String, String, String) {
    setup_configured(kind, "").await
}

/// [`setup_on`] with more of the bootstrap file (whole tables: it comes last).
pub(crate) async fn setup_configured(
    kind: StoreKind,
    extra_toml: &str,
) -> (Wharf, Api, String, String, String) {
    let (url, _) = fresh_store(kind).await;
    // These nodes are for authorization tests, which send many wrong keys from one address on
    // purpose: the failed-authentication budget has its own test (hostile_tenant.rs).
    let gw = Wharf::start_configured(
        &url,
        &format!("operator_token = \"{OP}\"\n[admin]\nfailed_auth_burst = 100000\n{extra_toml}"),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    for (t, host) in [("a", "a.test"), ("b", "b.test")] {
        let (s, v) = api
            .call(
                Method::POST,
                "/v1/tenants",
                Some(OP),
                Some(Body::Json(json!({"id": t, "hostnames": [host]}))),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let key = |t: &str| {
        let api = &api;
        let t = t.to_string();
        async move {
            let (s, v) = api
                .call(
                    Method::POST,
                    &format!("/v1/tenants/{t}/api-keys"),
                    Some(OP),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            v["key"].as_str().unwrap().to_string()
        }
    };
    let (ka, kb) = (key("a").await, key("b").await);
    // A revoked key of tenant a.
    let (_, v) = api
        .call(Method::POST, "/v1/tenants/a/api-keys", Some(OP), None)
        .await;
    let revoked = v["key"].as_str().unwrap().to_string();
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/tenants/a/api-keys/{}", v["id"].as_str().unwrap()),
            Some(OP),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    (gw, api, ka, kb, revoked)
}
