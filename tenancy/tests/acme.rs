//! The store's side of ACME behaves the same on SQLite and on real Postgres: one node wins an
//! order's lease, however many ask at once; failures back off; caps and ownership hold.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use wharf_tenancy::store::now_ms;
use wharf_tenancy::test_support::{fresh_postgres_url, fresh_sqlite_url};
use wharf_tenancy::{AcmeState, Store, StoreError};

async fn exercise(store: Store) {
    store
        .create_tenant(
            "shop",
            "Shop",
            &["a.shop.test", "b.shop.test", "*.w.shop.test"],
        )
        .await
        .unwrap();
    store
        .create_tenant("other", "Other", &["o.test"])
        .await
        .unwrap();
    for (host, why) in [
        ("o.test", "another tenant's"),
        ("x.shop.test", "unowned"),
        ("*.w.shop.test", "a wildcard"),
    ] {
        assert!(
            matches!(
                store.enable_acme("shop", host, 100).await,
                Err(StoreError::Invalid(_))
            ),
            "{why}"
        );
    }
    let (_, row) = store.enable_acme("shop", "a.shop.test", 100).await.unwrap();
    assert_eq!(row.state, AcmeState::Pending);

    // Eight nodes ask for the lease at once: exactly one gets it.
    let until = now_ms() + 60_000;
    let tries: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.take_acme_lease("a.shop.test", &format!("node-{i}"), until)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tries {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    assert!(store.acme_due(10).await.unwrap().is_empty(), "leased");

    // A failure lets the lease go, counts, and is due only at its retry time.
    store
        .acme_failed("a.shop.test", "boom", true, now_ms() + 60_000)
        .await
        .unwrap();
    let rows = store.acme_hostnames("shop").await.unwrap();
    assert_eq!(
        (rows[0].state, rows[0].attempts, rows[0].last_error.as_str()),
        (AcmeState::Failed, 1, "boom")
    );
    assert!(store.acme_due(10).await.unwrap().is_empty(), "backing off");

    // The fleet cap counts orders placed and names waiting for a first one.
    store
        .record_acme_order("shop", "a.shop.test")
        .await
        .unwrap();
    assert!(matches!(
        store.enable_acme("shop", "b.shop.test", 1).await,
        Err(StoreError::OrderCap { .. })
    ));
    store.enable_acme("shop", "b.shop.test", 3).await.unwrap();
    assert_eq!(store.acme_orders_this_hour("shop").await.unwrap(), (1, 1));

    // The hostname removed: its row goes.
    store.remove_hostname("shop", "b.shop.test").await.unwrap();
    assert_eq!(store.acme_hostnames("shop").await.unwrap().len(), 1);
    store.remove_tenant("shop").await.unwrap();
    assert!(store.acme_hostnames("shop").await.unwrap().is_empty());
}

#[tokio::test]
async fn acme_rows_on_sqlite() {
    exercise(Store::connect(&fresh_sqlite_url()).await.unwrap()).await;
}

#[tokio::test]
async fn acme_rows_on_postgres() {
    exercise(Store::connect(&fresh_postgres_url().await).await.unwrap()).await;
}
