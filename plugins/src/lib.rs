//! Wharf's WebAssembly plugin runtime: typed WIT world, one shared engine with the pooling
//! allocator, a content-addressed compiled-code cache, and a fresh store per request with the
//! tenant's fuel, deadline, memory and instance quotas.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod bindings;
pub mod cache;
mod call;
pub mod capabilities;
mod clock;
mod compiler;
pub mod engine;
pub mod error;
mod executor;
pub mod fair;
mod fiberless;
pub mod footprint;
pub mod instance;
mod instance_end;
pub mod limits;
mod live;
pub mod output;
pub mod proxy_wasm;
mod round_robin;
pub mod runtime;
pub mod settings;
pub mod state;
mod store;

pub use bindings::types;
pub use cache::{sha256_hex, CompiledPlugin};
pub use capabilities::config::{attachment_config, AttachmentConfig};
pub use error::{Failure, PluginError, RejectError};
pub use instance::PluginInstance;
pub use runtime::{Invocation, PluginRuntime};
pub use settings::RuntimeSettings;
pub use wharf_tenancy::PluginQuotas;
#[cfg(feature = "test-util")]
pub mod test_support;
