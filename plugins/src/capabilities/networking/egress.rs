//! Where tenants' upstreams may point. A tenant names its upstreams itself, so without a policy
//! one route could make the gateway connect to its own listeners (a request loop), the admin
//! API, the fleet's Redis or Postgres, a cloud metadata service, or anything on the private
//! network. Checked when a route is written (a clear 400) and again before every connect and
//! health check (the address actually dialled).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Ranges the operator allows although they are internal (e.g. `10.0.0.0/8` for upstreams
    /// on the private network, `127.0.0.0/8` for local test upstreams).
    allow: Vec<IpNet>,
    /// The gateway's own listeners: refused whatever `allow` says.
    own: Vec<SocketAddr>,
}

/// Why an address may not be an upstream, or why the policy itself is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("{0} is this gateway's own listener")]
    OwnListener(SocketAddr),
    #[error("{addr} is a {class} address; upstreams must be public unless the operator allows the range (egress_allow)")]
    Internal {
        addr: SocketAddr,
        class: &'static str,
    },
    #[error("{0:?} is not an ip:port, host:port or http://host[:port]")]
    NotAnAddress(String),
    #[error("egress_allow: {0:?} is not a CIDR like 10.0.0.0/8")]
    BadCidr(String),
}

impl EgressPolicy {
    pub fn new(allow: &[String], own: Vec<SocketAddr>) -> Result<EgressPolicy, EgressError> {
        let allow = allow
            .iter()
            .map(|c| parse_range(c).ok_or_else(|| EgressError::BadCidr(c.clone())))
            .collect::<Result<_, _>>()?;
        Ok(EgressPolicy { allow, own })
    }

    /// Why `addr` may not be an upstream, if it may not.
    pub fn check(&self, addr: SocketAddr) -> Result<(), EgressError> {
        let ip = canonical(addr.ip());
        if self.own.iter().any(|own| is_own(*own, ip, addr.port())) {
            return Err(EgressError::OwnListener(addr));
        }
        let Some(class) = internal_class(ip) else {
            return Ok(());
        };
        if contains(&self.allow, ip) {
            return Ok(());
        }
        Err(EgressError::Internal { addr, class })
    }

    /// Checks a target as written in a route: a literal address now; a name passes here, and
    /// each address it resolves to is checked when the balancer discovers it and at connect.
    pub fn check_target(&self, target: &str) -> Result<(), EgressError> {
        match wharf_tenancy::target::TargetAddr::parse(target) {
            Ok(t) => t.socket_addr().map_or(Ok(()), |addr| self.check(addr)),
            Err(_) => Err(EgressError::NotAnAddress(target.to_string())),
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is the IPv4 address it maps.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_own(own: SocketAddr, ip: IpAddr, port: u16) -> bool {
    if own.port() != port {
        return false;
    }
    let own_ip = canonical(own.ip());
    // A listener on 0.0.0.0 or :: answers on every local address, loopback included.
    own_ip == ip || own_ip.is_unspecified() || ip.is_loopback() || ip.is_unspecified()
}

/// The kind of internal address `ip` is, if it is one.
fn internal_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() || o[0] == 0 {
        "unspecified"
    } else if ip.is_link_local() {
        "link-local (cloud metadata)"
    } else if ip.is_private() {
        "private"
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        "shared (carrier-grade NAT)"
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        "multicast, broadcast or reserved"
    } else {
        return None;
    })
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "private (unique local)"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    })
}

/// A range as the operator writes it: `10.0.0.0/8`, `fd00::/8`, or one address. An IPv4-mapped
/// IPv6 range (`::ffff:10.0.0.0/104`) is the IPv4 range it maps, as addresses are compared.
pub fn parse_range(s: &str) -> Option<IpNet> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(match net {
        IpNet::V6(v6) if net.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), net.prefix_len() - 96)
                .ok()?
                .trunc(),
            None => net.trunc(),
        },
        _ => net.trunc(),
    })
}

/// Whether `ip` (IPv4-mapped IPv6 taken as IPv4) lies in one of `ranges`.
pub fn contains(ranges: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    ranges.iter().any(|r| r.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> EgressPolicy {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        let own = vec![
            "127.0.0.1:8080".parse().unwrap(),
            "0.0.0.0:9080".parse().unwrap(),
        ];
        EgressPolicy::new(&allow, own).unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let p = policy(&[]);
        for bad in [
            "127.0.0.1:80",
            "[::1]:80",
            "0.0.0.0:80",
            "[::]:80",
            "169.254.169.254:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "100.64.0.1:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.0.0.1]:80",
        ] {
            assert!(p.check_target(bad).is_err(), "{bad} should be refused");
        }
        for ok in [
            "93.184.216.34:80",
            "[2606:2800:220:1::]:443",
            "172.32.0.1:80",
        ] {
            assert!(p.check_target(ok).is_ok(), "{ok} should be allowed");
        }
    }

    #[test]
    fn allowed_ranges_open_but_own_listeners_stay_closed() {
        let p = policy(&["127.0.0.0/8", "10.0.0.0/8"]);
        assert!(p.check_target("127.0.0.1:3000").is_ok());
        assert!(p.check_target("10.9.9.9:80").is_ok());
        assert!(p.check_target("192.168.0.1:80").is_err());
        assert!(p
            .check_target("127.0.0.1:8080")
            .unwrap_err()
            .to_string()
            .contains("own listener"));
        assert!(p
            .check_target("127.0.0.2:9080")
            .unwrap_err()
            .to_string()
            .contains("own listener"));
        assert!(p.check_target("[::ffff:127.0.0.1]:8080").is_err());
        assert!(EgressPolicy::new(&["nonsense".into()], vec![]).is_err());
        assert!(EgressPolicy::new(&["10.0.0.0/33".into()], vec![]).is_err());
        // A mapped range is the IPv4 range it maps, whichever way an address is written.
        let mapped = policy(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.check_target("10.1.2.3:80").is_ok());
        assert!(mapped.check_target("[::ffff:10.1.2.3]:80").is_ok());
        assert!(mapped.check_target("11.0.0.1:80").is_ok());
        assert!(mapped.check_target("192.168.0.1:80").is_err());
    }
}
