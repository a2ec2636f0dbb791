//! What `proxy_get_property` answers for a request: Envoy's attribute names, Higress's own and
//! Wharf's tenant and route, from the facts the gateway (or `wharf plugin test`) has at hand.

use super::context::Properties;

/// One request's facts, as the properties give them.
pub struct RequestFacts<'a> {
    /// Path with query.
    pub path: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// `HTTP/1.1`, `HTTP/2`, …
    pub protocol: &'a str,
    pub request_id: &'a str,
    pub client_addr: &'a str,
    pub plugin: &'a str,
    pub tenant: &'a str,
    pub route: &'a str,
}

/// The properties of a request (the names are static: no allocation for them per request).
pub fn of_request(f: &RequestFacts<'_>) -> Properties {
    let url_path = f.path.split('?').next().unwrap_or(f.path);
    // Envoy's cluster naming, which Higress's SDK parses for the route's upstream.
    let cluster = format!("outbound|80||{}", f.route);
    let pairs: [(&'static str, &str); 18] = [
        ("request.path", f.path),
        ("request.url_path", url_path),
        ("request.method", f.method),
        ("request.host", f.host),
        ("request.scheme", f.scheme),
        ("request.protocol", f.protocol),
        ("request.id", f.request_id),
        ("x_request_id", f.request_id),
        ("source.address", f.client_addr),
        ("plugin_name", f.plugin),
        ("plugin_root_id", ""),
        ("plugin_vm_id", ""),
        ("route_name", f.route),
        ("xds.route_name", f.route),
        ("cluster_name", &cluster),
        ("xds.cluster_name", &cluster),
        ("wharf.tenant", f.tenant),
        ("wharf.route", f.route),
    ];
    pairs
        .iter()
        .map(|&(k, v)| (k.into(), v.as_bytes().to_vec()))
        .collect()
}
