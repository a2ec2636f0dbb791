//! The WASI preview1 subset proxy-wasm modules import (docs/proxy-wasm-imports.md), as Envoy's
//! allow-list gives it: clocks and randomness, stdout/stderr into the tenant's log, empty
//! arguments and environment, no preopened directory (every file call: EBADF), `proc_exit` a trap
//! of the callback, `sched_yield` a no-op, `poll_oneoff` unsupported (a module that sleeps would
//! hold its VM). Nothing here reaches the node's files, sockets or environment.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::memory;

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const NOTSUP: i32 = 58;

/// Where a module's stdout and stderr go: the tenant's log, within its budget.
pub trait WasiLog {
    fn wasi_log(&mut self, fd: i32, line: &str);
}

/// Adds the subset to `linker` under `wasi_snapshot_preview1`.
pub fn link<T: WasiLog + Send + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut c: Caller<'_, T>, id: i32, _: i64, ret: i32| {
            let now = match id {
                // Realtime, and the monotonic clocks (the process's age is not the plugin's business).
                0..=3 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                _ => return INVAL,
            };
            errno(memory::write(&mut c, ret, &now.to_le_bytes()))
        },
    )?;
    linker.func_wrap(
        M,
        "random_get",
        |mut c: Caller<'_, T>, ptr: i32, len: i32| {
            if !(0..=(64 << 10)).contains(&len) {
                return INVAL;
            }
            let mut bytes = vec![0u8; len as usize];
            rand::fill(&mut bytes[..]);
            errno(memory::write(&mut c, ptr, &bytes))
        },
    )?;
    for sizes in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(M, sizes, |mut c: Caller<'_, T>, count: i32, size: i32| {
            errno(
                memory::write_u32(&mut c, count, 0)
                    .and_then(|()| memory::write_u32(&mut c, size, 0)),
            )
        })?;
    }
    for get in ["environ_get", "args_get"] {
        linker.func_wrap(M, get, |_: Caller<'_, T>, _: i32, _: i32| SUCCESS)?;
    }
    linker.func_wrap(
        M,
        "fd_write",
        |mut c: Caller<'_, T>, fd: i32, iovs: i32, n: i32, written: i32| {
            if fd != 1 && fd != 2 {
                return BADF;
            }
            if !(0..=64).contains(&n) {
                return INVAL;
            }
            let mut text = Vec::new();
            for i in 0..n {
                let Ok(iov) = memory::read(&mut c, iovs + 8 * i, 8) else {
                    return FAULT;
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                match memory::read(&mut c, ptr, len) {
                    Ok(b) => text.extend_from_slice(&b),
                    Err(_) => return FAULT,
                }
            }
            let line = String::from_utf8_lossy(&text);
            c.data_mut().wasi_log(fd, line.trim_end());
            errno(memory::write_u32(&mut c, written, text.len() as u32))
        },
    )?;
    linker.func_wrap(
        M,
        "proc_exit",
        |_: Caller<'_, T>, code: i32| -> wasmtime::Result<()> {
            wasmtime::bail!("the plugin exited (proc_exit {code})")
        },
    )?;
    linker.func_wrap(M, "sched_yield", |_: Caller<'_, T>| SUCCESS)?;
    linker.func_wrap(
        M,
        "poll_oneoff",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32| NOTSUP,
    )?;
    // No preopened directory, no file: every file call is EBADF.
    linker.func_wrap(M, "fd_prestat_get", |_: Caller<'_, T>, _: i32, _: i32| BADF)?;
    linker.func_wrap(
        M,
        "fd_prestat_dir_name",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32| BADF,
    )?;
    linker.func_wrap(M, "fd_close", |_: Caller<'_, T>, _: i32| BADF)?;
    linker.func_wrap(M, "fd_fdstat_get", |_: Caller<'_, T>, _: i32, _: i32| BADF)?;
    linker.func_wrap(
        M,
        "fd_fdstat_set_flags",
        |_: Caller<'_, T>, _: i32, _: i32| BADF,
    )?;
    linker.func_wrap(
        M,
        "fd_read",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32| BADF,
    )?;
    linker.func_wrap(
        M,
        "fd_seek",
        |_: Caller<'_, T>, _: i32, _: i64, _: i32, _: i32| BADF,
    )?;
    linker.func_wrap(
        M,
        "path_filestat_get",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32| BADF,
    )?;
    linker.func_wrap(
        M,
        "path_open",
        |_: Caller<'_, T>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i64,
         _: i64,
         _: i32,
         _: i32| BADF,
    )?;
    Ok(())
}

fn errno(r: Result<(), super::abi::Status>) -> i32 {
    match r {
        Ok(()) => SUCCESS,
        Err(_) => FAULT,
    }
}
