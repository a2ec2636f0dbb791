//! A small real HTTP/1.1 server on loopback, plain or TLS (rustls with a test CA's certificate),
//! whose answers a test decides: what plugins' outbound requests reach. It counts connections
//! and requests, and keeps connections alive as a real service would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server got: the request line, headers (lowercase names) and body.
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

type Answer = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

pub(crate) struct HttpServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Plain HTTP on a free 127.0.0.1 port.
    pub(crate) async fn plain(
        answer: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpServer {
        Self::start(None, Arc::new(answer)).await
    }

    /// HTTPS with `chain_pem`/`key_pem`.
    pub(crate) async fn tls(
        chain_pem: &str,
        key_pem: &str,
        answer: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpServer {
        let certs = rustls_pemfile::certs(&mut chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .unwrap()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start(Some(acceptor), Arc::new(answer)).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>, answer: Arc<Answer>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                c.fetch_add(1, Ordering::SeqCst);
                let (tls, answer, r) = (tls.clone(), answer.clone(), r.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                serve(s, &*answer, &r).await;
                            }
                        }
                        None => serve(tcp, &*answer, &r).await,
                    }
                });
            }
        });
        HttpServer {
            addr,
            connections,
            requests,
            task,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    answer: &Answer,
    requests: &AtomicUsize,
) {
    let mut buf = Vec::new();
    loop {
        let Some(seen) = read_request(&mut s, &mut buf).await else {
            return;
        };
        requests.fetch_add(1, Ordering::SeqCst);
        let (status, body) = answer(&seen);
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if s.write_all(head.as_bytes()).await.is_err()
            || s.write_all(body.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Seen> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < end + len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}
