//! A total deadline for each HTTP/1 request head. Pingora times each read of a head on its own
//! (60 s), so a client sending one byte a second holds a connection, and its buffer, for as long
//! as it likes. Each accepted connection's stream is wrapped here: the clock starts at the first
//! byte of a head and the proxy stops it once the head is parsed (`early_request_filter`), then
//! rearms it when the request is done; a head not complete in time fails the read and Pingora
//! closes the connection. HTTP/2 (by ALPN or h2c's preface) is not timed here: its streams are
//! Pingora's h2 sessions, with their own idle timeout.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_proxy::Session;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where a connection's head clock stands, shared by its stream and its requests.
pub struct HeadClock {
    limit: Duration,
    state: Mutex<Clock>,
}

#[derive(Clone, Copy)]
enum Clock {
    /// Between requests: the next byte read starts a head.
    Waiting,
    /// A head is being read and must be complete by then.
    Running(Instant),
    /// A request is being served.
    Stopped,
    /// The connection speaks HTTP/2 (h2c): no HTTP/1 heads.
    Off,
}

impl HeadClock {
    /// The proxy parsed the head.
    pub fn head_done(&self) {
        let mut s = self.state.lock();
        if let Clock::Running(_) | Clock::Waiting = *s {
            *s = Clock::Stopped;
        }
    }

    /// The request is done: the next bytes are the next request's head.
    pub fn next_head(&self) {
        let mut s = self.state.lock();
        if !matches!(*s, Clock::Off) {
            *s = Clock::Waiting;
        }
    }
}

/// A client connection whose request heads are timed.
pub struct Timed {
    inner: Stream,
    clock: Arc<HeadClock>,
    sleep: Pin<Box<Sleep>>,
    /// How many of the connection's first bytes matched the HTTP/2 preface, while they all
    /// have; `None` once decided. Only the whole preface turns the clock off: a head whose
    /// first byte is `P` (POST, PUT) is still timed however it is trickled.
    preface_matched: Option<usize>,
}

impl fmt::Debug for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timed").field("inner", &self.inner).finish()
    }
}

/// The connection's stream, timed unless it negotiated HTTP/2 or `limit` is zero.
pub fn wrap(inner: Stream, limit: Duration) -> Stream {
    if limit.is_zero() || inner.selected_alpn_proto() == Some(ALPN::H2) {
        return inner;
    }
    Box::new(Timed {
        inner,
        clock: Arc::new(HeadClock {
            limit,
            state: Mutex::new(Clock::Waiting),
        }),
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        preface_matched: Some(0),
    })
}

/// The head clock of the session's connection, when it has one.
pub fn clock(session: &Session) -> Option<&HeadClock> {
    let stream = session.stream()?;
    let timed = (**stream).as_any().downcast_ref::<Timed>()?;
    Some(&timed.clock)
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request head not complete in time")
}

impl AsyncRead for Timed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        let mut state = this.clock.state.lock();
        if let Some(matched) = this.preface_matched {
            let rest = &H2_PREFACE[matched..];
            let n = read.len().min(rest.len());
            this.preface_matched = if read[..n] != rest[..n] {
                None
            } else if matched + n == H2_PREFACE.len() {
                // h2c: HTTP/2 frames, never an HTTP/1 head.
                *state = Clock::Off;
                None
            } else {
                Some(matched + n)
            };
        }
        if !read.is_empty() {
            if let Clock::Waiting = *state {
                *state = Clock::Running(Instant::now() + this.clock.limit);
            }
        }
        let Clock::Running(deadline) = *state else {
            return res;
        };
        if Instant::now() >= deadline {
            return Poll::Ready(Err(timed_out()));
        }
        if res.is_pending() {
            this.sleep.as_mut().reset(deadline);
            if this.sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(timed_out()));
            }
        }
        res
    }
}

// Everything else passes through to the connection as it is.

impl AsyncWrite for Timed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Timed {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Timed {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Timed {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Timed {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Timed {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Timed {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Timed {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
