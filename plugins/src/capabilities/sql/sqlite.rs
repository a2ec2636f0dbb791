//! A tenant's SQLite file: ATTACH, PRAGMA, `load_extension` and VACUUM INTO refused; the file
//! capped at the tenant's storage quota (`max_page_count`); no single string or blob larger than
//! its result cap (`SQLITE_LIMIT_LENGTH`, so one value can never be built past it); and a
//! statement past its deadline interrupted (`sqlite3_interrupt`), not left running.
// The workspace denies unsafe code; this module needs it: SQLite's interrupt and authorizer are C callbacks.
#![allow(unsafe_code)]

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Executor, SqlitePool};

use super::values::sqlite_value;
use super::{no_rows, RowSet, SqlValue, TenantSql};
use crate::capabilities::HostError;
use wharf_tenancy::Quotas;

/// SQLite's default page size; the quota is a page count.
const PAGE_BYTES: u64 = 4096;

pub async fn open(
    tenant: &str,
    dir: &std::path::Path,
    q: &Quotas,
    wait: Duration,
) -> Result<SqlitePool, HostError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| HostError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    let options = SqliteConnectOptions::new()
        .filename(dir.join(format!("{tenant}.db")))
        .create_if_missing(true)
        .busy_timeout(Duration::from_millis(q.sql.statement_timeout_ms));
    let pages = (q.sql.max_storage_bytes / PAGE_BYTES).max(16);
    let max_length = i32::try_from(q.sql.max_result_bytes).unwrap_or(i32::MAX);
    let pool = SqlitePoolOptions::new()
        .max_connections(q.sql.max_connections)
        .acquire_timeout(wait)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // Set before the authorizer goes in (it refuses PRAGMA from then on).
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "PRAGMA max_page_count = {pages}"
                )))
                .await?;
                let mut handle = conn.lock_handle().await?;
                guard::install(handle.as_raw_handle().as_ptr(), max_length);
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(super::map_err)?;
    Ok(pool)
}

/// Deletes a tenant's database file (and its journal files).
pub fn purge(tenant: &str, dir: &std::path::Path) -> Result<(), HostError> {
    for suffix in ["db", "db-wal", "db-shm", "db-journal"] {
        let path = dir.join(format!("{tenant}.{suffix}"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(HostError::Backend(format!(
                    "cannot delete {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Ok(())
}

/// Statements that would reach outside the tenant's file and that the authorizer cannot see.
pub fn refuse_escapes(statement: &str) -> Result<(), HostError> {
    let upper = statement.to_ascii_uppercase();
    // VACUUM INTO writes a copy of the database to any path: refuse the keyword outright.
    if upper
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w == "VACUUM")
    {
        return Err(HostError::Denied(
            "VACUUM is not available to plugins".into(),
        ));
    }
    Ok(())
}

/// One host call: the statement under its deadline, on a connection held throughout.
pub(super) async fn run(
    sql: &TenantSql,
    pool: &SqlitePool,
    statement: &str,
    params: Vec<SqlValue>,
    want_rows: bool,
) -> Result<(RowSet, u64), HostError> {
    refuse_escapes(statement)?;
    let mut conn = sql.acquire(pool, "sqlite").await?;
    let _deadline = Deadline::arm(&mut conn, sql.timeout).await?;
    let q = bind_params!(
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string())),
        params
    );
    if want_rows {
        Ok((sql.collect(q.fetch(&mut *conn), sqlite_value).await?, 0))
    } else {
        let done = q
            .execute(&mut *conn)
            .await
            .map_err(|e| sql.map_write_err(e))?;
        Ok((no_rows(), done.rows_affected()))
    }
}

/// Interrupts the statement running on a connection if it is still running at the deadline.
/// Dropped (disarmed) when the statement ends; the connection is held by the caller throughout,
/// so the interrupt can only ever hit the statement it was armed for.
pub struct Deadline {
    timer: tokio::task::JoinHandle<()>,
}

impl Deadline {
    pub async fn arm(
        conn: &mut sqlx::SqliteConnection,
        after: Duration,
    ) -> Result<Deadline, HostError> {
        let db = {
            let mut handle = conn.lock_handle().await.map_err(super::map_err)?;
            handle.as_raw_handle().as_ptr() as usize
        };
        let timer = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            guard::interrupt(db);
        });
        Ok(Deadline { timer })
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

/// SQLite's C-level guard: no attached databases, a length cap, and an authorizer that refuses
/// ATTACH, DETACH, PRAGMA and `load_extension`.
mod guard {
    use std::ffi::{c_char, c_int, c_void, CStr};

    use libsqlite3_sys as ffi;

    pub(super) fn install(db: *mut ffi::sqlite3, max_length: i32) {
        // SAFETY: `db` is a live connection handle, locked for us by sqlx for this call; the
        // authorizer is a plain function with no user data.
        unsafe {
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, max_length.max(1024));
            ffi::sqlite3_set_authorizer(db, Some(authorize), std::ptr::null_mut());
        }
    }

    /// `db` is the address of a connection the caller holds checked out.
    pub(super) fn interrupt(db: usize) {
        // SAFETY: sqlite3_interrupt may be called from any thread while the connection is open;
        // the connection stays open while its `Deadline` exists (the caller holds it).
        unsafe { ffi::sqlite3_interrupt(db as *mut ffi::sqlite3) }
    }

    extern "C" fn authorize(
        _: *mut c_void,
        action: c_int,
        _arg1: *const c_char,
        arg2: *const c_char,
        _: *const c_char,
        _: *const c_char,
    ) -> c_int {
        match action {
            ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH | ffi::SQLITE_PRAGMA => ffi::SQLITE_DENY,
            ffi::SQLITE_FUNCTION => {
                let name = if arg2.is_null() {
                    ""
                } else {
                    // SAFETY: SQLite passes a NUL-terminated function name for SQLITE_FUNCTION.
                    unsafe { CStr::from_ptr(arg2) }.to_str().unwrap_or("")
                };
                if name.eq_ignore_ascii_case("load_extension") {
                    ffi::SQLITE_DENY
                } else {
                    ffi::SQLITE_OK
                }
            }
            _ => ffi::SQLITE_OK,
        }
    }
}
