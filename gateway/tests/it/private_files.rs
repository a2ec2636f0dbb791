//! A local user on the node reads nothing of Wharf's: under umask 022, `wharf serve` keeps its
//! data dir, config store (API key hashes, sealed keys), tenants' SQLite data and compiled
//! plugins to its own user (0700 dirs, 0600 files), and closes a data dir an older version
//! left open.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;
use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::OnError;

/// Every path under `dir` whose mode lets group or others in.
fn open_to_others(dir: &Path) -> Vec<String> {
    let mut open = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.permissions().mode() & 0o077 != 0 {
            open.push(format!(
                "{} {:o}",
                p.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_the_owners_only_whatever_the_umask() {
    // The umask a shell or a service manager commonly leaves: files 0644, dirs 0755.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let up = Upstream::start("up").await;
    // An older version's data dir, open to everyone, with the store in it.
    let base = std::env::temp_dir().join(format!("wharf-private-{}", unique_suffix()));
    let data = base.join("data");
    std::fs::create_dir_all(data.join("tenant-sql")).unwrap();
    std::fs::write(data.join("tenant-sql/old.db"), b"").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let url = wharf_tenancy::Store::sqlite_url_for(&data).unwrap();
    let store = wharf_tenancy::Store::connect(&url).await.unwrap();
    let t = tenant_id();
    tenant_with_route(
        &store,
        &t,
        &["files.test"],
        route("api", "/", &[&up.target()]),
    )
    .await;
    attach_plugin(
        &store,
        &t,
        "api",
        "sql-api-keys",
        &example_plugin("sql-api-keys"),
        &[],
        OnError::FailClosed,
    )
    .await;
    relaxed(&store, &t).await;
    assert!(!open_to_others(&data).is_empty(), "the old dir starts open");

    let data_arg = data.display().to_string();
    let gw = Wharf::start_configured(&url, "sql = \"sqlite\"", &["--data-dir", &data_arg]).await;
    // The plugin's SQL call creates the tenant's database; its compile fills the cache.
    let r = gw
        .request("GET", "files.test", "/", &[("x-api-key", "k")])
        .await;
    assert!(r.status >= 400, "no such table yet: refused, {:?}", r.json);
    assert!(
        data.join("tenant-sql").read_dir().unwrap().count() > 1,
        "tenant db created"
    );
    assert!(data.join("compiled").exists(), "compiled cache written");
    assert!(data.join("wharf.db-wal").exists());
    assert_eq!(open_to_others(&data), Vec::<String>::new());
    drop(gw);
    let _ = std::fs::remove_dir_all(&base);
}
