//! The threads that run tenants' wasm, apart from the proxy's I/O threads: a busy plugin can
//! then never delay another tenant's plugin-free request, and the operating system can favour
//! the proxy (plugin threads run at a lower priority, `nice`). (A call's first time slice may
//! run on the caller's thread when the CPU is uncontended: see `PluginInstance::call`.)
// The workspace denies unsafe code; this module needs it: the plugin threads' priority is set through libc.
#![allow(unsafe_code)]

use tokio::runtime::{Builder, Runtime};

/// The plugin runtime's own tokio runtime. `threads` 0: one per core.
pub(crate) fn build(threads: usize, nice: i32) -> std::io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(thread_count(threads))
        .thread_name("wharf-plugin")
        // A poll here can last a whole time slice (one or two epoch ticks of wasm): new calls
        // (injected from the proxy's threads) and I/O completions are looked at after every
        // poll, not every 61 (tokio's default), or they wait behind dozens of slices.
        .global_queue_interval(1)
        .event_interval(1)
        .on_thread_start(move || lower_priority(nice))
        .enable_all()
        .build()
}

/// CPU slots (plugins executing at once) for `threads`: one per core by default.
pub(crate) fn thread_count(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

/// Lowers the calling thread's priority (Linux: per-thread nice). Raising niceness needs no
/// privilege; failure only costs the proxy's priority, so it is logged, not fatal.
pub(crate) fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority have no memory-safety preconditions.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice)
        };
        if rc != 0 {
            tracing::warn!(
                "cannot lower plugin thread priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
