//! Talking to a registry (OCI distribution v2) from the node that handles the upload, through
//! the egress policy plugins' outbound HTTP uses: every URL's host (the registry, a token
//! service, a redirect to blob storage) is resolved by the node's resolver and each address is
//! checked before anything is dialled; the HTTP client is then pinned to exactly those
//! addresses and follows no redirect on its own (each hop is checked here), and ignores proxy
//! environment variables. Bodies are read chunk by chunk against a cap, never whole first.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use wharf_plugins::capabilities::networking::{Answer, EgressPolicy, Resolver};

use super::OciError;

/// How long a first lookup of a registry's name may take.
const LOOKUP: Duration = Duration::from_secs(5);
const CONNECT: Duration = Duration::from_secs(10);
/// Redirects followed per request (registries send blobs to storage, once).
const REDIRECTS: usize = 5;
/// A token service's answer, at most.
const TOKEN_BYTES: u64 = 64 << 10;
/// A registry's error body, at most (only its message is kept).
const ERROR_BYTES: u64 = 16 << 10;

/// What a pull dials under: the node's egress policy and resolver, and the TLS roots of
/// plugins' outbound HTTPS (the system's and the operator's `[outbound_http] ca_file`).
#[derive(Clone)]
pub struct Dialer {
    pub policy: Arc<EgressPolicy>,
    pub resolver: Arc<Resolver>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One pull's conversation with a registry: the token it was given, if it asked for one.
pub struct Session<'a> {
    dialer: &'a Dialer,
    token: Option<String>,
}

/// A body read within its cap, with what the registry said about it.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`: what the registry says the bytes hash to.
    pub digest: Option<String>,
}

impl<'a> Session<'a> {
    pub fn new(dialer: &'a Dialer) -> Session<'a> {
        Session {
            dialer,
            token: None,
        }
    }

    /// GETs `url` (following checked redirects, answering one Bearer challenge), reading at
    /// most `cap` bytes of the body; `what` names it in errors.
    pub async fn get(
        &mut self,
        url: &str,
        accept: &str,
        cap: u64,
        what: &'static str,
    ) -> Result<Fetched, OciError> {
        let mut url = Url::parse(url).map_err(|e| OciError::BadReference(e.to_string()))?;
        let mut challenged = false;
        let mut hops = 0;
        loop {
            let client = self.dialer.client_for(&url).await?;
            let mut req = client.get(url.clone()).header(ACCEPT, accept);
            // Credentials go to the registry only, never to where it redirects (blob storage).
            if let (Some(t), 0) = (&self.token, hops) {
                req = req.header(AUTHORIZATION, format!("Bearer {t}"));
            }
            let resp = req
                .send()
                .await
                .map_err(|e| OciError::Unreachable(format!("{}: {}", host_of(&url), causes(&e))))?;
            let status = resp.status();
            if status.is_redirection() {
                hops += 1;
                let next = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .filter(|_| hops <= REDIRECTS)
                    // Never from HTTPS down to plain HTTP.
                    .filter(|next| next.scheme() == "https" || url.scheme() == "http")
                    .ok_or_else(|| {
                        OciError::Registry(format!(
                            "{what}: a redirect without a usable Location, down to plain HTTP, or too many"
                        ))
                    })?;
                url = next;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !challenged && hops == 0 {
                challenged = true;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                self.token = Some(self.token_for(&challenge).await?);
                continue;
            }
            if !status.is_success() {
                return Err(OciError::Registry(format!(
                    "{what}: the registry answered {status}{}",
                    error_detail(resp).await
                )));
            }
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header("content-type");
            let digest = header("docker-content-digest");
            let bytes = read_capped(resp, cap, what).await?;
            return Ok(Fetched {
                bytes,
                content_type,
                digest,
            });
        }
    }

    /// Anonymous token auth: the token service named by a `Bearer` challenge, asked for the
    /// scope it names (the service is dialled under the same egress policy).
    async fn token_for(&self, challenge: &str) -> Result<String, OciError> {
        // The scheme's name is case-insensitive (RFC 9110).
        let bearer = challenge
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("bearer "));
        let Some(params) = challenge.get(7..).filter(|_| bearer) else {
            return Err(OciError::Registry(
                "the registry asks for credentials Wharf does not have (only anonymous and Bearer token access are supported)".into(),
            ));
        };
        let params = parse_challenge(params);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm = get("realm")
            .ok_or_else(|| OciError::Registry("a Bearer challenge without a realm".into()))?;
        let mut url = Url::parse(realm)
            .map_err(|_| OciError::Registry(format!("the token realm {realm:?} is not a URL")))?;
        {
            let mut q = url.query_pairs_mut();
            for k in ["service", "scope"] {
                if let Some(v) = get(k) {
                    q.append_pair(k, v);
                }
            }
        }
        let client = self.dialer.client_for(&url).await?;
        let resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| OciError::Unreachable(format!("{}: {}", host_of(&url), causes(&e))))?;
        if !resp.status().is_success() {
            return Err(OciError::Registry(format!(
                "the token service answered {}",
                resp.status()
            )));
        }
        let body = read_capped(resp, TOKEN_BYTES, "the token").await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| OciError::Registry("the token service's answer is not JSON".into()))?;
        v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string)
            .ok_or_else(|| OciError::Registry("the token service gave no token".into()))
    }
}

impl Dialer {
    /// A client that can reach `url`'s host only at the addresses the policy allows.
    async fn client_for(&self, url: &Url) -> Result<reqwest::Client, OciError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            s => return Err(OciError::Registry(format!("a {s}: URL is not followed"))),
        };
        let host = url
            .host_str()
            .ok_or_else(|| OciError::Registry("a URL without a host".into()))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().unwrap_or(443);
        let ips = self.addrs(bare).await?;
        let mut refusal = None;
        let allowed: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .filter(|a| match self.policy.check(*a) {
                Ok(()) => true,
                Err(e) => {
                    refusal.get_or_insert(e);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            let why = refusal.map_or_else(|| "no address".into(), |e| e.to_string());
            return Err(OciError::Forbidden(format!("{bare}: {why}")));
        }
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT)
            .timeout(Duration::from_secs(60))
            .resolve_to_addrs(bare, &allowed);
        if https {
            let tls = self.tls.as_ref().ok_or_else(|| {
                OciError::Unreachable(
                    "this node has no TLS roots for outbound HTTPS ([outbound_http] ca_file)"
                        .into(),
                )
            })?;
            b = b.use_preconfigured_tls((**tls).clone());
        }
        b.build()
            .map_err(|e| OciError::Unreachable(format!("{bare}: {e}")))
    }

    async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, OciError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let name = self.resolver.watch(host);
        if name.answer() == Answer::Pending {
            self.resolver
                .settled(std::slice::from_ref(&name), LOOKUP)
                .await;
        }
        match name.answer() {
            Answer::Resolved(a) | Answer::Stale(a) if !a.is_empty() => Ok(a.to_vec()),
            Answer::Failed(why) => Err(OciError::Unreachable(format!(
                "{host} does not resolve: {why}"
            ))),
            _ => Err(OciError::Unreachable(format!("{host} does not resolve"))),
        }
    }
}

/// Reads a body chunk by chunk, failing as soon as it would pass `cap` (or says it will).
async fn read_capped(
    mut resp: reqwest::Response,
    cap: u64,
    what: &'static str,
) -> Result<Vec<u8>, OciError> {
    let too_large = |size| OciError::TooLarge {
        what,
        size,
        limit: cap,
    };
    if let Some(len) = resp.content_length().filter(|l| *l > cap) {
        return Err(too_large(Some(len)));
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(cap) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| OciError::Unreachable(format!("{what}: {e}")))?
    {
        if (out.len() + chunk.len()) as u64 > cap {
            return Err(too_large(None));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The registry's own words from an error body (`{"errors":[{"code","message"}]}`), if any.
async fn error_detail(resp: reqwest::Response) -> String {
    let Ok(body) = read_capped(resp, ERROR_BYTES, "error").await else {
        return String::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let e = &v["errors"][0];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(c), Some(m)) => format!(" ({c}: {})", m.chars().take(200).collect::<String>()),
        (Some(c), None) => format!(" ({c})"),
        _ => String::new(),
    }
}

/// An error and its causes (reqwest's own message hides why: a certificate, a refusal).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn host_of(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("?")),
        None => url.host_str().unwrap_or("?").to_string(),
    }
}

/// `k="v",k2="v2"` (values may hold commas inside quotes).
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((k, after)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, n)) => (v, n),
                None => (q, ""),
            }
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.push((k, v.to_string()));
        rest = next.trim_start_matches(',').trim();
        if out.len() > 16 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn challenges_parse() {
        let p = super::parse_challenge(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1].1, "registry.example");
        assert_eq!(p[2].1, "repository:a/b:pull,push");
    }
}
