//! The config store behaves the same on SQLite and on real Postgres. Plugins, their versions
//! and quotas: `plugins.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod plugins;

use wharf_tenancy::test_support::{fresh_postgres_url, fresh_sqlite_url};
use wharf_tenancy::{HostPattern, Route, Store, StoreError, Timeouts, UpstreamTarget};

pub(crate) fn route(id: &str, prefix: &str) -> Route {
    Route {
        id: id.into(),
        path_prefix: prefix.into(),
        methods: vec![],
        upstreams: vec![UpstreamTarget {
            addr: "127.0.0.1:9".into(),
            weight: 2,
        }],
        timeouts: Timeouts::default(),
        health_check: None,
        upstream_protocol: Default::default(),
        retries: wharf_tenancy::DEFAULT_RETRIES,
        upstream_tls: Default::default(),
        host_header: Default::default(),
        plugins: vec![],
    }
}

async fn exercise(store: Store) {
    let v0 = store.version().await.unwrap().0;
    let v1 = store.create_tenant("acme", "Acme Corp", &[]).await.unwrap();
    assert!(v1 > v0, "a mutation bumps the version");
    assert!(matches!(
        store.create_tenant("acme", "again", &[]).await,
        Err(StoreError::TenantExists(_))
    ));
    assert!(matches!(
        store.create_tenant("Bad_Id", "x", &[]).await,
        Err(StoreError::Invalid(_))
    ));

    store.add_hostname("acme", "*.acme.test").await.unwrap();
    store.add_hostname("acme", "api.acme.test").await.unwrap();
    store.create_tenant("evil", "Evil", &[]).await.unwrap();
    for stolen in [
        "api.acme.test",
        "x.acme.test",
        "*.acme.test",
        "*.eu.acme.test",
        "API.ACME.TEST",
    ] {
        match store.add_hostname("evil", stolen).await {
            Err(StoreError::HostnameTaken { owner, .. }) => assert_eq!(owner, "acme"),
            other => panic!("{stolen}: expected HostnameTaken, got {other:?}"),
        }
    }
    assert!(matches!(
        store.add_hostname("ghost", "ghost.test").await,
        Err(StoreError::UnknownTenant(_))
    ));

    store.put_route("acme", route("api", "/api")).await.unwrap();
    store.put_route("acme", route("root", "/")).await.unwrap();
    let conflict = store.put_route("acme", route("api2", "/api")).await;
    assert!(
        matches!(conflict, Err(StoreError::RouteConflict { .. })),
        "{conflict:?}"
    );
    // Upsert replaces.
    let mut changed = route("api", "/api/v2");
    changed.methods = vec!["get".into()];
    store.put_route("acme", changed).await.unwrap();

    let snap = store.load().await.unwrap();
    assert_eq!(snap.version, store.version().await.unwrap().0);
    assert_eq!(snap.tenants.len(), 2);
    let acme = &snap.tenants[0];
    assert_eq!(acme.id, "acme");
    assert_eq!(acme.display_name, "Acme Corp");
    assert_eq!(
        acme.hostnames,
        vec![
            HostPattern::parse("*.acme.test").unwrap(),
            HostPattern::parse("api.acme.test").unwrap()
        ]
    );
    assert_eq!(acme.routes.len(), 2);
    assert_eq!(acme.routes[0].path_prefix, "/api/v2");
    assert_eq!(acme.routes[0].methods, vec!["GET"]);
    assert_eq!(acme.routes[0].upstreams[0].weight, 2);

    store.remove_route("acme", "root").await.unwrap();
    assert!(matches!(
        store.remove_route("acme", "root").await,
        Err(StoreError::UnknownRoute { .. })
    ));
    store.remove_tenant("acme").await.unwrap();
    // Once acme is gone its hosts are free to claim.
    store.add_hostname("evil", "api.acme.test").await.unwrap();
    let snap = store.load().await.unwrap();
    assert_eq!(snap.tenants.len(), 1);
    assert_eq!(snap.tenants[0].hostnames.len(), 1);
}

#[tokio::test]
async fn sqlite_store() {
    exercise(Store::connect(&fresh_sqlite_url()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_store() {
    exercise(Store::connect(&fresh_postgres_url().await).await.unwrap()).await;
}

#[tokio::test]
async fn concurrent_writers_get_distinct_versions() {
    let store = Store::connect(&fresh_postgres_url().await).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.create_tenant(&format!("t{i}"), "T", &[]).await.unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 8, "every mutation gets its own version");
}

#[tokio::test]
async fn bad_store_url_is_explained() {
    let err = Store::connect("mysql://x").await.err().expect("refused");
    assert!(err.to_string().contains("sqlite://"), "{err}");
}

/// What nodes reload: only the tenants changed since their version, or everything when the log
/// cannot vouch for the whole gap.
async fn deltas(store: Store) {
    store.create_tenant("a", "A", &[]).await.unwrap();
    store.create_tenant("b", "B", &[]).await.unwrap();
    let (base, _) = store.version().await.unwrap();
    store.put_route("a", route("r1", "/")).await.unwrap();
    store.add_hostname("a", "a.test").await.unwrap();
    store.create_tenant("c", "C", &[]).await.unwrap();
    store.remove_tenant("b").await.unwrap();

    let delta = store.changes_since(base, 100).await.unwrap().unwrap();
    assert_eq!(delta.version, store.version().await.unwrap().0);
    let ids: Vec<&str> = delta.tenants.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["a", "c", "b"],
        "each changed tenant once, in order of first change"
    );
    let a = delta.tenants[0].1.as_ref().unwrap();
    assert_eq!(a.routes.len(), 1);
    assert_eq!(a.hostnames.len(), 1);
    assert!(
        delta.tenants[2].1.is_none(),
        "a removed tenant comes back as None"
    );

    assert!(
        store.changes_since(base, 2).await.unwrap().is_none(),
        "more tenants than the caller wants: full load"
    );
    assert!(
        store.changes_since(0, 100).await.unwrap().is_none(),
        "from nothing: full load"
    );
    let now = delta.version;
    let empty = store.changes_since(now, 100).await.unwrap().unwrap();
    assert!(empty.tenants.is_empty());
}

#[tokio::test]
async fn sqlite_deltas() {
    deltas(Store::connect(&fresh_sqlite_url()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_deltas() {
    deltas(Store::connect(&fresh_postgres_url().await).await.unwrap()).await;
}

/// Certificates: stored per tenant with their sealed key, replaced by name (a rotation is one
/// change recorded for its tenant), deleted, gone with their tenant.
async fn certificates(store: Store) {
    use wharf_tenancy::TlsCertificate;
    store
        .create_tenant("acme", "Acme", &["acme.test"])
        .await
        .unwrap();
    let cert = |fp: &str| TlsCertificate {
        name: "main".into(),
        chain_pem: format!("chain {fp}"),
        hostnames: vec!["acme.test".into()],
        not_after_ms: 4_000_000_000_000,
        fingerprint: fp.into(),
        updated_at_ms: 0,
        key_sealed: format!("v1:sealed-{fp}"),
    };
    let v1 = store.put_certificate("acme", &cert("one")).await.unwrap();
    let v2 = store.put_certificate("acme", &cert("two")).await.unwrap();
    assert!(v2 > v1);
    let delta = store.changes_since(v1, 10).await.unwrap().unwrap();
    assert_eq!(delta.tenants.len(), 1, "the rotation is acme's change");
    let stored = store.tenant("acme").await.unwrap().certificates;
    assert_eq!(stored.len(), 1, "replaced by name");
    assert_eq!(stored[0].fingerprint, "two");
    assert_eq!(stored[0].key_sealed, "v1:sealed-two");
    assert!(stored[0].updated_at_ms > 0);
    assert!(
        !format!("{:?}", stored[0]).contains("sealed"),
        "Debug never shows the key"
    );
    assert!(matches!(
        store.put_certificate("ghost", &cert("x")).await,
        Err(StoreError::UnknownTenant(_))
    ));
    assert!(matches!(
        store.delete_certificate("acme", "nope").await,
        Err(StoreError::UnknownCertificate { .. })
    ));
    store.delete_certificate("acme", "main").await.unwrap();
    assert!(store.tenant("acme").await.unwrap().certificates.is_empty());
    store.put_certificate("acme", &cert("three")).await.unwrap();
    store.remove_tenant("acme").await.unwrap();
    store
        .create_tenant("acme", "Acme again", &[])
        .await
        .unwrap();
    assert!(
        store.tenant("acme").await.unwrap().certificates.is_empty(),
        "a removed tenant's certificates go with it"
    );
}

#[tokio::test]
async fn sqlite_certificates() {
    certificates(Store::connect(&fresh_sqlite_url()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_certificates() {
    certificates(Store::connect(&fresh_postgres_url().await).await.unwrap()).await;
}
