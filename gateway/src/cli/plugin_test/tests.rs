use super::*;

/// `--config` for a proxy-wasm module: the bytes an attachment's plugin_config gives it.
#[test]
fn proxy_config_is_the_json_an_attachment_gives() {
    let one = |s: &str| proxy_config(&[s.to_string()], "--config");
    assert_eq!(one(r#"{ "a": 1 }"#).unwrap(), br#"{"a":1}"#);
    assert_eq!(one(r#""key: value""#).unwrap(), b"key: value");
    let pairs = ["header=x-a".to_string(), "value=1".to_string()];
    assert_eq!(
        proxy_config(&pairs, "--config").unwrap(),
        br#"{"header":"x-a","value":"1"}"#
    );
    assert!(proxy_config(&[], "--config").unwrap().is_empty());
    assert!(one("not json").is_err());
}
