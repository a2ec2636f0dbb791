//! The config store's plugins, their versions and the tenants' quotas, the same on SQLite and
//! on real Postgres; concurrent uploads; bytes damaged at rest.

use wharf_tenancy::test_support::{fresh_postgres_url, fresh_sqlite_url};
use wharf_tenancy::{Store, StoreError};

use crate::route;

async fn plugins_and_quotas(store: Store) {
    use wharf_tenancy::{OnError, PluginAttachment, Quotas};
    store
        .create_tenant("acme", "Acme", &["acme.test"])
        .await
        .unwrap();
    store.put_route("acme", route("api", "/")).await.unwrap();
    let (v1, _) = store
        .add_plugin_version("acme", "auth", b"bytes-one")
        .await
        .unwrap();
    let (v2, _) = store
        .add_plugin_version("acme", "auth", b"bytes-two")
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    assert_eq!(
        store.latest_plugin_version("acme", "auth").await.unwrap(),
        2
    );
    assert!(matches!(
        store.add_plugin_version("acme", "../etc", b"x").await,
        Err(StoreError::Invalid(_))
    ));

    let attach = |version| PluginAttachment {
        plugin: "auth".into(),
        version,
        config: [("keys".to_string(), "k1".to_string())].into(),
        on_error: OnError::FailClosed,
        allowed_outbound_hosts: Vec::new(),
        plugin_config: None,
        vm_config: None,
    };
    assert!(matches!(
        store.attach_plugin("acme", "api", attach(9)).await,
        Err(StoreError::UnknownPlugin { .. })
    ));
    store.attach_plugin("acme", "api", attach(2)).await.unwrap();
    store.attach_plugin("acme", "api", attach(1)).await.unwrap(); // rollback replaces in place
    let snap = store.load().await.unwrap();
    let t = &snap.tenants[0];
    assert_eq!(t.routes[0].plugins, vec![attach(1)]);
    assert_eq!(t.plugins.len(), 2);
    let sha = &t.plugin_version("auth", 1).unwrap().sha256;
    assert_eq!(
        store.plugin_blob(sha).await.unwrap().as_deref(),
        Some(&b"bytes-one"[..])
    );
    assert_eq!(t.plugin_version("auth", 1).unwrap().source, None);
    // A version pulled from a registry keeps its pinned reference; same bytes, one blob.
    let pulled = "oci://r.test/auth:1@sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let (v3, _) = store
        .add_plugin_version_from("acme", "auth", b"bytes-one", Some(pulled))
        .await
        .unwrap();
    let snap = store.load().await.unwrap();
    let v = snap.tenants[0].plugin_version("auth", v3).unwrap();
    assert_eq!((v.source.as_deref(), &v.sha256), (Some(pulled), sha));
    // Another tenant uploading the same bytes shares the blob.
    let entries = store.audit_log(100).await.unwrap();
    assert!(entries
        .iter()
        .any(|e| e.action == "plugin.upload" && e.target == "acme/auth" && e.actor == "system"));
    store.create_tenant("beta", "Beta", &[]).await.unwrap();
    store
        .add_plugin_version("beta", "auth", b"bytes-one")
        .await
        .unwrap();
    // Order: a second plugin placed first, then moved last.
    store
        .add_plugin_version("acme", "tag", b"bytes-tag")
        .await
        .unwrap();
    let tag = PluginAttachment {
        plugin: "tag".into(),
        version: 1,
        config: Default::default(),
        on_error: OnError::FailOpen,
        allowed_outbound_hosts: Vec::new(),
        plugin_config: None,
        vm_config: None,
    };
    store
        .attach_plugin_at("acme", "api", tag.clone(), Some(0))
        .await
        .unwrap();
    let order = |r: wharf_tenancy::Route| {
        r.plugins
            .iter()
            .map(|a| a.plugin.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        order(store.route("acme", "api").await.unwrap()),
        vec!["tag", "auth"]
    );
    store
        .attach_plugin_at("acme", "api", tag, Some(9))
        .await
        .unwrap();
    assert_eq!(
        order(store.route("acme", "api").await.unwrap()),
        vec!["auth", "tag"]
    );
    store.detach_plugin("acme", "api", "tag").await.unwrap();
    store.detach_plugin("acme", "api", "auth").await.unwrap();
    assert!(store.route("acme", "api").await.unwrap().plugins.is_empty());

    let quotas = Quotas {
        plugin: wharf_tenancy::PluginQuotas {
            fuel: 5_000,
            ..Default::default()
        },
        ..Quotas::default()
    };
    store.set_quotas("acme", &quotas).await.unwrap();
    assert_eq!(
        store.tenant("acme").await.unwrap().quotas.plugin.fuel,
        5_000
    );
    let bad = Quotas {
        plugin: wharf_tenancy::PluginQuotas {
            deadline_ms: 0,
            ..Default::default()
        },
        ..Quotas::default()
    };
    assert!(matches!(
        store.set_quotas("acme", &bad).await,
        Err(StoreError::Invalid(_))
    ));

    store.remove_tenant("acme").await.unwrap();
    assert!(
        store.plugin_blob(sha).await.unwrap().is_some(),
        "beta still uses the blob"
    );
    store.remove_tenant("beta").await.unwrap();
    assert!(
        store.plugin_blob(sha).await.unwrap().is_none(),
        "unreferenced blobs are removed"
    );
}

#[tokio::test]
async fn sqlite_plugins_and_quotas() {
    plugins_and_quotas(Store::connect(&fresh_sqlite_url()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_plugins_and_quotas() {
    plugins_and_quotas(Store::connect(&fresh_postgres_url().await).await.unwrap()).await;
}

#[tokio::test]
async fn concurrent_uploads_get_consistent_versions() {
    let store = Store::connect(&fresh_postgres_url().await).await.unwrap();
    store.create_tenant("acme", "Acme", &[]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.add_plugin_version("acme", "p", format!("bytes-{i}").as_bytes())
                .await
                .unwrap()
                .0
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=10).collect::<Vec<i64>>());
}

/// Plugin bytes are verified against their content hash when read: a damaged row is refused,
/// never handed out as the plugin it claims to be.
#[tokio::test]
async fn damaged_plugin_bytes_are_refused_when_read() {
    use sha2::Digest;
    use sqlx::Connection;
    let url = fresh_sqlite_url();
    let store = Store::connect(&url).await.unwrap();
    store.create_tenant("acme", "Acme", &[]).await.unwrap();
    let bytes = b"component bytes".to_vec();
    store.add_plugin_version("acme", "p", &bytes).await.unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(store.plugin_blob(&sha).await.unwrap(), Some(bytes));
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE plugin_blobs SET bytes = ?")
        .bind(b"tampered".to_vec())
        .execute(&mut raw)
        .await
        .unwrap();
    match store.plugin_blob(&sha).await {
        Err(StoreError::Corrupt(why)) => assert!(why.contains(&sha), "{why}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
