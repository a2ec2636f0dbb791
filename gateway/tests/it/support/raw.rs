//! Plain HTTP/1.1 GETs on a new connection each, that say how a request failed: what a load
//! balancer needs to know to retry it elsewhere.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a GET got no status.
#[derive(Debug, PartialEq)]
pub(crate) enum Miss {
    /// No listener: the connection was refused.
    Refused,
    /// Connected, but closed or reset before any answer byte (safe to retry an idempotent GET).
    NoAnswer,
    /// The answer started and broke off.
    Broken,
}

/// One GET / on a new connection.
pub(crate) async fn get(addr: SocketAddr) -> Result<u16, Miss> {
    get_path(addr, "/").await
}

pub(crate) async fn get_path(addr: SocketAddr, path: &str) -> Result<u16, Miss> {
    let mut s = TcpStream::connect(addr).await.map_err(|_| Miss::Refused)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|_| Miss::NoAnswer)?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out).await {
        Ok(_) | Err(_) if out.is_empty() => Err(Miss::NoAnswer),
        Ok(_) => std::str::from_utf8(&out)
            .ok()
            .and_then(|t| t.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or(Miss::Broken),
        Err(_) => Err(Miss::Broken),
    }
}
