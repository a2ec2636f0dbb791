//! The gateway's integration tests (real gateway processes, stores, backends, browsers), in
//! one binary, so Pingora, wasmtime and sqlx are linked once: each module is what was one test
//! file (`cargo test -p wharf-gateway --test it <module>::`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[macro_use]
mod support;

mod acme;
mod acme_fleet;
mod acme_tls_alpn;
mod api;
mod api_fleet;
mod architecture;
mod backup;
mod bad_input;
mod concurrent_writes;
mod console;
mod deploy;
mod guest_languages;
mod host_calls;
mod hostile_client;
mod hostile_tenant;
mod observability;
mod openapi;
mod outbound_http;
mod outbound_http_hostile;
mod plugin_cache;
mod plugin_dev;
mod plugin_test_command;
mod plugins;
mod private_files;
mod protocols;
mod proxy_wasm_assemblyscript;
mod proxy_wasm_bodies;
mod proxy_wasm_body_pieces;
mod proxy_wasm_calls;
mod proxy_wasm_held_response;
mod proxy_wasm_hostile;
mod proxy_wasm_oci;
mod proxy_wasm_oci_auth;
mod proxy_wasm_paused;
mod proxy_wasm_queues;
mod proxy_wasm_redis;
mod proxy_wasm_serve;
mod proxy_wasm_state;
mod proxy_wasm_streaming;
mod proxy_wasm_streaming_hostile;
mod proxy_wasm_tick_calls;
mod proxy_wasm_tick_redis;
mod proxy_wasm_ticks;
mod proxy_wasm_trailers;
mod proxy_wasm_uploads;
mod rate_limits;
mod redis_usage;
mod reload;
mod request_bodies;
mod request_filters;
mod response_bodies;
mod restarts;
mod retries;
mod routing;
mod slow_clients;
mod tenant_quotas;
mod tls;
mod tls_operations;
mod tracing;
mod tutorial;
mod upgrade;
mod upstream_names;
mod upstream_names_under_load;
mod upstream_tls;
mod usage;
mod websocket_tunnels;
