//! `wharf backup` / `wharf restore`: a tenant's whole config round-trips through one file and
//! serves again; a damaged file is refused before anything is written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::*;
use wharf_plugins::test_support::example_plugin;
use wharf_tenancy::{OnError, TlsCertificate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_round_trips_through_backup_and_restore() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    store
        .create_tenant("acme", "Acme", &["acme.test", "*.acme.test"])
        .await
        .unwrap();
    store
        .patch_quotas("acme", &serde_json::json!({"plugin_fuel": 1234567}))
        .await
        .unwrap();
    store
        .put_route("acme", route("api", "/", &[&up.target()]))
        .await
        .unwrap();
    // Two versions of one plugin, the second attached with its config.
    let bytes = example_plugin("add-header");
    store
        .add_plugin_version("acme", "tag", &bytes)
        .await
        .unwrap();
    attach_plugin(
        &store,
        "acme",
        "api",
        "tag",
        &bytes,
        &[("request-value", "restored")],
        OnError::FailClosed,
    )
    .await;
    let cert = TlsCertificate {
        name: "main".into(),
        chain_pem: "chain".into(),
        hostnames: vec!["acme.test".into()],
        not_after_ms: 4_000_000_000_000,
        fingerprint: "fp".into(),
        updated_at_ms: 0,
        key_sealed: "v1:sealed".into(),
    };
    store.put_certificate("acme", &cert).await.unwrap();
    let before = store.tenant("acme").await.unwrap();

    let dir = std::env::temp_dir().join(format!("wharf-backup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("acme.json");
    let (ok, out) = run_wharf(
        &[
            "backup",
            "--tenant",
            "acme",
            "--out",
            file.to_str().unwrap(),
            "--store",
            &url,
        ],
        &[],
    );
    assert!(ok, "{out}");
    store.remove_tenant("acme").await.unwrap();

    // A damaged copy is refused, and nothing of it is written.
    let text = std::fs::read_to_string(&file).unwrap();
    let damaged = dir.join("damaged.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["plugins"][0]["bytes"] = serde_json::json!(hex::encode(b"not the plugin"));
    std::fs::write(&damaged, v.to_string()).unwrap();
    let (ok, out) = run_wharf(
        &[
            "restore",
            "--file",
            damaged.to_str().unwrap(),
            "--store",
            &url,
        ],
        &[],
    );
    assert!(!ok && out.contains("do not match sha256"), "{out}");
    assert!(
        store.tenant("acme").await.is_err(),
        "nothing restored from a damaged file"
    );

    // A file the store refuses midway (a certificate name it does not accept, written after the
    // tenant, its plugins and routes) leaves nothing behind either.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["certificates"][0]["name"] = serde_json::json!("Not A Name");
    std::fs::write(&damaged, v.to_string()).unwrap();
    let restore = |f: &std::path::Path| {
        run_wharf(
            &["restore", "--file", f.to_str().unwrap(), "--store", &url],
            &[],
        )
    };
    let (ok, out) = restore(&damaged);
    assert!(!ok, "{out}");
    assert!(
        out.contains("certificate Not A Name")
            && out.contains("partly restored tenant was removed"),
        "{out}"
    );
    assert!(store.tenant("acme").await.is_err(), "nothing kept");
    // A chain naming a plugin version the file lacks is refused before anything is written.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["routes"][0]["plugins"][0]["version"] = serde_json::json!(99);
    std::fs::write(&damaged, v.to_string()).unwrap();
    let (ok, out) = restore(&damaged);
    assert!(!ok && out.contains("v99 not in the backup"), "{out}");
    assert!(store.tenant("acme").await.is_err());

    let (ok, out) = restore(&file);
    assert!(ok, "{out}");
    // Restoring over an existing tenant is refused and leaves it as it is.
    let (ok, out) = restore(&file);
    assert!(!ok, "{out}");
    assert_eq!(
        store.tenant("acme").await.unwrap().routes.len(),
        before.routes.len()
    );
    let after = store.tenant("acme").await.unwrap();
    assert_eq!(after.hostnames, before.hostnames);
    assert_eq!(after.quotas, before.quotas);
    assert_eq!(after.routes, before.routes, "routes and their chains");
    let shas = |t: &wharf_tenancy::Tenant| {
        t.plugins
            .iter()
            .map(|p| (p.name.clone(), p.version, p.sha256.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shas(&after), shas(&before));
    assert_eq!(after.certificates.len(), 1);
    assert_eq!(
        after.certificates[0].key_sealed, "v1:sealed",
        "the key stays sealed"
    );

    // And it serves, plugin and all.
    let gw = Wharf::start(&url).await;
    assert_eq!(
        gw.get("acme.test", "/").await.json["headers"]["x-wharf-plugin"],
        "restored"
    );
    std::fs::remove_dir_all(&dir).ok();
}
