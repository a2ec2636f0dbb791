use super::*;
use wharf_plugins::types::Reply;

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn values(req: &RequestHeader, name: &str) -> Vec<String> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn header_ops_set_append_and_remove_and_skip_what_does_not_parse() {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.insert_header("x-a", "1").unwrap();
    req.insert_header("x-gone", "1").unwrap();
    apply_op(&mut req, HeaderOp::Set(header("x-a", "2")));
    apply_op(&mut req, HeaderOp::Append(header("x-a", "3")));
    // A name in any case finds its header.
    apply_op(&mut req, HeaderOp::Remove("X-Gone".into()));
    apply_op(&mut req, HeaderOp::Set(header("bad name", "v")));
    apply_op(&mut req, HeaderOp::Set(header("x-b", "line\nbreak")));
    assert_eq!(values(&req, "x-a"), ["2", "3"]);
    assert!(values(&req, "x-gone").is_empty());
    assert!(values(&req, "x-b").is_empty());
    // A name goes out on HTTP/1.1 in the case the plugin wrote it.
    apply_op(&mut req, HeaderOp::Set(header("X-Tag", "t")));
    let mut wire = Vec::new();
    req.header_to_h1_wire(&mut wire);
    assert!(String::from_utf8(wire).unwrap().contains("X-Tag: t\r\n"));
}

#[test]
fn a_response_action_sets_status_and_headers_and_a_rewrite_keeps_a_bad_path_out() {
    let mut resp = ResponseHeader::build(200, None).unwrap();
    let action = ResponseAction {
        status: Some(418),
        headers: vec![HeaderOp::Set(header("x-plugin", "yes"))],
    };
    apply_response_action(&mut resp, action);
    assert_eq!(resp.status.as_u16(), 418);
    assert_eq!(resp.headers.get("x-plugin").unwrap(), "yes");

    let mut req = RequestHeader::build("GET", b"/old?q=1", None).unwrap();
    rewrite_path(&mut req, "/new?x=1");
    assert_eq!(req.uri.to_string(), "/new?x=1");
    rewrite_path(&mut req, "/with space");
    assert_eq!(req.uri.to_string(), "/new?x=1");
}

#[test]
fn a_plugin_reply_keeps_its_status_and_valid_headers() {
    let reply = Reply {
        status: 401,
        headers: vec![
            header("www-authenticate", "Bearer"),
            header("bad name", "v"),
            header("X-Reason", "expired"),
        ],
        body: b"no".to_vec(),
    };
    let resp = reply_header(reply.status, reply.headers).unwrap();
    assert_eq!(resp.status.as_u16(), 401);
    assert_eq!(resp.headers.get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(resp.headers.len(), 2);
    // On HTTP/1.1 a name goes out in the case the plugin wrote it.
    let mut wire = Vec::new();
    resp.header_to_h1_wire(&mut wire);
    let wire = String::from_utf8(wire).unwrap();
    assert!(wire.contains("X-Reason: expired\r\n"), "{wire}");
}
