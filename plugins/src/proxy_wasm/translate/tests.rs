//! What modules leave, as edits: the diff's two ways agree, and only changes become edits.
use super::*;
use crate::proxy_wasm::abi::Action;

fn pairs(list: &[(&str, &str)]) -> Pairs {
    list.iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn outcome(headers: Pairs) -> HeadersOutcome {
    HeadersOutcome {
        action: Action::Continue,
        headers,
        local_response: None,
        calls: Vec::new(),
        resumed: false,
    }
}

#[test]
fn scans_and_grouping_find_the_same_edits() {
    let cases = [
        (
            vec![("a", "1"), ("B", "2"), ("b", "3")],
            vec![("A", "1"), ("b", "3")],
        ),
        (
            vec![("x", "1"), ("content-length", "2")],
            vec![("x", "2"), ("X", "3")],
        ),
        (
            vec![(":path", "/"), ("k", "v")],
            vec![(":path", "/z"), ("new", "1"), ("k", "v")],
        ),
        (vec![("dup", "1"), ("dup", "1")], vec![("dup", "1")]),
        (vec![], vec![("only", "after")]),
    ];
    for (before, after) in cases {
        let (before, after) = (pairs(&before), pairs(&after));
        assert_eq!(
            diff_small(&before, &after),
            diff_grouped(&before, &after),
            "{before:?} -> {after:?}"
        );
    }
}

#[test]
fn edits_follow_what_the_module_changed_and_nothing_else() {
    let before = pairs(&[
        (":authority", "a.test"),
        (":path", "/x"),
        ("accept", "*/*"),
        ("x-two", "1"),
        ("x-gone", "1"),
    ]);
    let after = pairs(&[
        (":authority", "b.test"),
        (":path", "/y?q=1"),
        ("accept", "*/*"),
        ("X-Two", "1"),
        ("x-two", "2"),
        ("x-new", "v"),
    ]);
    let RequestAction::Continue(edits) = request_action(&before, &outcome(after)) else {
        panic!("a continue");
    };
    let shown: Vec<String> = edits
        .headers
        .iter()
        .map(|op| match op {
            HeaderOp::Set(h) => format!("set {}={}", h.name, String::from_utf8_lossy(&h.value)),
            HeaderOp::Append(h) => {
                format!("append {}={}", h.name, String::from_utf8_lossy(&h.value))
            }
            HeaderOp::Remove(n) => format!("remove {n}"),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "set x-two=1",
            "append x-two=2",
            "set x-new=v",
            "remove x-gone",
            "set host=b.test"
        ]
    );
    assert_eq!(edits.path.as_deref(), Some("/y?q=1"));
    let same = request_action(&before, &outcome(before.clone()));
    assert!(matches!(same, RequestAction::Continue(e) if e.headers.is_empty() && e.path.is_none()));
}

#[test]
fn a_method_change_is_a_checked_token() {
    let before = pairs(&[(":method", "GET"), (":path", "/")]);
    let with = |m: &str| pairs(&[(":method", m), (":path", "/")]);
    assert_eq!(method_change(&before, &before), Ok(None));
    assert_eq!(method_change(&before, &pairs(&[(":path", "/")])), Ok(None));
    assert_eq!(
        method_change(&before, &with("PURGE")),
        Ok(Some(http::Method::from_bytes(b"PURGE").unwrap()))
    );
    assert_eq!(
        method_change(&before, &with("POST")),
        Ok(Some(http::Method::POST))
    );
    for bad in ["GET /x", "", "PO\nST", "CONNECT", "HEAD", &"A".repeat(33)] {
        let refused = method_change(&before, &with(bad));
        assert!(refused.is_err(), "{bad:?}: {refused:?}");
    }
    let head = pairs(&[(":method", "HEAD")]);
    assert!(method_change(&head, &with("GET")).is_err());
}

#[test]
fn a_status_change_is_a_status() {
    let before = pairs(&[(":status", "200"), ("server", "up")]);
    let after = pairs(&[(":status", "418"), ("server", "up")]);
    let action = response_action(&before, &outcome(after));
    assert_eq!(action.status, Some(418));
    assert!(action.headers.is_empty());
}
