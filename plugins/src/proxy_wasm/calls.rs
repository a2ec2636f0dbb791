//! The proxy-wasm host functions that reach beyond the VM: `proxy_http_call` (queued in the
//! callback's context; the stream's driver sends it through the tenant's outbound HTTP once the
//! callback returns, and delivers the answer with `proxy_on_http_call_response`) and the calls
//! that let a paused stream go on.

use wasmtime::{Caller, Linker};

use super::abi::{self, Status};
use super::context::HttpCall;
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
            let call = HttpCall {
                token: 0,
                cluster: String::from_utf8_lossy(&cluster).into_owned(),
                headers,
                body,
                timeout_ms: timeout as u32,
            };
            match c.data_mut().context().dispatch(call) {
                Some(t) => code(memory::write_u32(&mut c, token, t)),
                // Too many calls waiting for this request.
                None => Status::BadArgument as i32,
            }
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
