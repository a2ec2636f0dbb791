//! The `wharf` gateway: a Pingora reverse proxy routing Host/path → tenant → route → upstream
//! (`proxy/`), its control plane turning the store's config into the live routing table
//! (`control/`), the admin listener with the tenant/operator API (`admin`, `api/`), and the CLI
//! (`cli/`).

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

// The global allocator is the binary's (`main.rs`).
use mimalloc as _;

pub mod acme;
pub mod admin;
pub mod admin_server;
pub mod api;
pub mod bootstrap;
pub mod cli;
pub mod clients;
pub mod console;
pub mod control;
pub mod drain;
pub mod echo;
pub mod head_deadline;
pub mod oci;
pub mod plugin_add;
pub mod private_files;
pub mod proxy;
pub mod serve;
pub mod throttle;
pub mod tls;
pub mod upgrade;
pub mod usage;
pub mod usage_fleet;
