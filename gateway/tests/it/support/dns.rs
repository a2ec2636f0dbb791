//! A real DNS server on loopback for tests: Debian's dnsmasq, answering from a hosts file the
//! test rewrites (and dnsmasq re-reads on SIGHUP), with a 1 s TTL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct Dns {
    child: Child,
    hosts: PathBuf,
    pub(crate) addr: SocketAddr,
}

impl Dns {
    /// dnsmasq answering `records` (name → address) and nothing else.
    pub(crate) fn start(records: &[(&str, &str)]) -> Dns {
        let dir = std::env::temp_dir().join(format!("wharf-dns-{}", super::unique_suffix()));
        std::fs::create_dir_all(&dir).expect("dns dir");
        let hosts = dir.join("hosts");
        write_hosts(&hosts, records);
        for _ in 0..5 {
            let addr = super::free_addr();
            let mut child = Command::new("dnsmasq")
                .args([
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--user=root",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                    "--local-ttl=1",
                    "--neg-ttl=1",
                ])
                .arg(format!("--port={}", addr.port()))
                .arg(format!("--addn-hosts={}", hosts.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq (scripts/test installs dnsmasq-base)");
            std::thread::sleep(Duration::from_millis(200));
            // Still running: it has its port (it exits at once when the port is taken).
            if child.try_wait().expect("dnsmasq status").is_none() {
                return Dns { child, hosts, addr };
            }
        }
        panic!("dnsmasq did not start on a free port");
    }

    /// Answers `records` from now on.
    pub(crate) fn set(&self, records: &[(&str, &str)]) {
        write_hosts(&self.hosts, records);
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }
}

fn write_hosts(path: &PathBuf, records: &[(&str, &str)]) {
    let text: String = records
        .iter()
        .map(|(name, ip)| format!("{ip} {name}\n"))
        .collect();
    std::fs::write(path, text).expect("hosts file");
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
