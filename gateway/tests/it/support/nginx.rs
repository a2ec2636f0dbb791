//! nginx from Debian as a TLS upstream on loopback, with a certificate from a test CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct Nginx {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// Answers `{"upstream": body}` over TLS with `chain_pem`/`key_pem` on a free loopback port.
    pub(crate) fn tls(chain_pem: &str, key_pem: &str, body: &str) -> Nginx {
        Self::tls_with(chain_pem, key_pem, body, None)
    }

    /// Like [`Nginx::tls`]; with `client_ca`, a client certificate that CA signed is required.
    pub(crate) fn tls_with(
        chain_pem: &str,
        key_pem: &str,
        body: &str,
        client_ca: Option<&str>,
    ) -> Nginx {
        let dir = with_certificate(chain_pem, key_pem);
        let verify_clients = match client_ca {
            Some(ca) => {
                std::fs::write(dir.join("client-ca.pem"), ca).expect("client ca");
                format!(
                    "  ssl_client_certificate {}/client-ca.pem;\n  ssl_verify_client on;\n",
                    dir.display()
                )
            }
            None => String::new(),
        };
        let server = format!(
            "{verify_clients}  location / {{ default_type application/json; return 200 '{{\"upstream\": \"{body}\"}}'; }}\n"
        );
        Self::start(dir, "", &server)
    }

    /// gRPC over TLS with HTTP/2 offered by ALPN (as a managed gRPC service is), passed to the
    /// h2c gRPC server at `backend`. Each request's protocol is logged: [`Nginx::protocols`].
    pub(crate) fn grpc_tls(chain_pem: &str, key_pem: &str, backend: &str) -> Nginx {
        let dir = with_certificate(chain_pem, key_pem);
        let server = format!(
            "  access_log {}/access.log protocol;\n  location / {{ grpc_pass grpc://{backend}; }}\n",
            dir.display()
        );
        Self::start(dir, " http2", &server)
    }

    /// The protocol of each request served so far (`HTTP/2.0`, ...), oldest first.
    pub(crate) fn protocols(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// nginx with one TLS server: `listen <addr> ssl<listen>` and the `server` directives.
    fn start(dir: PathBuf, listen: &str, server: &str) -> Nginx {
        for _ in 0..5 {
            let addr = super::free_addr();
            let conf = format!(
                "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n access_log off;\n log_format protocol '$server_protocol';\n\
                 client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
                 server {{\n  listen {addr} ssl{listen};\n  ssl_certificate {d}/cert.pem;\n  ssl_certificate_key {d}/key.pem;\n{server}\
                 }}\n}}\n",
                d = dir.display()
            );
            std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
            let mut child = Command::new("nginx")
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-p")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx (scripts/test installs it)");
            for _ in 0..50 {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Nginx { child, addr, dir };
                }
                if child.try_wait().expect("nginx status").is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
        }
        panic!(
            "nginx did not start; see its error.log under {}",
            dir.display()
        );
    }
}

/// A fresh directory for one nginx, holding its certificate chain and key.
fn with_certificate(chain_pem: &str, key_pem: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wharf-nginx-{}", super::unique_suffix()));
    std::fs::create_dir_all(&dir).expect("nginx dir");
    write(&dir, "cert.pem", chain_pem);
    write(&dir, "key.pem", key_pem);
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect(name);
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its worker on the way out (a SIGKILLed master leaves its
    /// worker running, orphaned, after the test); SIGKILL only if it has not exited in 2 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..40 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
