//! proxy-wasm modules at upload, through the admin API: the 14 prebuilt Higress plugins (Go and
//! Rust, downloaded from PyPI by scripts/test into the cache) are recognized by their ABI export
//! and pass the import check: every one is accepted; a module importing anything outside the ABI
//! and the WASI subset is refused naming it.

use reqwest::StatusCode;

use wharf_plugins::test_support::binary;

use crate::support::api::{setup, OP};

#[tokio::test]
async fn proxy_wasm_uploads_are_recognized_and_their_imports_checked() {
    let dir = std::env::var("WHARF_HIGRESS_DIR").expect(
        "WHARF_HIGRESS_DIR: run the suite with scripts/test, which downloads the Higress plugins",
    );
    let (_gw, api, _a, _b, _r) = setup().await;
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let (s, v) = api.put_plugin("a", &name, OP, bytes).await;
        assert_eq!(s, StatusCode::CREATED, "{name}: {v}");
        seen += 1;
    }
    assert_eq!(
        seen, 14,
        "the 14 Higress plugins of gpustack-higress-plugins 0.5.1"
    );

    let backdoor = binary(
        r#"(module
            (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
            (import "env" "proxy_open_any_socket" (func (param i32) (result i32)))
            (func (export "proxy_abi_version_0_2_1")))"#,
    );
    let (s, v) = api.put_plugin("a", "backdoor", OP, backdoor).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("env.proxy_open_any_socket"),
        "{v}"
    );
}
