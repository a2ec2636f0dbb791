//! Where a plugin may send HTTP requests: the hosts its attachment lists in
//! `allowed_outbound_hosts` (Spin's `allowed_outbound_hosts`), such as `https://auth.example.com`,
//! `https://*.example.com` or `http://10.0.0.5:8080`. Nothing listed, nothing reachable. This
//! is the tenant's own least privilege per plugin; the operator's egress policy applies on top
//! of it to every address actually dialled.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Entries one attachment may list: each is checked on every outbound request of the plugin.
pub const MAX_OUTBOUND_HOSTS: usize = 16;

/// One allowed destination: a scheme, a host (exact or `*.` suffix) and a port (or any).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutboundHost {
    pub https: bool,
    host: HostPattern,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostPattern {
    Exact(String),
    /// `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
    Suffix(String),
}

impl OutboundHost {
    /// Parses `http[s]://host[:port|:*]`; `host` may be `*.suffix`, an IPv4 or a bracketed IPv6.
    pub fn parse(s: &str) -> Result<OutboundHost, ValidationError> {
        let bad = || ValidationError::BadOutboundHost(s.to_string());
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad());
        }
        let (host, port) = split_port(rest).ok_or_else(bad)?;
        let port = match port {
            None => Some(if https { 443 } else { 80 }),
            Some("*") => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?),
        };
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(suffix) if valid_name(suffix) && suffix.contains('.') => {
                HostPattern::Suffix(suffix.to_string())
            }
            Some(_) => return Err(bad()),
            None if valid_name(&host) || host.parse::<std::net::IpAddr>().is_ok() => {
                HostPattern::Exact(host)
            }
            None => return Err(bad()),
        };
        Ok(OutboundHost { https, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry. `host` is lowercase,
    /// IPv6 without brackets.
    pub fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https != https || self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl fmt::Display for OutboundHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let host = match &self.host {
            HostPattern::Exact(h) if h.contains(':') => format!("[{h}]"),
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Suffix(s) => format!("*.{s}"),
        };
        match self.port {
            Some(p) => write!(f, "{scheme}://{host}:{p}"),
            None => write!(f, "{scheme}://{host}:*"),
        }
    }
}

impl Serialize for OutboundHost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OutboundHost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OutboundHost::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `host[:port]` with IPv6 in brackets; the port part as written.
fn split_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((s, None)),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Validates an attachment's list as a whole.
pub fn validate_list(list: &[OutboundHost]) -> Result<(), ValidationError> {
    if list.len() > MAX_OUTBOUND_HOSTS {
        return Err(ValidationError::TooManyOutboundHosts(list.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let exact = OutboundHost::parse("https://Auth.Example.com").unwrap();
        assert!(exact.allows(true, "auth.example.com", 443));
        assert!(!exact.allows(false, "auth.example.com", 443));
        assert!(!exact.allows(true, "auth.example.com", 8443));
        assert!(!exact.allows(true, "evil-auth.example.com", 443));
        assert_eq!(exact.to_string(), "https://auth.example.com:443");

        let wild = OutboundHost::parse("http://*.internal.test:*").unwrap();
        assert!(wild.allows(false, "a.internal.test", 8080));
        assert!(wild.allows(false, "a.b.internal.test", 1));
        assert!(!wild.allows(false, "internal.test", 80));
        assert!(!wild.allows(false, "xinternal.test", 80));

        let v6 = OutboundHost::parse("http://[::1]:9000").unwrap();
        assert!(v6.allows(false, "::1", 9000));
        assert_eq!(v6.to_string(), "http://[::1]:9000");
        assert!(OutboundHost::parse("http://127.0.0.1:9000/")
            .unwrap()
            .allows(false, "127.0.0.1", 9000));
    }

    #[test]
    fn refuses_what_is_not_a_destination() {
        for bad in [
            "auth.example.com",
            "ftp://x.test",
            "https://",
            "https://x.test/path",
            "https://user@x.test",
            "https://x.test:0",
            "https://x.test:99999",
            "https://*.com",
            "https://*",
            "https://a..b",
            "https://*.x.test:abc",
        ] {
            assert!(OutboundHost::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
