//! The plugin runtime's integration tests (real components, Redis, Postgres, MariaDB, SQLite), in
//! one binary, so Pingora, wasmtime and sqlx are linked once: each module is what was one test
//! file (`cargo test -p wharf-plugins --test it <module>::`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod backends;
mod backends_sql;
mod compiled_cache;
mod fairness;
mod fiberless;
mod future_sizes;
mod hostile_backends;
mod hostile_config;
mod hostile_mysql;
mod hostile_mysql_limits;
mod hostile_redis;
mod hostile_sqlite;
mod instance_end;
mod memory_reset;
mod proxy_wasm_start;
mod proxy_wasm_tiers;
mod redis_pool;
mod redis_recount;
mod runtime;
