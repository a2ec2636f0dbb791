//! proxy-wasm (the ABI Envoy, Istio, Higress and Kong run, 0.2.x): recognizing such a module at
//! upload and checking what it imports. A module exporting `proxy_abi_version_*` is a proxy-wasm
//! plugin; it may import only the ABI's `env` functions and the WASI preview1 subset the
//! ecosystem's SDKs use (docs/proxy-wasm-imports.md lists them, from the Higress and
//! AssemblyScript modules). `host` links them, `vm` drives one VM's callbacks, `pool` keeps a
//! VM per tenant, plugin version and configuration (docs/proxy-wasm.md).

pub mod abi;
mod calls;
pub mod context;
pub mod env;
mod host;
mod imports;
pub mod memory;
pub mod pool;
pub mod properties;
pub mod resp;
pub mod shared;
pub mod translate;
pub mod vm;
pub mod wasi;

use wasmparser::{Parser, Payload, TypeRef};

pub use host::{linker, ProxyWasmCode};
pub use imports::{ENV, WASI};

/// ABI versions recognized, by the export that declares them (Higress declares `0_2_100`).
const ABI_VERSIONS: [(&str, &str); 4] = [
    ("proxy_abi_version_0_2_1", "0.2.1"),
    ("proxy_abi_version_0_2_0", "0.2.0"),
    ("proxy_abi_version_0_1_0", "0.1.0"),
    ("proxy_abi_version_0_2_100", "0.2.100"),
];

/// What an upload of a proxy-wasm module showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyWasmModule {
    /// The ABI version it declares (`0.2.1`).
    pub abi: &'static str,
}

/// Why a proxy-wasm module cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("it imports {module}.{name}, which a Wharf proxy-wasm host does not provide (the ABI's env functions and the WASI preview1 subset in docs/proxy-wasm-imports.md)")]
    Import { module: String, name: String },
    #[error("it imports {module}.{name} as a {kind}: only functions may be imported")]
    NotAFunction {
        module: String,
        name: String,
        kind: &'static str,
    },
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
}

/// `Some` when `bytes` are a core module declaring a proxy-wasm ABI version, with its imports
/// checked; `None` for anything else (a component, a plain core module).
pub fn inspect(bytes: &[u8]) -> Result<Option<ProxyWasmModule>, ModuleError> {
    let mut abi = None;
    let mut imports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| ModuleError::Invalid(e.to_string()))? {
            Payload::Version { encoding, .. } if encoding != wasmparser::Encoding::Module => {
                return Ok(None);
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| ModuleError::Invalid(e.to_string()))?;
                    imports.push((
                        import.module.to_string(),
                        import.name.to_string(),
                        import.ty,
                    ));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| ModuleError::Invalid(e.to_string()))?;
                    if let Some((_, v)) = ABI_VERSIONS.iter().find(|(n, _)| *n == export.name) {
                        abi = Some(*v);
                    }
                }
            }
            _ => {}
        }
    }
    let Some(abi) = abi else {
        return Ok(None);
    };
    for (module, name, ty) in imports {
        let known = match module.as_str() {
            "env" => ENV.contains(&name.as_str()),
            "wasi_snapshot_preview1" => WASI.contains(&name.as_str()),
            _ => false,
        };
        if !known {
            return Err(ModuleError::Import { module, name });
        }
        let kind = match ty {
            TypeRef::Func(_) => continue,
            TypeRef::Table(_) => "table",
            TypeRef::Memory(_) => "memory",
            TypeRef::Global(_) => "global",
            _ => "tag",
        };
        return Err(ModuleError::NotAFunction { module, name, kind });
    }
    Ok(Some(ProxyWasmModule { abi }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap()
    }

    #[test]
    fn a_module_declaring_the_abi_is_recognized_with_its_imports_checked() {
        let ok = module(
            r#"(module
                (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "proxy_abi_version_0_2_1")))"#,
        );
        assert_eq!(inspect(&ok), Ok(Some(ProxyWasmModule { abi: "0.2.1" })));

        let sockets = module(
            r#"(module
                (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
                (func (export "proxy_abi_version_0_2_100")))"#,
        );
        let e = inspect(&sockets).unwrap_err();
        assert!(
            e.to_string().contains("wasi_snapshot_preview1.sock_accept"),
            "{e}"
        );

        let other = module(
            r#"(module (import "evil" "syscall" (func)) (func (export "proxy_abi_version_0_2_1")))"#,
        );
        assert!(inspect(&other)
            .unwrap_err()
            .to_string()
            .contains("evil.syscall"));

        let memory = module(
            r#"(module (import "env" "proxy_log" (memory 1)) (func (export "proxy_abi_version_0_2_1")))"#,
        );
        assert!(matches!(
            inspect(&memory),
            Err(ModuleError::NotAFunction { .. })
        ));

        let plain = module(r#"(module (func (export "run")))"#);
        assert_eq!(inspect(&plain), Ok(None));
    }
}
