//! A hostile client (no tenant, no key) against the proxy's listeners: opening connections as
//! fast as it can, plain or TLS, never sending a request. Its address's budget closes them right
//! after accept, before any handshake or read; another address is not affected.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use support::tls::{acme_over_https_configured, https_get_from, AcmeOverHttps};
use support::*;

/// A GET from source address `from`: the status, or `None` when the connection closed unanswered.
async fn get_from(from: &str, to: SocketAddr) -> Option<u16> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s: TcpStream = socket.connect(to).await.ok()?;
    let _ = s
        .write_all(b"GET / HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    std::str::from_utf8(&out)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_opening_connections_is_cut_off_before_any_handshake() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    let AcmeOverHttps {
        gw, tls_addr, ca, ..
    } = acme_over_https_configured(
        &url,
        &store,
        &up.target(),
        "client CA",
        "[clients]\nnew_connections_per_second = 1\nnew_connections_burst = 5",
    )
    .await;
    let https = |from: &str| {
        let from = from.parse().unwrap();
        https_get_from(
            Some(from),
            tls_addr,
            &ca,
            "acme.test",
            "acme.test",
            &[b"http/1.1"],
        )
    };
    // (The readiness check spent one of 127.0.0.1's connections.)
    let mut answered = 0;
    let mut closed = 0;
    for _ in 0..20 {
        match get_from("127.0.0.1", gw.proxy).await {
            Some(200) => answered += 1,
            None => closed += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        (3..=5).contains(&answered),
        "the burst was served: {answered}"
    );
    assert!(closed >= 15, "the rest closed unanswered: {closed}");
    // TLS from the same address: closed before the handshake.
    let tls = https("127.0.0.1").await;
    assert!(tls.is_err(), "{tls:?}");
    // Another address is served meanwhile, over HTTP and HTTPS.
    for _ in 0..3 {
        assert_eq!(get_from("127.0.0.2", gw.proxy).await, Some(200));
    }
    assert!(matches!(https("127.0.0.2").await, Ok((_, _, 200, _))));
    let metrics = gw.metrics().await;
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wharf_client_connections_refused_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 16, "{refused}");
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_from("127.0.0.1", gw.proxy).await, Some(200));
}
