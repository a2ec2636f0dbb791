//! HTTP-01 answers (RFC 8555 §8.3) on the plain listener: `GET
//! /.well-known/acme-challenge/{token}` for a name with an order waiting gets the key
//! authorization, before any routing. Answers come from memory, refreshed from the store by the
//! worker, so the CA reaching any node of the fleet is answered and a flood of such requests
//! costs no store query.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// token → (hostname, key authorization)
type Answers = HashMap<String, (String, String)>;

#[derive(Default)]
pub struct Challenges {
    answers: ArcSwap<Answers>,
}

impl Challenges {
    /// The key authorization for a request to `path` with Host `host`, if an order for that
    /// name waits on that token; `None` lets the request be routed as any other.
    pub fn answer(&self, host: &str, path: &str) -> Option<String> {
        let token = path.strip_prefix(PATH_PREFIX)?;
        let answers = self.answers.load();
        let (name, key_authorization) = answers.get(token)?;
        (name.eq_ignore_ascii_case(strip_port(host))).then(|| key_authorization.clone())
    }

    /// What the store holds now (other nodes' orders included).
    pub fn replace(&self, rows: Vec<(String, String, String)>) {
        let answers: Answers = rows
            .into_iter()
            .map(|(token, host, ka)| (token, (host, ka)))
            .collect();
        self.answers.store(Arc::new(answers));
    }

    /// This node's own order's answer, at once (the next refresh confirms it).
    pub fn insert(&self, token: &str, host: &str, key_authorization: &str) {
        self.answers.rcu(|old| {
            let mut new = Answers::clone(old);
            new.insert(token.into(), (host.into(), key_authorization.into()));
            new
        });
    }

    pub fn remove(&self, token: &str) {
        self.answers.rcu(|old| {
            let mut new = Answers::clone(old);
            new.remove(token);
            new
        });
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

    #[test]
    fn answers_only_its_name_and_token() {
        let c = Challenges::default();
        c.insert("tok", "shop.example.test", "tok.thumb");
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
        c.remove("tok");
        assert_eq!(c.answer("shop.example.test", &path), None);
    }
}
