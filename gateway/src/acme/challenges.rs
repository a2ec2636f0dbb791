//! The answers to the CA's challenges while an order waits, from memory, refreshed from the
//! store by the worker, so the CA reaching any node of the fleet is answered and a flood of
//! challenge requests or handshakes costs no store query:
//! - HTTP-01 (RFC 8555 §8.3) on the plain listener: `GET /.well-known/acme-challenge/{token}`
//!   for a name with an order waiting gets the key authorization, before any routing;
//! - TLS-ALPN-01 (RFC 8737) on the TLS listener: a ClientHello offering only `acme-tls/1` for
//!   a name with an order waiting gets that order's self-signed certificate ([`tls_alpn`]);
//!   `tls/resolver.rs` asks through [`ChallengeCerts`].

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use wharf_tenancy::AcmeChallenge;

use super::tls_alpn;
use crate::tls::resolver::ChallengeCerts;

pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// The challenge kinds as the store names them.
pub const HTTP_01: &str = "http-01";
pub const TLS_ALPN_01: &str = "tls-alpn-01";

/// A TLS-ALPN-01 answer: its certificate, built once per (name, key authorization).
struct AlpnAnswer {
    token: String,
    key_authorization: String,
    cert: Arc<CertifiedKey>,
}

#[derive(Default)]
struct Answers {
    /// HTTP-01: token → (hostname, key authorization).
    http: HashMap<String, (String, String)>,
    /// TLS-ALPN-01: hostname (lowercase) → its answer.
    alpn: HashMap<String, Arc<AlpnAnswer>>,
}

#[derive(Default)]
pub struct Challenges {
    answers: ArcSwap<Answers>,
}

impl Challenges {
    /// The key authorization for a request to `path` with Host `host`, if an HTTP-01 order for
    /// that name waits on that token; `None` lets the request be routed as any other.
    pub fn answer(&self, host: &str, path: &str) -> Option<String> {
        let token = path.strip_prefix(PATH_PREFIX)?;
        let answers = self.answers.load();
        let (name, key_authorization) = answers.http.get(token)?;
        (name.eq_ignore_ascii_case(strip_port(host))).then(|| key_authorization.clone())
    }

    /// What the store holds now (other nodes' orders included). A TLS-ALPN-01 certificate
    /// already built for the same answer is kept, so a refresh builds only new ones.
    pub fn replace(&self, rows: Vec<AcmeChallenge>) {
        let old = self.answers.load();
        let mut new = Answers::default();
        for row in rows {
            add(&mut new, &old, row);
        }
        self.answers.store(Arc::new(new));
    }

    /// This node's own order's answer, at once (the next refresh confirms it).
    pub fn insert(&self, row: AcmeChallenge) {
        self.answers.rcu(|old| {
            let mut new = Answers {
                http: old.http.clone(),
                alpn: old.alpn.clone(),
            };
            add(&mut new, old, row.clone());
            new
        });
    }

    pub fn remove(&self, token: &str) {
        self.answers.rcu(|old| {
            let mut new = Answers {
                http: old.http.clone(),
                alpn: old.alpn.clone(),
            };
            new.http.remove(token);
            new.alpn.retain(|_, a| a.token != token);
            new
        });
    }
}

impl ChallengeCerts for Challenges {
    fn tls_alpn_certificate(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        self.answers.load().alpn.get(sni).map(|a| a.cert.clone())
    }
}

fn add(into: &mut Answers, old: &Answers, row: AcmeChallenge) {
    match row.kind.as_str() {
        HTTP_01 => {
            into.http
                .insert(row.token, (row.hostname, row.key_authorization));
        }
        TLS_ALPN_01 => {
            let host = row.hostname.to_ascii_lowercase();
            let kept = old
                .alpn
                .get(&host)
                .filter(|a| a.key_authorization == row.key_authorization && a.token == row.token)
                .cloned();
            let answer = match kept {
                Some(a) => a,
                None => match tls_alpn::certificate(&host, &row.key_authorization) {
                    Ok(cert) => Arc::new(AlpnAnswer {
                        token: row.token,
                        key_authorization: row.key_authorization,
                        cert,
                    }),
                    Err(e) => {
                        tracing::warn!(host, "cannot build the TLS-ALPN-01 certificate: {e}");
                        return;
                    }
                },
            };
            into.alpn.insert(host, answer);
        }
        other => tracing::warn!(kind = other, "unknown ACME challenge kind in the store"),
    }
}

/// `host:port` → `host`; ACME names are DNS names, so an address literal is left as it is.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(token: &str, host: &str, ka: &str, kind: &str) -> AcmeChallenge {
        AcmeChallenge {
            token: token.into(),
            hostname: host.into(),
            key_authorization: ka.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn answers_only_its_name_and_token() {
        let c = Challenges::default();
        c.insert(row("tok", "shop.example.test", "tok.thumb", HTTP_01));
        let path = format!("{PATH_PREFIX}tok");
        assert_eq!(
            c.answer("shop.example.test:80", &path).as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(
            c.answer("SHOP.example.test", &path).as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(c.answer("other.test", &path), None, "another name");
        assert_eq!(
            c.answer("shop.example.test", "/.well-known/acme-challenge/x"),
            None
        );
        assert_eq!(c.answer("shop.example.test", "/tok"), None);
        assert!(c.tls_alpn_certificate("shop.example.test").is_none());
        c.remove("tok");
        assert_eq!(c.answer("shop.example.test", &path), None);
    }

    #[test]
    fn tls_alpn_certificates_by_name_built_once() {
        let c = Challenges::default();
        c.insert(row("t1", "Shop.example.test", "t1.thumb", TLS_ALPN_01));
        let first = c.tls_alpn_certificate("shop.example.test").unwrap();
        assert!(c.tls_alpn_certificate("other.example.test").is_none());
        // Not an HTTP-01 answer.
        assert_eq!(
            c.answer("shop.example.test", &format!("{PATH_PREFIX}t1")),
            None
        );
        // A refresh with the same answer keeps the certificate; a new answer replaces it.
        c.replace(vec![row(
            "t1",
            "shop.example.test",
            "t1.thumb",
            TLS_ALPN_01,
        )]);
        let kept = c.tls_alpn_certificate("shop.example.test").unwrap();
        assert!(Arc::ptr_eq(&first, &kept));
        c.replace(vec![row(
            "t2",
            "shop.example.test",
            "t2.thumb",
            TLS_ALPN_01,
        )]);
        let renewed = c.tls_alpn_certificate("shop.example.test").unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed));
        c.remove("t2");
        assert!(c.tls_alpn_certificate("shop.example.test").is_none());
    }
}
