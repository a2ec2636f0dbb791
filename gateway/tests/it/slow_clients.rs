//! A hostile client that sends slowly or all at once: a request head trickled a byte at a time
//! is cut at the head deadline, a body under the minimum rate gets 408, and requests pipelined
//! on one connection are each answered, in order. Over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const PACED: &str = "[clients]\nnew_connections_per_second = 0\nmax_connections_per_address = 0\n\
                     request_head_timeout_seconds = 2\nrequest_body_min_bytes_per_second = 1000\n\
                     request_body_grace_seconds = 1\n";

async fn paced_gateway() -> (Wharf, Upstream) {
    let (url, _store, up) = acme_routed(StoreKind::Sqlite).await;
    (Wharf::start_configured(&url, PACED, &[]).await, up)
}

/// Everything the gateway sends until it closes (or `limit` passes).
async fn read_all(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_byte_at_a_time_is_cut_at_the_head_deadline() {
    let (gw, _up) = paced_gateway().await;
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    // POST: its first byte alone also begins the HTTP/2 preface ("PRI * HTTP/2.0").
    let head =
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 0\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut closed_after = None;
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // A closed connection shows as EOF on read before a write fails.
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            closed_after = Some(started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let after = closed_after.expect("the connection was still open after 8 s of trickling");
    assert!(
        after >= Duration::from_millis(1800) && after < Duration::from_secs(4),
        "closed after {after:?}, the deadline is 2 s"
    );

    // Idle time between requests is not head time: a kept-alive client pausing 3 s is served.
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: acme.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_under_the_minimum_rate_gets_408() {
    let (gw, _up) = paced_gateway().await;
    // 100 bytes every 200 ms is 500 bytes/s, half the minimum: refused once the 1 s grace and
    // the bytes sent are used up (about 2 s in).
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let chunk = [b'x'; 100];
    let mut answer = String::new();
    while started.elapsed() < Duration::from_secs(8) {
        if s.write_all(&chunk).await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
    }
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer}",
        started.elapsed()
    );
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A body that stops outright is refused after the grace, not after Pingora's 60 s.
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_all(&mut s, Duration::from_secs(8)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A body at a fair pace is served whole.
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 20000\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..10 {
        s.write_all(&[b'y'; 2000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = read_all(&mut s, Duration::from_secs(8)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body_bytes\":20000"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() {
    let (url, _store, _up) = acme_routed(StoreKind::Sqlite).await;
    let gw = Wharf::start(&url).await;
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    let mut batch = String::new();
    for i in 1..=4 {
        let close = if i == 4 { "Connection: close\r\n" } else { "" };
        batch.push_str(&format!(
            "GET /p{i} HTTP/1.1\r\nHost: acme.test\r\n{close}\r\n"
        ));
    }
    // One write: all four heads arrive together.
    s.write_all(batch.as_bytes()).await.unwrap();
    let out = read_all(&mut s, Duration::from_secs(10)).await;
    let statuses = out.matches("HTTP/1.1 200").count();
    assert_eq!(statuses, 4, "{out}");
    let order: Vec<usize> = (1..=4)
        .map(|i| {
            out.find(&format!("\"path\":\"/p{i}\""))
                .expect("each answered")
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {out}");
}
