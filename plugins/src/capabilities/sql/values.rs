//! A row's columns as the values a plugin receives, and sqlx's errors as host errors with the
//! outcome a plugin (and the metrics) can act on.

use sqlx::{Row, TypeInfo, ValueRef};

use super::SqlValue;
use crate::capabilities::HostError;

pub(super) fn pg_value(row: &sqlx::postgres::PgRow, i: usize) -> Result<SqlValue, HostError> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    let get_err = |e: sqlx::Error| HostError::Backend(e.to_string());
    Ok(match ty.as_str() {
        "BOOL" => SqlValue::Boolean(row.try_get(i).map_err(get_err)?),
        "INT2" => SqlValue::Int64(row.try_get::<i16, _>(i).map_err(get_err)?.into()),
        "INT4" => SqlValue::Int64(row.try_get::<i32, _>(i).map_err(get_err)?.into()),
        "INT8" => SqlValue::Int64(row.try_get(i).map_err(get_err)?),
        "FLOAT4" => SqlValue::Float64(row.try_get::<f32, _>(i).map_err(get_err)?.into()),
        "FLOAT8" => SqlValue::Float64(row.try_get(i).map_err(get_err)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" => SqlValue::Text(row.try_get(i).map_err(get_err)?),
        "BYTEA" => SqlValue::Bytes(row.try_get(i).map_err(get_err)?),
        other => {
            return Err(HostError::Invalid(format!(
                "column {i} has type {other}, which plugins cannot receive; cast it (::text, ::int8, ::float8)"
            )))
        }
    })
}

pub(super) fn sqlite_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<SqlValue, HostError> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    let get_err = |e: sqlx::Error| HostError::Backend(e.to_string());
    Ok(match ty.as_str() {
        "INTEGER" | "BOOLEAN" => SqlValue::Int64(row.try_get(i).map_err(get_err)?),
        "REAL" => SqlValue::Float64(row.try_get(i).map_err(get_err)?),
        "BLOB" => SqlValue::Bytes(row.try_get(i).map_err(get_err)?),
        _ => SqlValue::Text(row.try_get(i).map_err(get_err)?),
    })
}

pub(crate) fn map_err(e: sqlx::Error) -> HostError {
    match &e {
        sqlx::Error::Database(db) => {
            if let Some(m) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return super::mysql::map_error(m);
            }
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let msg = db.message().to_string();
            match code.as_str() {
                // Postgres: query_canceled, lock_not_available; SQLite: SQLITE_INTERRUPT (our
                // deadline).
                "57014" | "55P03" | "9" => HostError::Timeout,
                _ if msg == "interrupted" => HostError::Timeout,
                // SQLite's SQLITE_ERROR: a statement it could not prepare or run (syntax, no such
                // table, …).
                "1" => HostError::Invalid(msg),
                "42501" => HostError::Denied(msg),
                c if c.starts_with("3F") || c.starts_with("3D") => HostError::Invalid(msg),
                c if c.starts_with("42") || c.starts_with("22") => HostError::Invalid(msg),
                _ if msg.contains("not authorized") => HostError::Denied(msg),
                _ => HostError::Backend(msg),
            }
        }
        sqlx::Error::PoolTimedOut => HostError::QuotaExceeded("no free SQL connection".into()),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => HostError::BackendUnavailable,
        _ => HostError::Backend(e.to_string()),
    }
}
