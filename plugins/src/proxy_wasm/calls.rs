//! The proxy-wasm host functions that reach beyond the VM: `proxy_http_call` (queued in the
//! callback's context; the stream's driver sends it through the tenant's outbound HTTP once the
//! callback returns, and delivers the answer with `proxy_on_http_call_response`) and the calls
//! that let a paused stream go on.

use wasmtime::{Caller, Linker};

use super::abi::{self, Status};
use super::context::{Call, HttpCall, RedisCall, TICK_FLOOR};
use super::env::{code, ProxyHost, MAX_VALUE};
use super::memory;

/// `proxy_http_call` (queued for the driver, which sends it through the tenant's outbound HTTP
/// once the callback returns) and stream continuation.
pub(super) fn link<T: ProxyHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    const M: &str = "env";
    linker.func_wrap(
        M,
        "proxy_http_call",
        |mut c: Caller<'_, T>,
         up: i32,
         us: i32,
         hp: i32,
         hs: i32,
         bp: i32,
         bs: i32,
         _tp: i32,
         _ts: i32,
         timeout: i32,
         token: i32| {
            let read = |c: &mut Caller<'_, T>| -> Result<_, Status> {
                Ok((
                    memory::read(c, up, us)?,
                    memory::read(c, hp, hs)?,
                    memory::read(c, bp, bs)?,
                ))
            };
            let (cluster, headers, body) = match read(&mut c) {
                Ok(parts) => parts,
                Err(s) => return s as i32,
            };
            if body.len() > MAX_VALUE {
                return Status::BadArgument as i32;
            }
            let Ok(headers) = abi::decode_map(&headers) else {
                return Status::SerializationFailure as i32;
            };
            let call = |token| {
                Call::Http(HttpCall {
                    token,
                    cluster: String::from_utf8_lossy(&cluster).into_owned(),
                    headers,
                    body,
                    timeout_ms: timeout as u32,
                })
            };
            match c.data_mut().context().dispatch(call) {
                Some(t) => code(memory::write_u32(&mut c, token, t)),
                // Too many calls waiting for this request.
                None => Status::BadArgument as i32,
            }
        },
    )?;
    // Higress's Redis extension: the cluster and credentials name the tenant's own Redis here
    // (its namespace, allow-list and quotas), whatever the module says.
    linker.func_wrap(
        M,
        "proxy_redis_init",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            Status::Ok as i32
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_redis_call",
        |mut c: Caller<'_, T>, _np: i32, _ns: i32, qp: i32, qs: i32, token: i32| {
            let query = match memory::read(&mut c, qp, qs) {
                Ok(q) => q,
                Err(s) => return s as i32,
            };
            if query.len() > MAX_VALUE {
                return Status::BadArgument as i32;
            }
            let call = |token| Call::Redis(RedisCall { token, query });
            match c.data_mut().context().dispatch(call) {
                Some(t) => code(memory::write_u32(&mut c, token, t)),
                None => Status::BadArgument as i32,
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, T>, ms: i32| {
            let period = std::time::Duration::from_millis(u64::from(ms as u32));
            c.data_mut().context().tick_period =
                (!period.is_zero()).then(|| period.max(TICK_FLOOR));
            Status::Ok as i32
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_continue_stream",
        |mut c: Caller<'_, T>, _s: i32| {
            c.data_mut().context().resumed = true;
            Status::Ok as i32
        },
    )?;
    for name in ["proxy_resume_http_request", "proxy_resume_http_response"] {
        linker.func_wrap(M, name, |mut c: Caller<'_, T>| {
            c.data_mut().context().resumed = true;
            Status::Ok as i32
        })?;
    }
    Ok(())
}
