//! The HTTPS listener's TLS, terminated by the proxy's connection handler rather than by
//! Pingora's TLS listener: Pingora's listener settings offer ALPN `h2, http/1.1` (or one
//! custom protocol) only, and an ACME CA validating TLS-ALPN-01 (RFC 8737) needs `acme-tls/1`
//! negotiated besides them. So the listener is a plain TCP one, and each accepted connection
//! is handshaken here with the same rustls settings Pingora would build (TLS 1.2 and 1.3,
//! certificates from [`SniResolver`], in-memory session resumption, [`SniCapture`] recording
//! the server name), then handed to the HTTP server as Pingora's own TLS stream.
//!
//! A connection that negotiated `acme-tls/1` was a CA's validation: it got the challenge
//! certificate and is closed right after the handshake, never routed (RFC 8737 §3).

use std::sync::Arc;

use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::server::handshake_with_callback;
use pingora_core::protocols::{Ssl, Stream, ALPN};
use rustls::ServerConfig;

use super::resolver::{SniCapture, SniResolver, ACME_TLS_ALPN};

pub struct TlsTerminator {
    acceptor: Acceptor,
}

impl std::fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTerminator").finish_non_exhaustive()
    }
}

impl TlsTerminator {
    pub fn new(resolver: Arc<SniResolver>) -> anyhow::Result<TlsTerminator> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        // The server's order wins (rustls): a hello offering HTTP negotiates HTTP, so
        // `acme-tls/1` is chosen only when it is all a client offers.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Ok(TlsTerminator {
            acceptor: Acceptor::from_server_config(Arc::new(config)),
        })
    }

    /// The TLS stream to serve HTTP on, or `None` when the handshake failed or was a CA's
    /// TLS-ALPN-01 validation (either way the connection is closed).
    pub async fn accept(&self, stream: Stream) -> Option<Stream> {
        // The listener is TCP: each accepted connection is Pingora's L4 stream.
        let l4 = match stream.into_any().downcast::<L4Stream>() {
            Ok(l4) => *l4,
            Err(_) => {
                tracing::error!("TLS listener: not a TCP stream");
                return None;
            }
        };
        let tls = match handshake_with_callback(&self.acceptor, l4, &SniCapture).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!("TLS handshake failed: {e}");
                return None;
            }
        };
        if let Some(ALPN::Custom(p)) = tls.selected_alpn_proto() {
            if p.protocol() == ACME_TLS_ALPN {
                return None;
            }
        }
        Some(Box::new(tls))
    }
}
