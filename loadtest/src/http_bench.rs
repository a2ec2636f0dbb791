//! Scenario `http`: a plugin making one outbound HTTP call per request (the `hostile` example's
//! `fetch` mode: one GET to its config's `url`, then a 200 of its own) vs the same GET sent
//! directly through the same client code (the tenant's `TenantHttp`: allow-list, egress policy,
//! quotas, pooled keep-alive connections), back to back in one run, against a small HTTP/1.1
//! server on loopback started here on its own thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_metrics::Metrics;
use wharf_plugins::bindings::wharf::plugin::http::OutgoingRequest;
use wharf_plugins::capabilities::http::Http;
use wharf_plugins::capabilities::networking::NetworkSettings;
use wharf_plugins::capabilities::CapabilitySettings;
use wharf_plugins::types::RequestAction;
use wharf_tenancy::outbound::OutboundHost;
use wharf_tenancy::Quotas;

use crate::host_call::{block_on, compare, tenant_capabilities, PluginCall};

/// What the server answers every request with.
const BODY: &str = r#"{"active":true,"sub":"bench","scope":"read"}"#;

pub(crate) fn run(bytes: Vec<u8>, iterations: usize) -> anyhow::Result<()> {
    let server = serve()?;
    let url = format!("http://{server}/introspect");
    block_on(async move {
        let metrics = Arc::new(Metrics::new());
        // Loopback is internal: the egress policy refuses it unless the operator allows it.
        let settings = CapabilitySettings {
            networking: NetworkSettings {
                allow: vec!["127.0.0.0/8".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let quotas = Quotas {
            http: wharf_tenancy::HttpQuotas {
                requests_per_second: 1_000_000,
                ..Default::default()
            },
            ..Quotas::default()
        };
        let caps = tenant_capabilities(settings, &quotas, &metrics)?;
        let allowed = vec![OutboundHost::parse(&format!("http://{server}"))?];
        let plugin = PluginCall::new(
            "hostile",
            &bytes,
            &metrics,
            caps.clone(),
            &[("mode", "fetch"), ("url", &url)],
            allowed.clone(),
            &[],
        )?;
        // The plugin's call must have succeeded, or the loop would time an error path.
        match plugin.once().await? {
            RequestAction::Respond(reply)
                if reply.body.starts_with(b"{\"ok\":1,\"status\":200") => {}
            other => anyhow::bail!("the plugin's fetch failed: {other:?}"),
        }
        let http = caps
            .get::<Http>()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (url, allowed) = (url.as_str(), allowed.as_slice());
        let direct = move || async move {
            let req = OutgoingRequest {
                method: "GET".into(),
                url: url.to_string(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
            };
            let resp = http
                .send(req, allowed, Duration::from_secs(1))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(resp.status == 200, "direct GET: status {}", resp.status);
            Ok(())
        };
        compare("GET", iterations, direct, &plugin).await
    })
}

/// A keep-alive HTTP/1.1 server answering every request 200 with [`BODY`] (requests without a
/// body, as the benchmark sends), on its own thread so it does not share the measured one.
fn serve() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = {
        let _in_rt = rt.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    std::thread::spawn(move || {
        rt.block_on(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(answer(conn));
            }
        })
    });
    Ok(addr)
}

async fn answer(mut conn: tokio::net::TcpStream) {
    let _ = conn.set_nodelay(true);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if conn.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}
