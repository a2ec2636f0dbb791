//! Protocols besides HTTP/1.1 request/response through the gateway, with real clients and
//! servers: WebSocket upgrades (a tungstenite echo server and client), HTTP/2 without TLS on the
//! plain listener (curl, prior knowledge), gRPC end to end (tonic).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;
use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::OnError;

/// A WebSocket server echoing every text message, prefixed.
async fn ws_echo() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        let _ = ws.send(Message::Text(format!("echo: {t}").into())).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_proxied_and_echoes() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let upstream = ws_echo().await;
    tenant_with_route(
        &store,
        "acme",
        &["acme.test"],
        route("ws", "/ws", &[&upstream]),
    )
    .await;
    // The same upstream behind a plugin: it runs on the upgrade request and its 101 answer,
    // never on the frames that follow.
    store
        .put_route("acme", route("wsp", "/wsp", &[&upstream]))
        .await
        .unwrap();
    attach_plugin(
        &store,
        "acme",
        "wsp",
        "tag",
        &example_plugin("add-header"),
        &[("response-header", "x-tagged"), ("response-value", "yes")],
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start(&url).await;
    for path in ["/ws/chat", "/wsp/chat"] {
        echo_three(&gw, path).await;
    }
}

async fn echo_three(gw: &Wharf, path: &str) {
    let mut req = format!("ws://{}{path}", gw.proxy)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", "acme.test".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    if path.starts_with("/wsp") {
        assert_eq!(resp.headers()["x-tagged"], "yes", "the plugin saw the 101");
    }
    for i in 0..3 {
        ws.send(Message::Text(format!("hello {i}").into()))
            .await
            .unwrap();
        let back = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, Message::Text(format!("echo: hello {i}").into()));
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_on_the_plain_listener_when_configured() {
    let (url, _, _up) = acme_routed(StoreKind::Sqlite).await;
    let curl = |gw: &Wharf| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .args(["-H", "Host: acme.test"])
            .arg(format!("http://{}/", gw.proxy))
            .output()
            .unwrap()
    };
    let gw = Wharf::start_configured(&url, "h2c = true", &[]).await;
    let out = curl(&gw);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // HTTP/1.1 still works on the same listener.
    assert_eq!(gw.get("acme.test", "/").await.status, 200);
    drop(gw);
    let gw = Wharf::start(&url).await;
    let out = curl(&gw);
    assert_ne!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "h2c is off by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_streaming_end_to_end_with_trailers() {
    use crate::support::grpc::{serve_echo, EchoClient};

    let upstream = serve_echo().await;
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    store
        .create_tenant("acme", "Acme", &["grpc.acme.test"])
        .await
        .unwrap();
    let mut r = route("echo", "/wharf.test.Echo", &[&upstream]);
    r.upstream_protocol = wharf_tenancy::UpstreamProtocol::Http2;
    store.put_route("acme", r).await.unwrap();
    attach_plugin(
        &store,
        "acme",
        "echo",
        "tag",
        &example_plugin("add-header"),
        &[("request-header", "x-plugin-saw"), ("request-value", "yes")],
        OnError::FailClosed,
    )
    .await;
    let gw = Wharf::start_configured(&url, "h2c = true", &[]).await;

    let mut client = EchoClient::connect(gw.proxy, "grpc.acme.test").await;
    assert_eq!(client.say("hi").await.unwrap(), "echo: hi (plugin: yes)");
    let (got, status) = client.count(3).await;
    assert_eq!(got, ["0", "1", "2"]);
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(
        status.message(),
        "counted to the end",
        "trailers arrived intact"
    );
}

/// An HTTP/2 connection that sends no request is closed after `http2_idle_timeout_seconds`
/// (Pingora would keep it forever): a client cannot hold connections without using them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (url, _) = fresh_store(StoreKind::Sqlite).await;
    // The client preface and an empty SETTINGS frame, then nothing: how long until it closes.
    async fn idle_until_closed(
        proxy: std::net::SocketAddr,
        wait: u64,
    ) -> Option<std::time::Duration> {
        let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let opened = std::time::Instant::now();
        let mut buf = vec![0u8; 4096];
        tokio::time::timeout(std::time::Duration::from_secs(wait), async {
            // The server's SETTINGS, its ACK, then GOAWAY and the close.
            while !matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {}
        })
        .await
        .ok()
        .map(|()| opened.elapsed())
    }
    let gw = Wharf::start_configured(
        &url,
        "h2c = true\n[clients]\nnew_connections_per_second = 0\nhttp2_idle_timeout_seconds = 1",
        &[],
    )
    .await;
    let idle = idle_until_closed(gw.proxy, 10)
        .await
        .expect("closed within 10 s");
    assert!(
        idle >= std::time::Duration::from_millis(900),
        "closed for idleness, not at once: {idle:?}"
    );
    // With the default (60 s) the same connection is still open 2 s later.
    drop(gw);
    let gw = Wharf::start_configured(&url, "h2c = true", &[]).await;
    assert_eq!(idle_until_closed(gw.proxy, 2).await, None);
}
