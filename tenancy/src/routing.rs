//! Request → route selection, and the wildcard suffixes a host lookup probes. Pure and
//! allocation-free per lookup.

use crate::model::Route;

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
            upstream_protocol: Default::default(),
            retries: crate::model::DEFAULT_RETRIES,
            upstream_tls: Default::default(),
            host_header: Default::default(),
            plugins: vec![],
        }
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
