//! The fleet's ACME account, over reqwest (already the gateway's HTTP client; rustls with ring,
//! so no second TLS stack). The account's credentials are sealed with the key-encryption key in
//! the store: the first node to need one creates it, every other node loads that same one.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{Account, AccountCredentials, BodyWrapper, BytesResponse, NewAccount};
use wharf_tenancy::Store;

use super::AcmeSettings;
use crate::tls::seal::KeySealer;

/// Where the system keeps its CA bundle (Debian's ca-certificates).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    #[error("ACME CA bundle {path}: {why}")]
    Bundle { path: String, why: String },
    #[error("ACME HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    #[error("ACME account: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("ACME account in the store: {0}")]
    Store(#[from] wharf_tenancy::StoreError),
    #[error("ACME account credentials: {0}")]
    Credentials(String),
}

struct Http(reqwest::Client);

impl instant_acme::HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // The body is in memory already: collecting it cannot fail (`Infallible`).
            let body = match http_body_util::BodyExt::collect(body).await {
                Ok(b) => b.to_bytes(),
                Err(never) => match never {},
            };
            let other = |e: reqwest::Error| instant_acme::Error::Other(Box::new(e));
            let rsp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(other)?;
            let mut head = http::Response::new(());
            *head.status_mut() = rsp.status();
            *head.headers_mut() = rsp.headers().clone();
            let body = rsp.bytes().await.map_err(other)?;
            Ok(BytesResponse {
                parts: head.into_parts().0,
                body: Box::new(body),
            })
        })
    }
}

/// An HTTPS client trusting the operator's bundle, or the system's.
fn http(settings: &AcmeSettings) -> Result<Box<dyn instant_acme::HttpClient>, ClientError> {
    let path = settings
        .ca_bundle
        .clone()
        .unwrap_or_else(|| SYSTEM_BUNDLE.into());
    let bundle_err = |why: String| ClientError::Bundle {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(&path).map_err(|e| bundle_err(e.to_string()))?;
    let roots =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bundle_err(e.to_string()))?;
    if roots.is_empty() {
        return Err(bundle_err("no certificate in it".into()));
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    for r in roots {
        builder = builder.add_root_certificate(r);
    }
    Ok(Box::new(Http(builder.build()?)))
}

fn sealing_context(directory: &str) -> String {
    format!("wharf-acme-account/{directory}")
}

/// The fleet's account on `directory`: loaded from the store, or created and stored (if two
/// nodes race, the first stored wins and the other's stays unused at the CA).
pub(super) async fn account(
    store: &Store,
    sealer: &KeySealer,
    settings: &AcmeSettings,
    directory: &str,
) -> Result<Account, ClientError> {
    let ctx = sealing_context(directory);
    let sealed = match store.acme_account(directory).await? {
        Some(sealed) => sealed,
        None => {
            let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
            let new = NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            };
            let (_, creds) = Account::builder_with_http(http(settings)?)
                .create(&new, directory.to_string(), None)
                .await?;
            let json =
                serde_json::to_vec(&creds).map_err(|e| ClientError::Credentials(e.to_string()))?;
            let sealed = sealer
                .seal(&ctx, &json)
                .map_err(|e| ClientError::Credentials(e.to_string()))?;
            store.put_acme_account(directory, &sealed).await?
        }
    };
    let json = sealer
        .open(&ctx, &sealed)
        .map_err(|e| ClientError::Credentials(e.to_string()))?;
    let creds: AccountCredentials =
        serde_json::from_slice(&json).map_err(|e| ClientError::Credentials(e.to_string()))?;
    Ok(Account::builder_with_http(http(settings)?)
        .from_credentials(creds)
        .await?)
}
