//! The proxy-wasm host functions (`env`) that act on the callback's [`HostContext`]: logging,
//! time, buffers, header maps, properties, local responses, the effective context and stream
//! continuation. Functions the host does not serve yet answer UNIMPLEMENTED
//! ([`stub_remaining`]). Every pointer goes through [`super::memory`]: a module's bad pointer
//! fails its own call, never the host.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker, Module, Val};

use super::abi::{self, BufferType, MapType, Status};
use super::context::{HostContext, LocalResponse};
use super::memory;

/// What the host functions need of a VM's store data.
pub trait ProxyHost: Send + 'static {
    fn context(&mut self) -> &mut HostContext;
    /// A log line from the module, into the tenant's log budget.
    fn log(&mut self, level: tracing::Level, message: &str);
}

/// A property value or body larger than this is refused (`BAD_ARGUMENT`).
/// A body a module may grow a buffer to (the gateway holds it to the tenant's
/// `plugin_body_max_bytes` after the callback).
const MAX_BODY: usize = 64 << 20;

/// All of a request's properties together (the gateway's and the module's), in bytes.
const MAX_PROPERTY_BYTES: usize = 1 << 20;

pub(super) const MAX_VALUE: usize = 1 << 20;

pub(super) fn code(r: Result<(), Status>) -> i32 {
    match r {
        Ok(()) => Status::Ok as i32,
        Err(s) => s as i32,
    }
}

/// What [`link`] serves.
pub const SERVED: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_get_buffer_bytes",
    "proxy_get_buffer_status",
    "proxy_set_buffer_bytes",
    "proxy_get_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_set_header_map_pairs",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_send_local_response",
    "proxy_set_effective_context",
    "proxy_http_call",
    "proxy_redis_init",
    "proxy_set_tick_period_milliseconds",
    "proxy_redis_call",
    "proxy_continue_stream",
    "proxy_resume_http_request",
    "proxy_resume_http_response",
];

/// Adds the served functions to `linker` under `env`.
pub fn link<T: ProxyHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    const M: &str = "env";
    linker.func_wrap(
        M,
        "proxy_log",
        |mut c: Caller<'_, T>, level: i32, ptr: i32, len: i32| {
            let Some(level) = abi::log_level(level) else {
                return Status::BadArgument as i32;
            };
            code(memory::read(&mut c, ptr, len).map(|m| {
                c.data_mut().log(level, &String::from_utf8_lossy(&m));
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_log_level",
        |mut c: Caller<'_, T>, ret: i32| {
            code(memory::write_u32(&mut c, ret, 2)) // INFO
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, T>, ret: i32| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            code(memory::write(&mut c, ret, &now.to_le_bytes()))
        },
    )?;
    linker.func_wrap_async(
        M,
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, T>, (buf, start, max, rp, rs): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let Some(buf) = BufferType::from_i32(buf) else {
                    return Ok(Status::BadArgument as i32);
                };
                let Some(bytes) = c.data_mut().context().buffer(buf).cloned() else {
                    return Ok(Status::NotFound as i32);
                };
                let start = (start as u32 as usize).min(bytes.len());
                let end = start.saturating_add(max as u32 as usize).min(bytes.len());
                Ok(code(
                    memory::give(&mut c, &bytes[start..end], rp, rs).await?,
                ))
            })
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_buffer_status",
        |mut c: Caller<'_, T>, buf: i32, size: i32, _flags: i32| {
            let Some(buf) = BufferType::from_i32(buf) else {
                return Status::BadArgument as i32;
            };
            let Some(len) = c.data_mut().context().buffer(buf).map(Vec::len) else {
                return Status::NotFound as i32;
            };
            code(memory::write_u32(&mut c, size, len as u32))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, T>, buf: i32, start: i32, len: i32, dp: i32, ds: i32| {
            let Some(buf) = BufferType::from_i32(buf) else {
                return Status::BadArgument as i32;
            };
            let data = match memory::read(&mut c, dp, ds) {
                Ok(d) => d,
                Err(s) => return s as i32,
            };
            let (start, len) = (start as u32 as usize, len as u32 as usize);
            let ctx = c.data_mut().context();
            let max = ctx.body_max.unwrap_or(MAX_BODY).min(MAX_BODY);
            if ctx.splice(buf, start, len, &data, max) {
                Status::Ok as i32
            } else {
                Status::BadArgument as i32
            }
        },
    )?;
    linker.func_wrap_async(
        M,
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, T>, (map, rp, rs): (i32, i32, i32)| {
            Box::new(async move {
                let Some(map) = MapType::from_i32(map) else {
                    return Ok(Status::BadArgument as i32);
                };
                let Some(pairs) = c.data_mut().context().map(map) else {
                    return Ok(Status::NotFound as i32);
                };
                let bytes = abi::encode_map(pairs.iter().map(|(k, v)| (&k[..], &v[..])));
                Ok(code(memory::give(&mut c, &bytes, rp, rs).await?))
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "proxy_get_header_map_value",
        |mut c: Caller<'_, T>, (map, kp, ks, rp, rs): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let Some(map) = MapType::from_i32(map) else {
                    return Ok(Status::BadArgument as i32);
                };
                let key = match memory::read(&mut c, kp, ks) {
                    Ok(k) => k,
                    Err(s) => return Ok(s as i32),
                };
                let Some(value) = c
                    .data_mut()
                    .context()
                    .map_value(map, &key)
                    .map(<[u8]>::to_vec)
                else {
                    return Ok(Status::NotFound as i32);
                };
                Ok(code(memory::give(&mut c, &value, rp, rs).await?))
            })
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, T>, map: i32, ptr: i32, len: i32| {
            let Some(map) = MapType::from_i32(map) else {
                return Status::BadArgument as i32;
            };
            let bytes = match memory::read(&mut c, ptr, len) {
                Ok(b) => b,
                Err(s) => return s as i32,
            };
            match abi::decode_map(&bytes) {
                Ok(pairs) if c.data_mut().context().map(map).is_some() => {
                    c.data_mut().context().set_map(map, pairs);
                    Status::Ok as i32
                }
                Ok(_) => Status::NotFound as i32,
                Err(_) => Status::SerializationFailure as i32,
            }
        },
    )?;
    for (name, op) in [
        ("proxy_add_header_map_value", 0u8),
        ("proxy_replace_header_map_value", 1),
    ] {
        linker.func_wrap(
            M,
            name,
            move |mut c: Caller<'_, T>, map: i32, kp: i32, ks: i32, vp: i32, vs: i32| {
                let Some(map) = MapType::from_i32(map) else {
                    return Status::BadArgument as i32;
                };
                let (key, value) =
                    match (memory::read(&mut c, kp, ks), memory::read(&mut c, vp, vs)) {
                        (Ok(k), Ok(v)) => (k, v),
                        (Err(s), _) | (_, Err(s)) => return s as i32,
                    };
                let ctx = c.data_mut().context();
                let done = if op == 0 {
                    ctx.add(map, &key, &value)
                } else {
                    ctx.replace(map, &key, &value)
                };
                if done {
                    Status::Ok as i32
                } else {
                    Status::NotFound as i32
                }
            },
        )?;
    }
    linker.func_wrap(
        M,
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, T>, map: i32, kp: i32, ks: i32| {
            let Some(map) = MapType::from_i32(map) else {
                return Status::BadArgument as i32;
            };
            match memory::read(&mut c, kp, ks) {
                Ok(key) if c.data_mut().context().remove(map, &key) => Status::Ok as i32,
                Ok(_) => Status::NotFound as i32,
                Err(s) => s as i32,
            }
        },
    )?;
    linker.func_wrap_async(
        M,
        "proxy_get_property",
        |mut c: Caller<'_, T>, (pp, ps, rp, rs): (i32, i32, i32, i32)| {
            Box::new(async move {
                let path = match memory::read(&mut c, pp, ps) {
                    Ok(p) => abi::property_path(&p),
                    Err(s) => return Ok(s as i32),
                };
                let Some(value) = c
                    .data_mut()
                    .context()
                    .properties
                    .get(path.as_str())
                    .cloned()
                else {
                    return Ok(Status::NotFound as i32);
                };
                Ok(code(memory::give(&mut c, &value, rp, rs).await?))
            })
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_property",
        |mut c: Caller<'_, T>, pp: i32, ps: i32, vp: i32, vs: i32| {
            let (path, value) = match (memory::read(&mut c, pp, ps), memory::read(&mut c, vp, vs)) {
                (Ok(p), Ok(v)) => (abi::property_path(&p), v),
                (Err(s), _) | (_, Err(s)) => return s as i32,
            };
            let props = &mut c.data_mut().context().properties;
            // A module's own properties are bounded in number and in bytes all together: the
            // same MiB of its memory set 256 times would otherwise hold 256 MiB of the node's.
            let replaced = props.get(path.as_str()).map_or(0, |v| v.len() + path.len());
            let total: usize = props.iter().map(|(k, v)| k.len() + v.len()).sum();
            let after = total - replaced + path.len() + value.len();
            if value.len() > MAX_VALUE
                || after > MAX_PROPERTY_BYTES
                || (props.len() >= 256 && replaced == 0)
            {
                return Status::BadArgument as i32;
            }
            props.insert(path.into(), value);
            Status::Ok as i32
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_send_local_response",
        |mut c: Caller<'_, T>,
         status: i32,
         _dp: i32,
         _ds: i32,
         bp: i32,
         bs: i32,
         hp: i32,
         hs: i32,
         _grpc: i32| {
            let (body, headers) = match (memory::read(&mut c, bp, bs), memory::read(&mut c, hp, hs))
            {
                (Ok(b), Ok(h)) => (b, h),
                (Err(s), _) | (_, Err(s)) => return s as i32,
            };
            let headers = if headers.is_empty() {
                Vec::new()
            } else {
                match abi::decode_map(&headers) {
                    Ok(h) => h,
                    Err(_) => return Status::SerializationFailure as i32,
                }
            };
            let Ok(status) = u16::try_from(status) else {
                return Status::BadArgument as i32;
            };
            if !(200..=599).contains(&status) || body.len() > MAX_VALUE {
                return Status::BadArgument as i32;
            }
            c.data_mut().context().local_response = Some(LocalResponse {
                status,
                headers,
                body,
            });
            Status::Ok as i32
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_effective_context",
        |mut c: Caller<'_, T>, id: i32| {
            if c.data_mut().context().set_effective(id as u32) {
                Status::Ok as i32
            } else {
                Status::BadArgument as i32
            }
        },
    )?;
    super::calls::link(linker)?;
    super::shared::link(linker)
}

/// Defines every `env` function `module` imports that [`link`] does not serve, answering
/// UNIMPLEMENTED (upload checked that each is one of the ABI's: `imports.rs`).
pub fn stub_remaining<T: ProxyHost>(
    linker: &mut Linker<T>,
    module: &Module,
) -> wasmtime::Result<()> {
    for import in module.imports() {
        let name = import.name();
        if import.module() != "env"
            || SERVED.contains(&name)
            || super::shared::SERVED.contains(&name)
            || super::shared::queues::SERVED.contains(&name)
        {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        linker.func_new("env", import.name(), ty, |_, _, results| {
            if let Some(r) = results.first_mut() {
                *r = Val::I32(Status::Unimplemented as i32);
            }
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
