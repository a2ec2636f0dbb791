//! Header names that only differ from a framing, hop-by-hop or forwarding header by `_` for `-`
//! (`Transfer_Encoding`, `Content_Length`, `X_Forwarded_For`) are dropped before the upstream
//! sees them. Wharf frames the request by the real headers, but CGI, WSGI and Rack upstreams
//! map `_` and `-` to one name (`HTTP_TRANSFER_ENCODING`): a look-alike would reach them as the
//! real header, a desync or a spoofed client address. Other names with `_` pass, as they do in
//! Envoy by default; nginx drops them all (`underscores_in_headers off`), which breaks APIs that
//! use them.

use pingora_http::RequestHeader;
use wharf_plugins::output::MANAGED;

/// Headers Wharf sets for the upstream, besides the framing and connection headers it manages
/// (`wharf_plugins::output::MANAGED`).
const FORWARDING: &[&str] = &[
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "via",
    "x-request-id",
];

fn guarded(name: &str) -> bool {
    let name = name.replace('_', "-");
    MANAGED.contains(&name.as_str()) || FORWARDING.contains(&name.as_str())
}

/// Removes every look-alike of a guarded header; returns how many names were dropped.
pub(super) fn drop_lookalikes(req: &mut RequestHeader) -> usize {
    let names: Vec<String> = req
        .headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| n.contains('_') && guarded(n))
        .map(str::to_owned)
        .collect();
    for n in &names {
        req.remove_header(n.as_str());
    }
    names.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_go_and_other_underscores_stay() {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        for (n, v) in [
            ("Transfer_Encoding", "chunked"),
            ("Content_Length", "0"),
            ("x_forwarded_for", "10.0.0.1"),
            ("Content-Length", "5"),
            ("X_Api_Key", "k"),
        ] {
            req.append_header(n.to_string(), v).unwrap();
        }
        assert_eq!(drop_lookalikes(&mut req), 3);
        let mut left: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["content-length", "x_api_key"]);
    }
}
