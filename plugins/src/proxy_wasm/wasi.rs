//! The WASI preview1 subset proxy-wasm modules import (docs/proxy-wasm-imports.md), as Envoy's
//! allow-list gives it: clocks and randomness, stdout/stderr into the tenant's log, empty
//! arguments and environment, no preopened directory (every file call: EBADF), `proc_exit` a trap
//! of the callback, `sched_yield` a no-op, `poll_oneoff` short sleeps within the callback's deadline
//! (the VM is held meanwhile). Nothing here reaches the node's files, sockets or environment.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::memory;

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;

/// Where a module's stdout and stderr go: the tenant's log, within its budget.
pub trait WasiLog {
    fn wasi_log(&mut self, fd: i32, line: &str);
}

/// Adds the subset to `linker` under `wasi_snapshot_preview1`.
pub fn link<T: WasiLog + super::memory::GuestHandles + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
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
    linker.func_wrap_async(
        M,
        "poll_oneoff",
        |mut c: Caller<'_, T>, (subs, events, n, out): (i32, i32, i32, i32)| {
            Box::new(async move { Ok(poll_oneoff(&mut c, subs, events, n, out).await) })
        },
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

/// Longest one `poll_oneoff` sleeps: a Go runtime's `usleep` is microseconds; a module asking
/// for more gets this much and asks again, its callback's deadline still running.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_millis(10);

/// `poll_oneoff` for clock subscriptions (sleeps, bounded by [`MAX_SLEEP`] and the callback's
/// deadline, which keeps running); a file-descriptor subscription gets EBADF at once.
async fn poll_oneoff<T: super::memory::GuestHandles + Send>(
    c: &mut Caller<'_, T>,
    subs: i32,
    events: i32,
    n: i32,
    out: i32,
) -> i32 {
    const SUB: i32 = 48;
    const EVENT: i32 = 32;
    if !(1..=64).contains(&n) {
        return INVAL;
    }
    let Ok(bytes) = memory::read(c, subs, n * SUB) else {
        return FAULT;
    };
    let mut sleep = MAX_SLEEP;
    let mut answered = Vec::new();
    for sub in bytes.chunks_exact(SUB as usize) {
        let userdata = &sub[0..8];
        let (error, kind) = match sub[8] {
            0 => {
                let timeout = u64::from_le_bytes(sub[24..32].try_into().unwrap_or_default());
                let absolute = u16::from_le_bytes([sub[40], sub[41]]) & 1 == 1;
                let wait = if absolute {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    timeout.saturating_sub(now)
                } else {
                    timeout
                };
                sleep = sleep.min(std::time::Duration::from_nanos(wait));
                (0u16, 0u8)
            }
            k => (BADF as u16, k),
        };
        let mut event = [0u8; EVENT as usize];
        event[0..8].copy_from_slice(userdata);
        event[8..10].copy_from_slice(&error.to_le_bytes());
        event[10] = kind;
        answered.push(event);
    }
    if !sleep.is_zero() {
        tokio::time::sleep(sleep).await;
    }
    for (i, event) in answered.iter().enumerate() {
        if memory::write(c, events + EVENT * i as i32, event).is_err() {
            return FAULT;
        }
    }
    errno(memory::write_u32(c, out, answered.len() as u32))
}

fn errno(r: Result<(), super::abi::Status>) -> i32 {
    match r {
        Ok(()) => SUCCESS,
        Err(_) => FAULT,
    }
}
