//! Wharf's Rust guest support, for a plugin built without cargo: Debian's `rustc` 1.63
//! (`--target wasm32-unknown-unknown`) plus bindings from the `wit-bindgen` 0.36 CLI, generated
//! with `--runtime-path crate::wharf::rt` (see plugins/README.md). A plugin includes it with
//!
//! ```ignore
//! #[path = "../rust-sdk/wharf.rs"]
//! mod wharf;
//! ```
//!
//! and the build passes the generated file's path in `WHARF_RUST_BINDINGS` (read at compile
//! time), so the same sources build for `http-plugin` and for `body-plugin`.
#![allow(dead_code)]

/// The `wit-bindgen rust` output: the `Guest` trait, `export!`, `wharf::plugin::*`.
#[allow(warnings, clippy::all)]
pub mod bindings {
    include!(env!("WHARF_RUST_BINDINGS"));
}

pub use bindings::wharf::plugin::types::{
    Header, HeaderOp, Reply, Request, RequestAction, RequestEdits, Response, ResponseAction,
};
pub use bindings::wharf::plugin::{config as config_api, log as log_api};

/// The runtime pieces the generated code calls (what the `wit-bindgen-rt` crate provides to a
/// cargo build), so no crate is needed.
pub mod rt {
    extern crate alloc;
    use alloc::alloc::Layout;

    /// Runs the module's static constructors once, before the first export's code (wasm-ld
    /// synthesizes `__wasm_call_ctors`; calling it opts out of running it around every export).
    pub fn run_ctors_once() {
        static mut RAN: bool = false;
        extern "C" {
            fn __wasm_call_ctors();
        }
        // Safety: a component instance is single-threaded and nothing else reads RAN.
        unsafe {
            if !RAN {
                RAN = true;
                __wasm_call_ctors();
            }
        }
    }

    /// Referenced from the generated code so that `cabi_realloc` is always linked in.
    pub fn maybe_link_cabi_realloc() {
        static mut KEEP: unsafe extern "C" fn(*mut u8, usize, usize, usize) -> *mut u8 =
            cabi_realloc;
        // Safety: a volatile read of a static the program never writes.
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!(KEEP));
        }
    }

    /// The canonical ABI's allocator: the host calls it to copy strings and lists into the
    /// instance's memory.
    ///
    /// # Safety
    /// The canonical ABI's contract: `old_ptr`/`old_len` come from an earlier call with this `align`.
    #[no_mangle]
    pub unsafe extern "C" fn cabi_realloc(
        old_ptr: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        let ptr = if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            alloc::alloc::alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            let layout = Layout::from_size_align_unchecked(old_len, align);
            alloc::alloc::realloc(old_ptr, layout, new_len)
        };
        if ptr.is_null() {
            core::arch::wasm32::unreachable();
        }
        ptr
    }
}

/// The value of `key` in the plugin's configuration on this route, or `default`.
pub fn config(key: &str, default: &str) -> String {
    config_api::get(key).unwrap_or_else(|| default.to_string())
}

/// Logs through the host (attributed to the tenant and plugin, rate-limited).
pub fn log(level: log_api::Level, message: &str) {
    log_api::log(level, message);
}

/// A header op replacing every value of `name` with `value`.
pub fn set_header(name: impl Into<String>, value: impl Into<Vec<u8>>) -> HeaderOp {
    HeaderOp::Set(Header {
        name: name.into(),
        value: value.into(),
    })
}

/// A header op adding a value to `name`, keeping existing ones.
pub fn append_header(name: impl Into<String>, value: impl Into<Vec<u8>>) -> HeaderOp {
    HeaderOp::Append(Header {
        name: name.into(),
        value: value.into(),
    })
}

/// The first value of the header `name` (case-insensitive), if any.
pub fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// Continue to the next plugin and the upstream with these header edits.
pub fn continue_with(headers: Vec<HeaderOp>) -> RequestAction {
    RequestAction::Continue(RequestEdits {
        headers,
        path: None,
    })
}

/// Keep the response's status; apply these header edits.
pub fn response_headers(headers: Vec<HeaderOp>) -> ResponseAction {
    ResponseAction {
        status: None,
        headers,
    }
}
