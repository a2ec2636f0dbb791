//! The framework's ceiling: the smallest Pingora proxy that forwards every request to one
//! upstream, with the same thread count and timeouts as Wharf's benchmark node. Measured next to
//! Wharf in one run, it separates Wharf's own cost from Pingora's.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// Runs until killed (Pingora owns the process's runtimes).
pub(crate) fn run(
    listen: &str,
    upstream: SocketAddr,
    threads: usize,
    work_stealing: bool,
) -> anyhow::Result<()> {
    let conf = ServerConf {
        threads: threads.max(1),
        work_stealing,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        Bare { upstream },
        "bare",
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}
