//! An OCI reference as tenants write it (`oci://registry[:port]/repository[:tag][@sha256:…]`,
//! Istio's `WasmPlugin` `url`), parsed strictly: the registry host is always explicit (no
//! implicit Docker Hub), so what the node dials is exactly what the tenant wrote.

use super::OciError;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host` or `host:port` (IPv6 in brackets).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>` when the reference pins the manifest.
    pub digest: Option<String>,
}

const MAX_LEN: usize = 1024;

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, OciError> {
        let bad = |why: &str| OciError::BadReference(format!("{s:?}: {why}"));
        if s.len() > MAX_LEN {
            return Err(bad("longer than 1024 bytes"));
        }
        let rest = s.strip_prefix("oci://").unwrap_or(s);
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected oci://registry/repository[:tag][@sha256:digest]"))?;
        if !valid_registry(registry) {
            return Err(bad("the registry must be a host or host:port"));
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => {
                if !is_sha256_digest(d) {
                    return Err(bad(
                        "the digest must be sha256: and 64 lowercase hex digits",
                    ));
                }
                (p, Some(d.to_string()))
            }
            None => (path, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last = path.rsplit('/').next().unwrap_or(path);
        let (repository, tag) = match last.rsplit_once(':') {
            Some((_, tag)) => (&path[..path.len() - tag.len() - 1], Some(tag.to_string())),
            None => (path, None),
        };
        if !valid_repository(repository) {
            return Err(bad(
                "the repository must be lowercase path components of [a-z0-9._-]",
            ));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad(
                    "the tag must be [A-Za-z0-9_.-], at most 128 characters",
                ));
            }
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What the manifest is asked for by: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Plain HTTP only for a registry on loopback (a local or test registry); HTTPS otherwise.
    pub fn base_url(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(self.registry.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| super::egress_canonical(ip).is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }

    /// The reference with the digest it resolved to: what is recorded.
    pub fn pinned(&self, digest: &str) -> String {
        let tag = self
            .tag
            .as_deref()
            .map(|t| format!(":{t}"))
            .unwrap_or_default();
        format!("oci://{}/{}{tag}@{digest}", self.registry, self.repository)
    }
}

pub fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn valid_registry(r: &str) -> bool {
    if r.is_empty() || r.len() > 255 {
        return false;
    }
    if let Some(v6) = r.strip_prefix('[') {
        let Some((ip, port)) = v6.split_once(']') else {
            return false;
        };
        return ip.parse::<std::net::Ipv6Addr>().is_ok()
            && (port.is_empty()
                || port
                    .strip_prefix(':')
                    .is_some_and(|p| p.parse::<u16>().is_ok()));
    }
    let (host, port) = match r.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0))
        && !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn valid_repository(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_strictly() {
        let r = Reference::parse("oci://127.0.0.1:5000/higress/ext-auth:1.0.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "higress/ext-auth");
        assert_eq!(r.tag.as_deref(), Some("1.0.0"));
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("registry.example.com/p@{d}")).unwrap();
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.base_url(), "https://registry.example.com");
        assert_eq!(
            Reference::parse("oci://r.io/a/b").unwrap().tag.as_deref(),
            Some("latest")
        );
        assert_eq!(
            Reference::parse("oci://[::1]:5000/x:1").unwrap().base_url(),
            "http://[::1]:5000"
        );
        for bad in [
            "oci://",
            "oci://host",
            "oci://host/",
            "oci://host:99999/x",
            "oci://ho st/x",
            "oci://host/UPPER",
            "oci://host/x:",
            "oci://host/x@sha256:abc",
            "oci://host/x@md5:aaaa",
            "oci://host//x",
            "oci://host/x:tag with space",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
