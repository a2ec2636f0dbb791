//! Throwaway databases for tests of every crate: real Postgres (from `WHARF_TEST_DATABASE_URL`,
//! which `scripts/test` sets), real MariaDB (`WHARF_TEST_MYSQL_URL`) and SQLite files in temp
//! dirs. Each call gets its own database, so tests never share state by accident.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// The admin URL of the test Postgres server, or a panic that says how to get one.
pub fn postgres_admin_url() -> String {
    std::env::var("WHARF_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "WHARF_TEST_DATABASE_URL is not set: run the suite with scripts/test, which starts a \
             throwaway Postgres, or point it at a server where this user may CREATE DATABASE"
        )
    })
}

/// The admin URL of the test MariaDB server (`WHARF_TEST_MYSQL_URL`), or a panic that says how
/// to get one. Tests need no database of their own: each tenant gets one from Wharf.
pub fn mysql_admin_url() -> String {
    std::env::var("WHARF_TEST_MYSQL_URL").unwrap_or_else(|_| {
        panic!(
            "WHARF_TEST_MYSQL_URL is not set: run the suite with scripts/test, which starts a \
             throwaway MariaDB, or point it at a MariaDB where this user may CREATE USER and GRANT"
        )
    })
}

/// Creates a new, empty Postgres database and returns its URL.
pub async fn fresh_postgres_url() -> String {
    let admin = postgres_admin_url();
    let name = format!("wharf_t_{}", unique_suffix());
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach test Postgres at {admin}: {e}"));
    let stmt = format!("CREATE DATABASE {name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
    let _ = conn.close().await;
    with_database(&admin, &name)
}

/// A SQLite URL in a fresh temp directory (the directory lives as long as the test process).
pub fn fresh_sqlite_url() -> String {
    let dir = std::env::temp_dir().join(format!("wharf-test-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    format!("sqlite://{}", dir.join("wharf.db").display())
}

/// A new id that no other test in this run uses (tenants, schemas, key prefixes).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

/// Resident memory of this process, in bytes (Linux).
pub fn process_rss_bytes() -> u64 {
    process_status_kib("VmRSS") * 1024
}

/// One of this process's `/proc/self/status` sizes (`VmRSS`, `VmSwap`…), in KiB; 0 when absent.
pub fn process_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// CPU time this process used (user + system), from /proc.
pub fn process_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields after the command: state is 0, utime is 11, stime is 12; 100 ticks a second.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// A private Redis on `port` that a test may stop (kill) and start again: for outages.
pub fn spawn_redis(port: u16) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-server (scripts/test installs it): {e}"))
}

/// The tested package's directory in the checkout under test. Cargo sets `CARGO_MANIFEST_DIR`
/// for the test process; `compiled` (the caller's `env!("CARGO_MANIFEST_DIR")`) is only the
/// fallback: builds share one target dir (scripts/lib.sh), and cargo reuses a test binary that
/// another checkout of the same sources built (CI's clone), its path compiled in.
pub fn package_dir(compiled: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| compiled.into(), Into::into)
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u@h:1/postgres?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h:1", "x"),
            "postgres://u@h:1/x"
        );
    }
}
