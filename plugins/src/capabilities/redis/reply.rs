//! Redis's replies as the WIT values a plugin receives.

use deadpool_redis::redis::Value;

use super::{HostError, RedisScalar, RedisValue};

/// A Redis reply as the WIT value a plugin receives: scalars, or one level of array.
pub(super) fn convert(v: Value) -> Result<RedisValue, HostError> {
    Ok(match v {
        Value::Array(items) | Value::Set(items) => {
            RedisValue::Array(items.into_iter().map(scalar).collect::<Result<_, _>>()?)
        }
        other => match scalar(other)? {
            RedisScalar::Nil => RedisValue::Nil,
            RedisScalar::Status(s) => RedisValue::Status(s),
            RedisScalar::Int(i) => RedisValue::Int(i),
            RedisScalar::Bulk(b) => RedisValue::Bulk(b),
        },
    })
}

fn scalar(v: Value) -> Result<RedisScalar, HostError> {
    Ok(match v {
        Value::Nil => RedisScalar::Nil,
        Value::Int(i) => RedisScalar::Int(i),
        Value::BulkString(b) => RedisScalar::Bulk(b),
        Value::SimpleString(s) => RedisScalar::Status(s),
        Value::Okay => RedisScalar::Status("OK".into()),
        Value::Double(d) => RedisScalar::Bulk(d.to_string().into_bytes()),
        Value::Boolean(b) => RedisScalar::Int(b as i64),
        Value::ServerError(e) => return Err(HostError::Backend(format!("{e:?}"))),
        other => {
            return Err(HostError::Backend(format!(
                "unsupported reply shape: {other:?}"
            )))
        }
    })
}
