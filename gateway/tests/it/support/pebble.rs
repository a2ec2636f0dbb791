//! A real ACME server on loopback for tests: Debian's pebble (Let's Encrypt's test CA),
//! validating HTTP-01 against a gateway's plain listener and resolving names through a real
//! dnsmasq. Its own HTTPS uses a certificate from a test CA the gateway is told to trust
//! (`[acme] ca_bundle`), as an operator would for a private CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::Ca;

/// Addresses and files chosen before the gateway starts (its `[acme]` names them); pebble
/// itself starts once the gateway's port is known.
pub(crate) struct Pebble {
    child: Option<Child>,
    dir: PathBuf,
    pub listen: SocketAddr,
    pub management: SocketAddr,
    /// Pebble's HTTPS CA (PEM file), for `[acme] ca_bundle`.
    pub https_ca: PathBuf,
}

impl Pebble {
    pub(crate) fn prepare() -> Pebble {
        let dir = std::env::temp_dir().join(format!("wharf-pebble-{}", super::unique_suffix()));
        std::fs::create_dir_all(&dir).expect("pebble dir");
        let ca = Ca::new("pebble https test CA");
        let (chain, key, _) = ca.leaf(&["127.0.0.1", "localhost"]);
        std::fs::write(dir.join("cert.pem"), chain).expect("pebble cert");
        std::fs::write(dir.join("key.pem"), key).expect("pebble key");
        let https_ca = dir.join("ca.pem");
        std::fs::write(&https_ca, ca.cert.pem()).expect("pebble ca");
        let [listen, management] = super::free_addrs();
        Pebble {
            child: None,
            dir,
            listen,
            management,
            https_ca,
        }
    }

    /// The gateway's `[acme]` for this pebble, checking often (tests wait on it).
    pub(crate) fn acme_toml(&self) -> String {
        format!(
            "[acme]\ndirectory_url = \"{}\"\nca_bundle = \"{}\"\ncheck_interval_ms = 200\n\
             challenge_refresh_ms = 100\nretry_min_seconds = 1\nretry_max_seconds = 2\n",
            self.directory(),
            self.https_ca.display()
        )
    }

    pub(crate) fn directory(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// Starts pebble validating HTTP-01 on `http_port` (TLS-ALPN-01 on `tls_port`), resolving
    /// through `dns`, issuing certificates valid `validity_secs`.
    pub(crate) fn start(
        &mut self,
        http_port: u16,
        tls_port: u16,
        dns: SocketAddr,
        validity_secs: u64,
    ) {
        // Ports are picked free and bound later: another test's client socket may take one
        // meanwhile. The management port is only this harness's, so it moves; the main port
        // is in the gateway's config, so it is tried again once the other socket is gone.
        for attempt in 1..=5 {
            match self.spawn(http_port, tls_port, dns, validity_secs) {
                Ok(()) => return,
                Err(log) if attempt < 5 && log.contains("address already in use") => {
                    if log.contains(&self.management.to_string()) {
                        let [management, _] = super::free_addrs();
                        self.management = management;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(log) => panic!("pebble exited:\n{log}"),
            }
        }
    }

    /// One start; `Err`: pebble exited, with its log.
    fn spawn(
        &mut self,
        http_port: u16,
        tls_port: u16,
        dns: SocketAddr,
        validity_secs: u64,
    ) -> Result<(), String> {
        let config = self.dir.join("pebble.json");
        let json = serde_json::json!({"pebble": {
            "listenAddress": self.listen.to_string(),
            "managementListenAddress": self.management.to_string(),
            "certificate": self.dir.join("cert.pem"),
            "privateKey": self.dir.join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        std::fs::write(&config, json.to_string()).expect("pebble config");
        let log = std::fs::File::create(self.dir.join("pebble.log")).expect("pebble log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .arg("-strict")
            // No random sleeps before validating; real validation; no injected bad nonces, no
            // reused authorizations (a renewal validates again).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pebble (scripts/test installs it)");
        self.child = Some(child);
        let start = Instant::now();
        // Both interfaces up (pebble exits when either cannot bind, possibly after the other).
        let up = |a| std::net::TcpStream::connect(a).is_ok();
        while !(up(self.listen) && up(self.management)) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("({status}) {}", self.log()));
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "pebble did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            self.child = None;
            return Err(format!("({status}) {}", self.log()));
        }
        Ok(())
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// Pebble's issuing root (PEM), from its management interface.
    pub(crate) async fn root_pem(&self) -> String {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.https_ca).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let resp = client
            .get(format!("https://{}/roots/0", self.management))
            .send()
            .await
            .expect("pebble roots");
        assert!(
            resp.status().is_success(),
            "pebble roots: {}",
            resp.status()
        );
        resp.text().await.unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
