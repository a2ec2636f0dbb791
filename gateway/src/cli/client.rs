//! The CLI's client for a running gateway's admin API (`--api URL --token T`).

use anyhow::{anyhow, Context};
use reqwest::Method;
use serde_json::Value;

pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

pub enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

impl ApiClient {
    pub fn new(base: &str, token: Option<&str>) -> anyhow::Result<ApiClient> {
        let token = token.context(
            "--api needs --token (or WHARF_TOKEN): a tenant API key or the operator token",
        )?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        })
    }

    /// Calls the API; an error response becomes an error carrying the API's own message.
    pub async fn call(&self, method: Method, path: &str, body: Body) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Bytes(b) => req.header("content-type", "application/wasm").body(b),
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(text);
            return Err(anyhow!("{method} {path}: {status}: {message}"));
        }
        Ok(value)
    }
}
