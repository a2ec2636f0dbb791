//! Graceful upgrade: a new `wharf` process takes the listening sockets over from the running one,
//! so replacing the binary or its bootstrap file never refuses a connection.
//!
//! Pingora moves its proxy and HTTPS sockets (the old process, on SIGQUIT, sends them over a Unix
//! socket, keeps accepting on them for 5 s, then drains). The admin listener is Wharf's own, so it
//! travels in the same table under its address (`admin_listener`).
//!
//! A serving node records its pid and start time in `wharf.pid` in its data dir. `wharf upgrade`
//! loads its whole config (store, plugins, certificates) *before* it signals the process recorded
//! there: a new binary or config that cannot start never takes the running one down. The start
//! time guards against signalling an unrelated process that reused a stale pid.
// The workspace denies unsafe code; this module needs it: the handed-over listening sockets arrive as raw file descriptors.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pingora_core::server::{ExecutionPhase, ListenFds, ShutdownWatch};
use tokio::sync::broadcast::{self, error::RecvError};

/// Where a node keeps its pid and receives sockets during an upgrade.
#[derive(Debug, Clone)]
pub struct Handover {
    pid_file: PathBuf,
    /// Pingora's upgrade socket (`ServerConf::upgrade_sock`): one per data dir, so nodes sharing
    /// a machine never hand sockets to each other.
    pub socket: PathBuf,
}

/// The running process `wharf upgrade` takes over from.
#[derive(Debug, Clone, Copy)]
pub struct Predecessor {
    pub pid: i32,
}

impl Handover {
    pub fn in_dir(data_dir: &Path) -> Handover {
        Handover {
            pid_file: data_dir.join("wharf.pid"),
            socket: data_dir.join("upgrade.sock"),
        }
    }

    /// Records this process as the node serving from this data dir (written whole, then renamed).
    pub fn record_self(&self) -> anyhow::Result<()> {
        let pid = std::process::id() as i32;
        let started = start_time(pid).context("reading this process's start time")?;
        if let Some(dir) = self.pid_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.pid_file.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{pid} {started}\n"))?;
        std::fs::rename(&tmp, &self.pid_file)
            .with_context(|| format!("writing {}", self.pid_file.display()))
    }

    /// The node recorded in the pid file, if it still runs (same pid *and* start time).
    pub fn predecessor(&self) -> anyhow::Result<Predecessor> {
        let path = self.pid_file.display();
        let text = std::fs::read_to_string(&self.pid_file).with_context(|| {
            format!("no running node to upgrade: cannot read {path} (start one with `wharf serve`)")
        })?;
        let mut fields = text.split_whitespace();
        let (Some(pid), Some(started)) = (fields.next(), fields.next()) else {
            bail!("{path} is malformed: expected `PID START_TIME`");
        };
        let pid: i32 = pid.parse().with_context(|| format!("{path}: bad pid"))?;
        let started: u64 = started
            .parse()
            .with_context(|| format!("{path}: bad start time"))?;
        if start_time(pid).ok() != Some(started) {
            bail!("no running node to upgrade: process {pid} from {path} has exited");
        }
        if pid == std::process::id() as i32 {
            bail!("{path} names this process");
        }
        Ok(Predecessor { pid })
    }

    /// Tells the predecessor to hand its sockets over, once this process listens for them: the
    /// old process gives up after a few connection attempts, so it is signalled only when the
    /// upgrade socket exists (Pingora creates it inside `Server::bootstrap`, which blocks).
    pub fn signal_when_listening(&self, old: Predecessor) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", self.socket.display())),
        }
        let socket = self.socket.clone();
        std::thread::Builder::new()
            .name("wharf-upgrade".into())
            .spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !socket.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if !socket.exists() {
                    // Signalled now, the old node would give up its sockets to no one and stop.
                    eprintln!(
                        "wharf: {} never appeared; process {} keeps serving",
                        socket.display(),
                        old.pid
                    );
                    return;
                }
                if let Err(e) = kill(Pid::from_raw(old.pid), Signal::SIGQUIT) {
                    eprintln!("wharf: cannot signal process {} to hand over: {e}", old.pid);
                }
            })?;
        Ok(())
    }
}

/// Where this process's admin listener comes from.
pub enum AdminSocket {
    Ready(TcpListener),
    /// An upgrade from a node that did not hand its admin socket over (a version before it
    /// did): bind the address once that node lets go of it, then enter it in the table.
    WhenFree(String, Option<ListenFds>),
}

impl AdminSocket {
    /// The listener, waiting up to `patience` for an address the previous process still holds.
    pub async fn listener(self, patience: Duration) -> io::Result<TcpListener> {
        match self {
            AdminSocket::Ready(l) => Ok(l),
            AdminSocket::WhenFree(addr, fds) => {
                tracing::warn!("the previous process kept {addr}: binding it once free");
                let l = bind_when_free(&addr, patience).await?;
                if let Some(fds) = fds {
                    fds.lock().add(addr, l.try_clone()?.into_raw_fd());
                }
                Ok(l)
            }
        }
    }
}

/// The admin listener for this process: the one the predecessor handed over under `key`, or the
/// one bound at start, which is then entered in the table so the next upgrade passes it on.
pub fn admin_listener(
    fds: Option<&ListenFds>,
    key: &str,
    bound: Option<TcpListener>,
) -> io::Result<AdminSocket> {
    let inherited = fds.and_then(|f| f.lock().get(key).copied());
    match (inherited, bound) {
        (Some(fd), _) => {
            // SAFETY: the table owns `fd` (an open listening socket) for the life of the process;
            // it is only borrowed here to duplicate it, so the table's copy stays valid to pass on.
            let owned: OwnedFd = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
            Ok(AdminSocket::Ready(TcpListener::from(owned)))
        }
        (None, Some(listener)) => {
            if let Some(fds) = fds {
                // The table keeps its own duplicate: closing ours on shutdown must not close it.
                let copy = listener.try_clone()?.into_raw_fd();
                fds.lock().add(key.to_string(), copy);
            }
            Ok(AdminSocket::Ready(listener))
        }
        (None, None) => Ok(AdminSocket::WhenFree(key.to_string(), fds.cloned())),
    }
}

/// Binds `addr`, retrying while another process still holds it, for at most `patience`.
pub async fn bind_when_free(addr: &str, patience: Duration) -> io::Result<TcpListener> {
    let deadline = Instant::now() + patience;
    loop {
        match TcpListener::bind(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Completes once this process handed its sockets to a new one and its shutdown began; never
/// after a plain SIGTERM, so a draining node still answers `/readyz` with 503. The admin API
/// stops accepting then: the new process answers on the same socket.
pub async fn handed_over(
    phases: Option<broadcast::Receiver<ExecutionPhase>>,
    mut shutdown: ShutdownWatch,
) {
    let Some(mut phases) = phases else {
        return std::future::pending().await;
    };
    loop {
        match phases.recv().await {
            Ok(ExecutionPhase::GracefulUpgradeTransferringFds) => break,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return std::future::pending().await,
        }
    }
    let _ = shutdown.wait_for(|down| *down).await;
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
fn start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc stat"))
}

/// A listener bound outside tokio, moved onto this runtime.
pub fn to_tokio(l: std::net::TcpListener) -> std::io::Result<tokio::net::TcpListener> {
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_still_held_is_bound_once_released() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = held.local_addr().expect("addr").to_string();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(held);
        });
        let started = Instant::now();
        let l = bind_when_free(&addr, Duration::from_secs(10))
            .await
            .expect("bound");
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(l.local_addr().expect("addr").to_string(), addr);
        release.await.expect("released");
        // Still held past the patience: the error comes back.
        let err = bind_when_free(&addr, Duration::from_millis(300))
            .await
            .expect_err("held");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_recorded_node_is_found_and_a_stale_record_is_refused() {
        let dir = std::env::temp_dir().join(format!("wharf-upgrade-{}", std::process::id()));
        let h = Handover::in_dir(&dir);
        h.record_self().expect("record");
        // This process is recorded: the record names the caller itself.
        let err = h.predecessor().expect_err("self").to_string();
        assert!(err.contains("names this process"), "{err}");
        // A start time that does not match (pid reused) is refused.
        let pid = std::process::id();
        std::fs::write(dir.join("wharf.pid"), format!("{pid} 1\n")).expect("write");
        let err = h.predecessor().expect_err("stale").to_string();
        assert!(err.contains("has exited"), "{err}");
        std::fs::write(dir.join("wharf.pid"), "garbage").expect("write");
        assert!(h.predecessor().is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
