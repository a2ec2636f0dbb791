//! docs/tutorial.md, run as written: every ```sh block of the page, in order, with bash, in an
//! empty temp dir, with the `wharf` under test first on PATH and the system's tools after it. A
//! block whose first line says "(leave it running)" (the gateway, the tenant's API) runs in the
//! background until the end; the others must exit 0, and the requests the page sends through the
//! gateway must show the plugin's header: v1's, v2's after the upgrade, v1's after the rollback.
//!
//! Then README.md's ten-line first plugin, against the same gateway.
//!
//! The page's ports become free ones: `wharf serve` reads listen/admin_listen from a bootstrap
//! file given in WHARF_CONFIG, and `localhost:8080`, `localhost:9080`, `127.0.0.1:8081` are
//! replaced in the blocks. Variables travel between blocks as the page `export`s them (each
//! block ends by saving `export -p`, the next one starts by reading it), as in one shell.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const PAGE: &str = "docs/tutorial.md";
const BACKGROUND: &str = "(leave it running)";

/// A ```sh block: the line of the page it starts on, and its text.
struct Block {
    line: usize,
    text: String,
}

fn sh_blocks(page: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in page.lines().enumerate() {
        let fence = line.trim_start();
        match open.as_mut() {
            None if fence.starts_with("```sh") => {
                open = Some(Block {
                    line: i + 1,
                    text: String::new(),
                })
            }
            Some(_) if fence.starts_with("```") => blocks.extend(open.take()),
            Some(b) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "{PAGE}: a ```sh block is not closed");
    blocks
}

/// The servers the page starts: their process groups are stopped when the test ends.
struct Servers(Vec<(Child, PathBuf)>);

impl Servers {
    fn logs(&self) -> String {
        let mut all = String::new();
        for (_, log) in &self.0 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            all += &format!("--- {} (last lines)\n", log.display());
            for l in tail.iter().rev() {
                all += l;
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let _ = child.wait();
        }
    }
}

fn wait_until_listening(addr: SocketAddr, servers: &Servers) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} 60 s after the page's servers started\n{}",
            servers.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The values of `header` in an HTTP response printed by `curl -i`.
fn header_values(out: &str, header: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(header))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[test]
fn the_tutorial_runs_as_written() {
    let repo = crate::support::package_dir().join("..");
    let page = std::fs::read_to_string(repo.join(PAGE)).expect(PAGE);
    let blocks = sh_blocks(&page);
    assert!(
        blocks.len() >= 8,
        "{PAGE} has {} ```sh blocks",
        blocks.len()
    );

    let dir = std::env::temp_dir().join(format!("wharf-tutorial-{}", tenant_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (proxy, admin, api) = (free_addr(), free_addr(), free_addr());
    let config = dir.join("test-ports.toml");
    std::fs::write(
        &config,
        format!("listen = \"{proxy}\"\nadmin_listen = \"{admin}\"\n"),
    )
    .unwrap();
    let ports = [
        ("localhost:8080", format!("localhost:{}", proxy.port())),
        ("localhost:9080", format!("localhost:{}", admin.port())),
        ("127.0.0.1:8081", api.to_string()),
    ];
    let bin = Path::new(env!("CARGO_BIN_EXE_wharf"));
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        bin.parent().unwrap().display()
    );
    let state = dir.join("test-shell-env");
    let command = |script: String| {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(script)
            .current_dir(&dir)
            .env("PATH", &path)
            .env("WHARF_CONFIG", &config)
            .env_remove("WHARF_API")
            .env_remove("WHARF_TOKEN")
            .env_remove("WHARF_OPERATOR_TOKEN");
        c
    };

    let mut servers = Servers(Vec::new());
    let mut waited = false;
    // (the block's line, its text, what it printed) for every block run in the foreground
    let mut ran: Vec<(usize, String, String)> = Vec::new();
    let started = Instant::now();
    for b in &blocks {
        let mut text = b.text.clone();
        for (from, to) in &ports {
            text = text.replace(from, to);
        }
        if b.text.lines().next().unwrap_or("").contains(BACKGROUND) {
            let log = dir.join(format!("test-server-line-{}.log", b.line));
            let out = std::fs::File::create(&log).unwrap();
            let child = {
                use std::os::unix::process::CommandExt;
                command(text)
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().unwrap())
                    .stderr(out)
                    .process_group(0)
                    .spawn()
                    .expect("run bash")
            };
            servers.0.push((child, log));
            continue;
        }
        if !waited {
            // The page's next step assumes its servers are up, as a reader would see them.
            for addr in [proxy, admin, api] {
                wait_until_listening(addr, &servers);
            }
            waited = true;
        }
        let script = format!(
            "[ -f '{s}' ] && . '{s}'\ncd \"${{TUTORIAL_PWD:-.}}\"\nset -eo pipefail\n{text}\n\
             export TUTORIAL_PWD=\"$PWD\"\nexport -p > '{s}'\n",
            s = state.display()
        );
        let t = Instant::now();
        let out = command(script).output().expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{PAGE}:{}: the block failed ({}):\n{text}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n{}",
            b.line,
            out.status,
            servers.logs()
        );
        eprintln!("{PAGE}:{}: ok in {:.1?}", b.line, t.elapsed());
        ran.push((b.line, b.text.clone(), stdout));
    }
    eprintln!("{PAGE}: all blocks in {:.1?}", started.elapsed());

    // `wharf plugin test` showed the header before anything was uploaded.
    assert!(
        ran.iter()
            .any(|(_, text, out)| text.contains("wharf plugin test")
                && out.contains("set x-wharf-served-by: wharf")),
        "no `wharf plugin test` output shows the plugin's response header"
    );
    // Through the gateway: v1, then v2, then v1 again after the rollback.
    let through_gateway: Vec<(usize, Vec<String>, &str)> = ran
        .iter()
        .filter(|(_, text, _)| text.contains("localhost:8080") && text.contains(" -i "))
        .map(|(line, _, out)| (*line, header_values(out, "x-wharf-served-by"), out.as_str()))
        .collect();
    let seen: Vec<&Vec<String>> = through_gateway.iter().map(|(_, v, _)| v).collect();
    assert_eq!(
        seen,
        [
            &vec!["wharf".to_string()],
            &vec!["hello v2".into()],
            &vec!["wharf".into()]
        ],
        "x-wharf-served-by through the gateway, per block (lines {:?})",
        through_gateway
            .iter()
            .map(|(l, _, _)| l)
            .collect::<Vec<_>>()
    );
    // The upstream saw the request header the plugin added.
    let (_, _, first) = through_gateway[0];
    let body = first.rsplit("\r\n\r\n").next().unwrap_or(first);
    let echoed: serde_json::Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("the echo's answer is not JSON ({e}): {first}"));
    assert_eq!(
        echoed["headers"]["x-wharf-plugin"], "add-header",
        "{echoed}"
    );

    // README.md's "first plugin" lines, against the same gateway (its demo tenant, the same
    // operator token), in a folder of their own.
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let first = sh_blocks(&readme);
    assert_eq!(
        first.len(),
        1,
        "README.md: one ```sh block, the first plugin"
    );
    let mut text = first[0].text.clone();
    for (from, to) in &ports {
        text = text.replace(from, to);
    }
    std::fs::create_dir_all(dir.join("readme")).unwrap();
    let out = command(format!("cd readme\nset -eo pipefail\n{text}"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && header_values(&stdout, "x-wharf-served-by") == ["wharf"],
        "README.md:{}: ({}):\n{text}\n--- stdout\n{stdout}\n--- stderr\n{}",
        first[0].line,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
