//! Request → tenant → route lookup over one config snapshot. Pure and allocation-free per lookup.

use std::collections::HashMap;

use crate::model::{HostPattern, Route, Tenant};

/// Maps request hosts to the index of the tenant that owns them.
#[derive(Debug, Default)]
pub struct HostIndex {
    exact: HashMap<String, usize>,
    /// Wildcard suffix (`example.com` for `*.example.com`) → tenant index: a lookup tries the
    /// host's own suffixes, longest first, so it costs one probe per label whatever the count of
    /// tenants, and the most specific wildcard wins.
    wildcards: HashMap<String, usize>,
}

impl HostIndex {
    pub fn build(tenants: &[Tenant]) -> Self {
        Self::build_from(tenants.iter().map(|t| t.hostnames.as_slice()))
    }

    /// From each tenant's hostnames, in the order of the tenant indexes.
    pub fn build_from<'a>(tenants: impl Iterator<Item = &'a [HostPattern]>) -> Self {
        let mut index = HostIndex::default();
        for (i, hosts) in tenants.enumerate() {
            for h in hosts {
                match h {
                    HostPattern::Exact(name) => index.exact.insert(name.clone(), i),
                    HostPattern::Wildcard(suffix) => index.wildcards.insert(suffix.clone(), i),
                };
            }
        }
        index
    }

    /// `host` must already be normalized (see [`crate::model::normalize_host`]).
    pub fn lookup(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        if self.wildcards.is_empty() {
            return None;
        }
        wildcard_suffixes(host).find_map(|suffix| self.wildcards.get(suffix).copied())
    }
}

/// The wildcard suffixes that could cover `host`, most specific first: `b.example.com`, then
/// `example.com`, then `com` for `a.b.example.com` (a wildcard needs a label in front).
pub fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.')
        .filter(|(dot, _)| *dot > 0)
        .map(move |(dot, _)| &host[dot + 1..])
}

/// Index of the route with the longest matching prefix; routes naming the method beat catch-alls
/// with the same prefix.
pub fn select_route(routes: &[Route], method: &str, path: &str) -> Option<usize> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.matches(method, path))
        .max_by(|(ia, a), (ib, b)| {
            let prefix_len = |r: &Route| r.path_prefix.trim_end_matches('/').len();
            prefix_len(a)
                .cmp(&prefix_len(b))
                .then_with(|| (!a.methods.is_empty()).cmp(&!b.methods.is_empty()))
                // Stable tie-break: the earlier route (routes are kept sorted by id) wins.
                .then_with(|| ib.cmp(ia))
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Timeouts, UpstreamTarget};
    use crate::quotas::Quotas;

    fn route(id: &str, prefix: &str, methods: &[&str]) -> Route {
        Route {
            id: id.into(),
            path_prefix: prefix.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            upstreams: vec![UpstreamTarget {
                addr: "127.0.0.1:1".into(),
                weight: 1,
            }],
            timeouts: Timeouts::default(),
            health_check: None,
            plugins: vec![],
        }
    }

    fn tenant(id: &str, hosts: &[&str]) -> Tenant {
        Tenant {
            id: id.into(),
            display_name: id.into(),
            hostnames: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            routes: vec![],
            quotas: Quotas::default(),
            plugins: vec![],
        }
    }

    #[test]
    fn exact_beats_wildcard_and_longest_wildcard_wins() {
        let ts = vec![
            tenant("a", &["*.acme.test"]),
            tenant("b", &["api.acme.test"]),
            tenant("c", &["*.eu.acme.test"]),
        ];
        let idx = HostIndex::build(&ts);
        assert_eq!(idx.lookup("api.acme.test"), Some(1));
        assert_eq!(idx.lookup("www.acme.test"), Some(0));
        assert_eq!(idx.lookup("x.eu.acme.test"), Some(2));
        assert_eq!(
            idx.lookup("a.b.eu.acme.test"),
            Some(2),
            "any depth under the wildcard"
        );
        assert_eq!(idx.lookup("a.b.acme.test"), Some(0));
        assert_eq!(
            idx.lookup(".acme.test"),
            None,
            "a wildcard needs a label in front"
        );
        assert_eq!(idx.lookup("acme.test"), None);
        assert_eq!(idx.lookup("other.test"), None);
    }

    #[test]
    fn longest_prefix_then_method_specific() {
        let rs = vec![
            route("all", "/", &[]),
            route("api", "/api", &[]),
            route("api-post", "/api", &["POST"]),
            route("v2", "/api/v2/", &[]),
        ];
        assert_eq!(select_route(&rs, "GET", "/x"), Some(0));
        assert_eq!(select_route(&rs, "GET", "/api/users"), Some(1));
        assert_eq!(select_route(&rs, "POST", "/api/users"), Some(2));
        assert_eq!(select_route(&rs, "GET", "/api/v2/x"), Some(3));
        assert_eq!(select_route(&rs, "GET", "/apiary"), Some(0));
        assert_eq!(select_route(&rs[1..], "GET", "/other"), None);
    }
}
