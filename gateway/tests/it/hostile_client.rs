//! A hostile client (no tenant, no key) against the proxy's listeners: opening connections as
//! fast as it can, plain or TLS, never sending a request. Its address's budget closes them right
//! after accept, before any handshake or read; another address is not affected.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::tls::{acme_over_https_configured, https_get_from, AcmeOverHttps};
use crate::support::*;

fn refused_count(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("wharf_client_connections_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or("0")
        .parse()
        .unwrap()
}

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
    let refused = refused_count(&metrics, "new_connection_rate");
    assert!(refused >= 16, "{refused}");
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_from("127.0.0.1", gw.proxy).await, Some(200));
}

/// Connections one address holds open at once are capped: idle ones (a slow sender that never
/// finishes its request) cannot pile up. The one over the cap is closed before it is served;
/// another address is served; closing one makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_connections_than_its_cap() {
    let (url, _, _up) = acme_routed(StoreKind::Sqlite).await;
    let gw = Wharf::start_configured(
        &url,
        "[clients]\nnew_connections_per_second = 0\nmax_connections_per_address = 3",
        &[],
    )
    .await;
    let open_from = |from: &'static str| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut s = socket.connect(gw.proxy).await.unwrap();
        // Half a request, as a slow sender would.
        s.write_all(b"GET / HTTP/1.1\r\nHost: acme").await.unwrap();
        s
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open_from("127.0.0.2").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The fourth from that address is closed unanswered, at once.
    let mut fourth = open_from("127.0.0.2").await;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "{closed:?} {buf:?}"
    );
    // Another address is served meanwhile.
    assert_eq!(get_from("127.0.0.3", gw.proxy).await, Some(200));
    // One of the three finishes its request: the address may open another.
    let mut first = held.remove(0);
    first
        .write_all(b".test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    first.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get_from("127.0.0.2", gw.proxy).await, Some(200));
    assert!(refused_count(&gw.metrics().await, "open_connections") >= 1);
}

/// A raw upstream that answers one request and hands back the head it received.
async fn capturing_upstream() -> (SocketAddr, tokio::task::JoinHandle<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), l.accept())
            .await
            .unwrap()
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "upstream saw EOF before a whole head");
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .await
            .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_lookalikes_with_underscores_never_reach_the_upstream() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let (up, head) = capturing_upstream().await;
    tenant_with_route(
        &store,
        "acme",
        &["acme.test"],
        route("all", "/", &[&up.to_string()]),
    )
    .await;
    let gw = Wharf::start(&url).await;
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\n\
          Content_Length: 0\r\nX_Forwarded_For: 10.9.9.9\r\nX_Api_Version: 2\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let head = head.await.unwrap().to_ascii_lowercase();
    for gone in [
        "transfer_encoding",
        "content_length",
        "x_forwarded_for",
        "10.9.9.9",
    ] {
        assert!(!head.contains(gone), "{gone} reached the upstream:\n{head}");
    }
    assert!(head.contains("content-length: 5"), "{head}");
    assert!(
        head.contains("x_api_version: 2"),
        "other underscores pass:\n{head}"
    );
}

/// A client that opens a TLS connection and never finishes its hello (slowloris on the
/// handshake) is cut at the head deadline: it cannot hold a connection and its task for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_never_finished_is_cut_at_the_head_deadline() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    let AcmeOverHttps { gw, tls_addr, .. } = acme_over_https_configured(
        &url,
        &store,
        &up.target(),
        "handshake CA",
        "[clients]\nrequest_head_timeout_seconds = 1",
    )
    .await;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(tls_addr).await.unwrap();
    // The first bytes of a TLS record header, then nothing.
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the stalled handshake was never cut");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut after {:?} (head deadline 1 s)",
        started.elapsed()
    );
    drop(gw);
}
