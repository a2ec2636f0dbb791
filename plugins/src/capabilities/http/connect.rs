//! How a plugin's outbound connection is made: the name resolved by the node's resolver (kept
//! resolved while the tenant keeps using it), every address checked against the egress policy
//! before it is dialled (so a name re-pointed at loopback, a metadata service or a private range
//! is refused however it resolved before), and HTTPS verified against the node's roots with the
//! URL's host as the server name. hyper's pool reuses what this makes, per tenant and host.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::reclaim::{Mark, OpenConnections, Tracked};
use crate::capabilities::networking::{Answer, Dialing, Name};

/// Names one tenant keeps resolved for its plugins: the most recently used, this many.
const NAMES_KEPT: usize = 64;

/// How long a first lookup of a name may take (the request's own timeout may be shorter).
const FIRST_LOOKUP: Duration = Duration::from_secs(5);

/// A connection (TCP and TLS handshake) takes at most this long, even when hyper finishes it in
/// the background for its pool after the request that asked for it gave up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call at the connection cap waits for the idle connection it closed to let go.
const RECLAIM_WAIT: Duration = Duration::from_millis(500);

/// Why a connection was not made. The message is for the tenant's plugin: it names only what
/// the plugin asked for.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} does not resolve: {1}")]
    Unresolvable(String, String),
    #[error("cannot connect to {0}: {1}")]
    Refused(String, io::Error),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, io::Error),
    #[error("not an http(s) URL with a host")]
    BadUri,
    #[error("{0} connections are open (http_max_connections)")]
    TooMany(usize),
}

/// Makes a tenant's connections (cheap to clone: the pool holds one per connect).
#[derive(Clone)]
pub(super) struct Connector(Arc<Dialer>);

struct Dialer {
    dialing: Dialing,
    /// The tenant's open connections, in use and idle: a permit per connection.
    open: Arc<tokio::sync::Semaphore>,
    /// The same connections, for closing an idle one when a call needs its permit.
    conns: OpenConnections,
    max_open: usize,
    tls: tokio_rustls::TlsConnector,
    names: Mutex<VecDeque<Arc<Name>>>,
}

impl Connector {
    pub(super) fn new(
        dialing: Dialing,
        tls: Arc<rustls::ClientConfig>,
        max_open: usize,
    ) -> Connector {
        Connector(Arc::new(Dialer {
            dialing,
            open: Arc::new(tokio::sync::Semaphore::new(max_open)),
            conns: OpenConnections::default(),
            max_open,
            tls: tls.into(),
            names: Mutex::new(VecDeque::new()),
        }))
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.0.clone();
        Box::pin(async move {
            let what = uri.to_string();
            tokio::time::timeout(CONNECT_TIMEOUT, dialer.connect(uri))
                .await
                .unwrap_or_else(|_| {
                    Err(ConnectError::Refused(what, io::ErrorKind::TimedOut.into()))
                })
        })
    }
}

impl Dialer {
    async fn connect(&self, uri: Uri) -> Result<Conn, ConnectError> {
        // Taken before anything is resolved or dialled; held by the connection until it closes.
        let slot = match self.open.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => self
                .reclaim()
                .await
                .ok_or(ConnectError::TooMany(self.max_open))?,
        };
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or(ConnectError::BadUri)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut refusal = None;
        let allowed: Vec<SocketAddr> = self
            .addrs(host)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .filter(|a| match self.dialing.policy.check(*a) {
                Ok(()) => true,
                Err(e) => {
                    refusal.get_or_insert(e);
                    false
                }
            })
            .collect();
        let Some(first) = allowed.first() else {
            let why = refusal.map_or_else(|| "no address".to_string(), |e| e.to_string());
            return Err(ConnectError::Forbidden(format!("{host}: {why}")));
        };
        let mut last = io::Error::other("no address");
        let mut tcp = None;
        for addr in &allowed {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| ConnectError::Refused(first.to_string(), last))?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(Conn {
                io: TokioIo::new(Stream::Plain(tcp)),
                tracked: self.conns.track(),
                _slot: slot,
            });
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| ConnectError::BadUri)?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Tls(host.to_string(), e))?;
        Ok(Conn {
            io: TokioIo::new(Stream::Tls(Box::new(tls))),
            tracked: self.conns.track(),
            _slot: slot,
        })
    }

    /// A permit given back by the connection idle the longest, closed for it; `None` when all
    /// are in use (or another call took the permit first).
    async fn reclaim(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if !self.conns.close_longest_idle() {
            return None;
        }
        tokio::time::timeout(RECLAIM_WAIT, self.open.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// The addresses `host` stands for now: itself when it is an IP, else the resolver's answer
    /// (waiting for the first one).
    async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, ConnectError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let name = self.keep(host);
        if name.answer() == Answer::Pending {
            let resolver = &self.dialing.resolver;
            resolver
                .settled(std::slice::from_ref(&name), FIRST_LOOKUP)
                .await;
        }
        match name.answer() {
            Answer::Resolved(a) | Answer::Stale(a) if !a.is_empty() => Ok(a.to_vec()),
            Answer::Failed(why) => Err(ConnectError::Unresolvable(host.to_string(), why)),
            _ => Err(ConnectError::Unresolvable(
                host.to_string(),
                "no answer".into(),
            )),
        }
    }

    /// The name, kept resolved in the background while it is among the tenant's most recently
    /// used: later requests find an answer without waiting.
    fn keep(&self, host: &str) -> Arc<Name> {
        let mut names = self.names.lock();
        if let Some(i) = names.iter().position(|n| n.host == host) {
            let name = names
                .remove(i)
                .unwrap_or_else(|| self.dialing.resolver.watch(host));
            names.push_front(name.clone());
            return name;
        }
        let name = self.dialing.resolver.watch(host);
        names.push_front(name.clone());
        names.truncate(NAMES_KEPT);
        name
    }
}

/// A connection as hyper's client wants it, and its place among the tenant's open connections.
pub(super) struct Conn {
    io: TokioIo<Stream>,
    tracked: Arc<Tracked>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new().extra(Mark(self.tracked.clone()))
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.tracked.closed(cx) {
            // Closed for another call: the end of the stream, as if the server had closed it.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.tracked.writing() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
