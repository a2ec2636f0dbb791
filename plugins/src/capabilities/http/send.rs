//! One tenant's outbound HTTP: a pooled client over [`Connector`], and every quota checked
//! before anything is spent: the destination against the attachment's allow-list, the request's
//! size, the rate, the requests in flight, the node's memory for the response; then the response
//! read frame by frame and cut off at the tenant's cap.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;
use wharf_metrics::Metrics;
use wharf_tenancy::outbound::OutboundHost;
use wharf_tenancy::{HttpQuotas, Quotas};

use super::connect::{ConnectError, Connector};
use super::reclaim::Mark;
use crate::bindings::wharf::plugin::http::{IncomingResponse, OutgoingRequest};
use crate::bindings::wharf::plugin::types::Header;
use crate::capabilities::networking::Dialing;
use crate::capabilities::quota::{refuse, reject, CallThrottle, ResultBudget};
use crate::capabilities::HostError;

/// Headers a plugin may send, and their total size: what a server would refuse anyway.
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Idle pooled connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that belong to the connection, not the request: the host sets them.
pub(crate) const HOST_OWNED: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

pub struct TenantHttp {
    tenant: String,
    client: Client<Connector, Full<Bytes>>,
    quotas: HttpQuotas,
    in_flight: Arc<Semaphore>,
    rate: CallThrottle,
    /// How long a call waits for one of its tenant's requests in flight to end.
    wait: Duration,
    results: ResultBudget,
    metrics: Arc<Metrics>,
}

impl TenantHttp {
    pub(super) fn new(
        tenant: &str,
        quotas: &Quotas,
        dialing: Dialing,
        tls: Arc<rustls::ClientConfig>,
        results: ResultBudget,
        metrics: Arc<Metrics>,
    ) -> TenantHttp {
        let q = quotas.http;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(q.idle_connections_per_host as usize)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(Connector::new(dialing, tls, q.max_connections as usize));
        TenantHttp {
            tenant: tenant.to_string(),
            client,
            quotas: q,
            in_flight: Arc::new(Semaphore::new(q.max_concurrent as usize)),
            rate: CallThrottle::per_second(
                q.requests_per_second,
                tenant,
                HttpQuotas::NAMES.requests_per_second.as_str(),
                metrics.clone(),
            ),
            wait: Duration::from_millis(quotas.pools.wait_ms),
            results,
            metrics,
        }
    }

    /// Sends a plugin's request to a destination `allowed` lists, within `left` (what the
    /// plugin's deadline has left) and the tenant's quotas.
    pub async fn send(
        &self,
        req: OutgoingRequest,
        allowed: &[OutboundHost],
        left: Duration,
    ) -> Result<IncomingResponse, HostError> {
        let uri = destination(&req.url, allowed)?;
        if req.body.len() as u64 > self.quotas.max_request_bytes {
            return Err(self.over(
                HttpQuotas::NAMES.max_request_bytes,
                format!(
                    "the request body has {} bytes; {} is {}",
                    req.body.len(),
                    HttpQuotas::NAMES.max_request_bytes,
                    self.quotas.max_request_bytes
                ),
            ));
        }
        let mut timeout = Duration::from_millis(self.quotas.timeout_ms).min(left);
        if let Some(ms) = req.timeout_ms {
            timeout = timeout.min(Duration::from_millis(u64::from(ms)));
        }
        let request = build(req, uri)?;
        self.rate.check()?;
        let _slot = match self.in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(self.wait, self.in_flight.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| {
                    self.over(
                        HttpQuotas::NAMES.max_concurrent,
                        format!(
                            "{} of {} requests are in flight",
                            HttpQuotas::NAMES.max_concurrent,
                            self.quotas.max_concurrent
                        ),
                    )
                })?,
        };
        let _memory = self
            .results
            .reserve(&self.tenant, self.quotas.max_response_bytes)?;
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| HostError::Timeout)?
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<IncomingResponse, HostError> {
        let response = self.client.request(request).await.map_err(|e| {
            let e = failed(e);
            if matches!(e, HostError::QuotaExceeded(_)) {
                reject(
                    &self.metrics,
                    &self.tenant,
                    HttpQuotas::NAMES.max_connections.as_str(),
                );
            }
            e
        })?;
        let (parts, mut body) = response.into_parts();
        // Which connection answered, and its writes so far: idle once this body is read whole.
        let connection = parts
            .extensions
            .get::<Mark>()
            .map(|m| (m.0.clone(), m.0.writes()));
        let cap = self.quotas.max_response_bytes;
        let mut size: u64 = 0;
        let mut headers = Vec::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            size += (name.as_str().len() + value.len()) as u64;
            headers.push(Header {
                name: name.as_str().to_string(),
                value: value.as_bytes().to_vec(),
            });
        }
        let mut out = Vec::new();
        // Read as it streams in, so a response past the cap costs the node no more than the
        // cap: the rest is never read (the connection is closed, not pooled).
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| HostError::Backend(format!("the response broke off: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            size += data.len() as u64;
            if size > cap {
                return Err(self.over(
                    HttpQuotas::NAMES.max_response_bytes,
                    format!(
                        "the response is larger than {} ({cap} bytes)",
                        HttpQuotas::NAMES.max_response_bytes
                    ),
                ));
            }
            out.extend_from_slice(&data);
        }
        if let Some((connection, writes)) = connection {
            connection.idle(writes);
        }
        Ok(IncomingResponse {
            status: parts.status.as_u16(),
            headers,
            body: out,
        })
    }

    fn over(&self, quota: wharf_tenancy::QuotaName, message: String) -> HostError {
        refuse(&self.metrics, &self.tenant, quota.as_str(), message)
    }
}

/// The URL as a URI to send, when its scheme, host and port are on the allow-list.
fn destination(url: &str, allowed: &[OutboundHost]) -> Result<Uri, HostError> {
    let invalid = |why: &str| HostError::Invalid(format!("url {url:?}: {why}"));
    let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(invalid("use http:// or https://")),
    };
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not sent; use a header"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    if !allowed.iter().any(|a| a.allows(https, &host, port)) {
        let scheme = if https { "https" } else { "http" };
        return Err(HostError::Denied(format!(
            "{scheme}://{}:{port} is not in this plugin's allowed_outbound_hosts",
            authority.host()
        )));
    }
    Ok(uri)
}

fn build(req: OutgoingRequest, uri: Uri) -> Result<Request<Full<Bytes>>, HostError> {
    let method = Method::from_bytes(req.method.as_bytes())
        .ok()
        .filter(|m| *m != Method::CONNECT)
        .ok_or_else(|| HostError::Invalid(format!("method {:?}", req.method)))?;
    if req.headers.len() > MAX_HEADERS
        || req
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len())
            .sum::<usize>()
            > MAX_HEADER_BYTES
    {
        return Err(HostError::Invalid(format!(
            "at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all"
        )));
    }
    let mut builder = Request::builder().method(method).uri(uri);
    for h in req.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HostError::Invalid(format!("header name {:?}", h.name)))?;
        if HOST_OWNED.contains(&name.as_str()) {
            return Err(HostError::Invalid(format!(
                "header {name} is set by the host"
            )));
        }
        let value = HeaderValue::from_bytes(&h.value)
            .map_err(|_| HostError::Invalid(format!("header {name}: value not allowed")))?;
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| HostError::Invalid(e.to_string()))
}

/// A failed exchange as the plugin sees it: what Wharf refused is `denied`, the rest says
/// which step failed.
fn failed(e: hyper_util::client::legacy::Error) -> HostError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(c) = err.downcast_ref::<ConnectError>() {
            return match c {
                ConnectError::Forbidden(why) => HostError::Denied(why.clone()),
                ConnectError::TooMany(_) => HostError::QuotaExceeded(c.to_string()),
                other => HostError::Backend(other.to_string()),
            };
        }
        source = err.source();
    }
    HostError::Backend(format!("the request failed: {e}"))
}
