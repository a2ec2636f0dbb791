//! The `wharf` gateway: a Pingora reverse proxy routing Host/path → tenant → route → upstream,
//! plus its control plane (config polling, health checks) and admin listener.

pub mod admin;
pub mod api;
pub mod bootstrap;
pub mod chain;
pub mod cli;
pub mod client;
pub mod commands;
pub mod control;
pub mod echo;
pub mod egress;
pub mod errors;
pub mod live;
pub mod proxy;
pub mod rate_limit;
pub mod resolve;
pub mod serve;
