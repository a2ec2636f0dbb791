//! TLS helpers for the HTTPS tests: a test CA issuing certificates (rcgen), a rustls client
//! that reports what the handshake showed, certificate uploads through the admin API.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use reqwest::{Method, StatusCode};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::api::{Api, Body, OP};

/// A test CA that issues leaf certificates.
pub(crate) struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// (chain PEM, key PEM, leaf DER) for `names`, valid from `from` to `until` (years).
    pub(crate) fn leaf_valid(
        &self,
        names: &[&str],
        from: i32,
        until: i32,
    ) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(until, 1, 1);
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    pub(crate) fn leaf(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        self.leaf_valid(names, 2020, 2090)
    }

    /// An intermediate CA signed by this one.
    pub(crate) fn intermediate(&self, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            cert: p.signed_by(&key, &self.cert, &self.key).unwrap(),
            key,
        }
    }
}

/// A TLS client trusting `ca`: the handshake's peer certificate (DER) and negotiated ALPN,
/// and the answer to one HTTP/1.1 request (status, body), or the handshake error.
pub(crate) async fn https_get(
    addr: SocketAddr,
    ca: &Ca,
    sni: &str,
    host: &str,
    alpn: &[&[u8]],
) -> Result<(Vec<u8>, Option<Vec<u8>>, u16, String), String> {
    https_get_from(None, addr, ca, sni, host, alpn).await
}

/// `https_get` from a chosen local source address (e.g. 127.0.0.2).
pub(crate) async fn https_get_from(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    ca: &Ca,
    sni: &str,
    host: &str,
    alpn: &[&[u8]],
) -> Result<(Vec<u8>, Option<Vec<u8>>, u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| e.to_string())?;
    }
    let tcp: TcpStream = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let peer: Vec<u8> = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c: &CertificateDer<'_>| c.to_vec())
        .unwrap_or_default();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    if alpn.as_deref() == Some(b"h2") {
        return Ok((peer, alpn, 0, String::new()));
    }
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((peer, alpn, status, body))
}

/// A node with an HTTPS listener where tenant `acme` (`acme.test`, every path to `upstream`)
/// serves a certificate of its own, signed by a new CA, uploaded through the API and in force.
pub(crate) struct AcmeOverHttps {
    pub gw: super::Wharf,
    pub tls_addr: SocketAddr,
    pub ca: Arc<Ca>,
    /// The certificate served (DER).
    pub leaf: Vec<u8>,
    /// acme's API key.
    pub key: String,
}

pub(crate) async fn acme_over_https(
    store_url: &str,
    store: &wharf_tenancy::Store,
    upstream: &str,
    ca_name: &str,
) -> AcmeOverHttps {
    acme_over_https_configured(store_url, store, upstream, ca_name, "").await
}

/// The same, with more bootstrap TOML (tables allowed).
pub(crate) async fn acme_over_https_configured(
    store_url: &str,
    store: &wharf_tenancy::Store,
    upstream: &str,
    ca_name: &str,
    extra_toml: &str,
) -> AcmeOverHttps {
    let tls_addr = super::free_addr();
    let gw = super::Wharf::start_configured(
        store_url,
        &format!("operator_token = \"{OP}\"\ntls_listen = \"{tls_addr}\"\n{extra_toml}"),
        &[],
    )
    .await;
    let api = Api::new(&gw);
    let key = create_tenant(&api, "acme", &["acme.test"]).await;
    store
        .put_route("acme", super::route("all", "/", &[upstream]))
        .await
        .unwrap();
    let ca = Arc::new(Ca::new(ca_name));
    let (chain, private, leaf) = ca.leaf(&["acme.test"]);
    let (status, v) = upload(&api, "acme", &key, "main", &chain, &private).await;
    assert!(status.is_success(), "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
    AcmeOverHttps {
        gw,
        tls_addr,
        ca,
        leaf,
        key,
    }
}

pub(crate) async fn create_tenant(api: &Api, id: &str, hosts: &[&str]) -> String {
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(OP),
            Some(Body::Json(json!({"id": id, "hostnames": hosts}))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{id}/api-keys"),
            Some(OP),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["key"].as_str().unwrap().to_string()
}

pub(crate) async fn upload(
    api: &Api,
    tenant: &str,
    key: &str,
    name: &str,
    chain: &str,
    private: &str,
) -> (StatusCode, Value) {
    api.call(
        Method::PUT,
        &format!("/v1/tenants/{tenant}/certificates/{name}"),
        Some(key),
        Some(Body::Json(json!({"chain_pem": chain, "key_pem": private}))),
    )
    .await
}

pub(crate) fn sha(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// An HTTPS client trusting `ca` that resolves every name to the gateway's TLS listener and
/// reports the server certificate of each answer.
pub(crate) fn https_client(ca: &Ca, tls_addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(ca.cert.der()).unwrap())
        .resolve("acme.test", tls_addr)
        .tls_info(true)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The leaf certificate (DER) an answer came over.
pub(crate) async fn served_cert(client: &reqwest::Client, port: u16) -> Result<Vec<u8>, String> {
    let resp = client
        .get(format!("https://acme.test:{port}/"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let der = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .ok_or("no TLS info")?;
    let _ = resp.bytes().await;
    Ok(der)
}
