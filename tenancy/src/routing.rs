//! Request → tenant → route lookup over one config snapshot. Pure and allocation-free per lookup.

use std::collections::HashMap;

use crate::model::{HostPattern, Route, Tenant};

/// Maps request hosts to the index of the tenant that owns them.
#[derive(Debug, Default)]
pub struct HostIndex {
    exact: HashMap<String, usize>,
    /// (suffix, tenant index), longest suffix first so the most specific wildcard wins.
    wildcards: Vec<(String, usize)>,
}

impl HostIndex {
    pub fn build(tenants: &[Tenant]) -> Self {
        let mut index = HostIndex::default();
        for (i, t) in tenants.iter().enumerate() {
            for h in &t.hostnames {
                match h {
                    HostPattern::Exact(name) => {
                        index.exact.insert(name.clone(), i);
                    }
                    HostPattern::Wildcard(suffix) => index.wildcards.push((suffix.clone(), i)),
                }
            }
        }
        index
            .wildcards
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        index
    }

    /// `host` must already be normalized (see [`crate::model::normalize_host`]).
    pub fn lookup(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        self.wildcards.iter().find_map(|(suffix, i)| {
            let matches = host.len() > suffix.len() + 1
                && host.ends_with(suffix.as_str())
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.';
            matches.then_some(*i)
        })
    }
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
