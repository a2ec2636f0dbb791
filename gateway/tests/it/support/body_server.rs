//! An upstream for body tests (axum, on a free loopback port): it counts the request bodies it
//! receives, of any length and framing (the echo server reads at most 1 MiB), and sends response
//! bodies of a chosen length, or a head and one piece and then nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::net::TcpListener;

pub(crate) struct BodyServer {
    pub addr: SocketAddr,
    /// Request body bytes received, over all requests.
    pub received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BodyServer {
    /// - `GET /big?n=N`: N bytes of `b`, with their content-length, sent 64 KiB at a time;
    /// - `GET /stall`: a chunked head and one piece, then nothing (for a minute);
    /// - `GET /text`: `upstream body`;
    /// - anything else: reads the body and answers `{"body_bytes": n, "body": "<its first
    ///   256 bytes>", "chunked": bool}`.
    pub(crate) async fn start() -> BodyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let seen = received.clone();
        let app = axum::Router::new().fallback(move |req: Request| answer(req, seen.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        BodyServer {
            addr,
            received,
            task,
        }
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for BodyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(req: Request, received: Arc<AtomicU64>) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    match path.as_str() {
        "/big" => {
            let n: usize = query
                .strip_prefix("n=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let pieces = (0..n.div_ceil(64 << 10)).map(move |i| {
                let len = (n - i * (64 << 10)).min(64 << 10);
                Ok::<_, std::io::Error>(Bytes::from(vec![b'b'; len]))
            });
            Response::builder()
                .header("content-length", n.to_string())
                .body(Body::from_stream(futures_util::stream::iter(pieces)))
                .unwrap()
        }
        "/stall" => {
            let first = futures_util::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"first piece"))
            });
            let never = futures_util::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                Ok::<_, std::io::Error>(Bytes::new())
            });
            Response::builder()
                .body(Body::from_stream(first.chain(never)))
                .unwrap()
        }
        "/text" => Response::new(Body::from("upstream body")),
        _ => {
            let chunked = req.headers().get("transfer-encoding").is_some();
            let mut stream = req.into_body().into_data_stream();
            let (mut n, mut prefix) = (0u64, Vec::new());
            while let Some(Ok(piece)) = stream.next().await {
                n += piece.len() as u64;
                received.fetch_add(piece.len() as u64, Ordering::SeqCst);
                let room = 256usize.saturating_sub(prefix.len());
                prefix.extend_from_slice(&piece[..room.min(piece.len())]);
            }
            let body = serde_json::json!({
                "body_bytes": n,
                "body": String::from_utf8_lossy(&prefix),
                "chunked": chunked,
            });
            Response::new(Body::from(body.to_string()))
        }
    }
}
