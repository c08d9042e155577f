//! The computed request cost equals the exact count of requests made × their prices, on memory,
//! file and the S3 test server (skipped when none is configured).

use std::sync::Arc;

use futures::TryStreamExt;
use s3db_core::testing::TestStore;
use s3db_core::{
    ConnectionString, Database, Error, Filter, Key, Metadata, RequestKind, ResourceConfig,
};
use s3db_costs::{CostsPlugin, Prices, Usd};
use serde_json::json;

type TestResult = Result<(), Error>;

const PUT_PICO: u128 = 5_000_000; // $0.005 / 1000
const GET_PICO: u128 = 400_000; // $0.0004 / 1000

async fn connect(conn: &ConnectionString) -> Result<(Database, Arc<CostsPlugin>), Error> {
    let db = Database::builder()
        .connection(conn.clone())
        .plugin(CostsPlugin::default())
        .connect()
        .await?;
    let costs = db
        .plugin::<CostsPlugin>()
        .unwrap_or_else(|| panic!("installed by the builder"));
    Ok((db, costs))
}

fn key(k: &str) -> Key {
    Key::parse(k).unwrap_or_else(|e| panic!("{k}: {e}"))
}

/// A store-level script whose requests are known in advance.
async fn scripted(conn: &ConnectionString) -> TestResult {
    let (db, costs) = connect(conn).await?;
    let store = db.store();
    costs.reset();
    let before = store.requests();

    for id in ["a", "b", "c"] {
        store
            .put(
                &key(&format!("resource=notes/data/id={id}")),
                &Metadata::new(),
                vec![b'x'; 100].into(),
            )
            .await?;
    }
    for _ in 0..2 {
        assert_eq!(
            store
                .get(&key("resource=notes/data/id=a"))
                .await?
                .body
                .len(),
            100
        );
    }
    store.head(&key("resource=notes/data/id=b")).await?;
    store
        .copy(
            &key("resource=notes/data/id=a"),
            &key("resource=notes/data/id=d"),
        )
        .await?;
    let listed = store.list_keys(Some(&key("resource=notes/data"))).await?;
    assert_eq!(listed.len(), 4);
    store.delete(&key("resource=notes/data/id=c")).await?;
    store.delete(&key("resource=notes/data/id=d")).await?;
    // A failed request is billed (and counted) too.
    assert!(matches!(
        store.get(&key("resource=notes/data/id=c")).await,
        Err(Error::NotFound { .. })
    ));

    let counted = store.requests().since(&before);
    let snap = costs.snapshot();
    let expected = [
        (RequestKind::Put, 3),
        (RequestKind::Get, 3),
        (RequestKind::Head, 1),
        (RequestKind::Copy, 1),
        (RequestKind::List, 1),
        (RequestKind::Delete, 2),
        (RequestKind::Post, 0),
    ];
    for (kind, n) in expected {
        assert_eq!(
            counted.count(kind),
            n,
            "{conn}: the store layer counted {kind}"
        );
        assert_eq!(
            snap.usage.count(kind),
            n,
            "{conn}: the plugin counted {kind}"
        );
    }
    assert_eq!(snap.usage.failed, 1, "{conn}: one failed GET");
    assert_eq!(snap.usage.bytes_in, 300);
    assert_eq!(snap.usage.bytes_in, counted.bytes_sent);
    assert_eq!(snap.usage.bytes_out, 200);
    assert_eq!(snap.usage.bytes_out, counted.bytes_received);
    // By hand: 5 requests at $0.005/1000 and 6 at $0.0004/1000 = $0.000025 + $0.0000024.
    assert_eq!(snap.request_cost.pico_usd(), 5 * PUT_PICO + 6 * GET_PICO);
    assert_eq!(snap.request_cost.to_string(), "$0.0000274");
    assert_eq!(snap.kind(RequestKind::Put).cost.pico_usd(), 3 * PUT_PICO);
    assert_eq!(snap.kind(RequestKind::Delete).cost.pico_usd(), 2 * GET_PICO);
    // 200 bytes out at $0.09/GB; in is free.
    assert_eq!(
        snap.transfer_out_cost,
        Prices::default().transfer_out_cost(200)
    );
    assert_eq!(snap.transfer_out_cost.pico_usd(), 16_764);
    assert_eq!(snap.transfer_in_cost, Usd::ZERO);
    assert_eq!(snap.total, snap.request_cost + snap.transfer_out_cost);
    assert_eq!(snap.by_resource["notes"].usage, snap.usage);
    db.disconnect().await
}

/// A resource-level workload: whatever requests it makes, the plugin counts exactly them.
async fn workload(conn: &ConnectionString) -> TestResult {
    let (db, costs) = connect(conn).await?;
    let before = db.store().requests();
    costs.reset();
    let users = db
        .create_resource(
            ResourceConfig::new("users")
                .attribute("name", "string|required")
                .attribute("region", "string")
                .partition("byRegion", ["region"]),
        )
        .await?;
    for (i, region) in ["eu", "us", "eu"].into_iter().enumerate() {
        users
            .insert(json!({"id": format!("u{i}"), "name": format!("user {i}"), "region": region}))
            .await?;
    }
    users.get("u1").await?;
    users.update("u1", json!({"region": "eu"})).await?;
    assert_eq!(users.query(Filter::eq("region", "eu")).await?.len(), 3);
    assert_eq!(users.count().await?, 3);
    users.list().await?;
    users.delete("u0").await?;
    assert!(users.get("u0").await.is_err());

    let snap = costs.snapshot();
    let counted = db.store().requests().since(&before);
    let mut hand = 0u128;
    for kind in RequestKind::ALL {
        let n = counted.count(kind);
        assert_eq!(snap.usage.count(kind), n, "{conn}: {kind}");
        let unit = match kind {
            RequestKind::Put | RequestKind::Copy | RequestKind::List | RequestKind::Post => {
                PUT_PICO
            }
            RequestKind::Get | RequestKind::Head | RequestKind::Delete => GET_PICO,
        };
        assert_eq!(
            snap.kind(kind).cost.pico_usd(),
            u128::from(n) * unit,
            "{conn}: {kind}"
        );
        hand += u128::from(n) * unit;
    }
    assert!(counted.total() > 10, "{conn}: the workload made requests");
    assert_eq!(snap.usage.requests(), counted.total());
    assert_eq!(snap.usage.bytes_in, counted.bytes_sent);
    assert_eq!(snap.usage.bytes_out, counted.bytes_received);
    assert_eq!(
        snap.request_cost.pico_usd(),
        hand,
        "{conn}: exact request cost"
    );
    // Everything but the database metadata belongs to the resource.
    let users_cost = &snap.by_resource["users"];
    let mut split = users_cost.usage;
    split.merge(&snap.database.usage);
    assert_eq!(split, snap.usage, "{conn}: users + database = everything");
    assert!(snap.database.usage.requests() >= 1, "{conn}: s3db.json");
    db.disconnect().await
}

#[tokio::test]
async fn scripted_requests_cost_exactly_their_price_on_memory() -> TestResult {
    scripted(&TestStore::memory("costs_script").conn).await
}

#[tokio::test]
async fn scripted_requests_cost_exactly_their_price_on_file() -> TestResult {
    let t = TestStore::file("costs_script");
    scripted(&t.conn).await
}

#[tokio::test]
async fn scripted_requests_cost_exactly_their_price_on_s3() -> TestResult {
    let Some(t) = TestStore::s3("costs_script") else {
        return Ok(());
    };
    scripted(&t.conn).await
}

#[tokio::test]
async fn a_workload_costs_exactly_its_counted_requests_on_memory() -> TestResult {
    workload(&TestStore::memory("costs_workload").conn).await
}

#[tokio::test]
async fn a_workload_costs_exactly_its_counted_requests_on_file() -> TestResult {
    let t = TestStore::file("costs_workload");
    workload(&t.conn).await
}

#[tokio::test]
async fn a_workload_costs_exactly_its_counted_requests_on_s3() -> TestResult {
    let Some(t) = TestStore::s3("costs_workload") else {
        return Ok(());
    };
    workload(&t.conn).await
}

#[tokio::test]
async fn pages_of_a_big_listing_are_counted_one_list_each() -> TestResult {
    // 2500 keys: a full listing is 3 LIST requests (1000 keys a page), as S3 bills it.
    let t = TestStore::memory("costs_pages");
    let (db, costs) = connect(&t.conn).await?;
    for i in 0..2500 {
        db.store()
            .put(
                &key(&format!("resource=logs/data/id={i:05}")),
                &Metadata::new(),
                vec![b'x'].into(),
            )
            .await?;
    }
    costs.reset();
    let all: Vec<_> = db
        .store()
        .list(Some(&key("resource=logs")))
        .try_collect()
        .await?;
    assert_eq!(all.len(), 2500);
    let snap = costs.snapshot();
    assert_eq!(snap.usage.count(RequestKind::List), 3);
    assert_eq!(snap.request_cost.pico_usd(), 3 * PUT_PICO);
    assert_eq!(snap.by_resource["logs"].usage.count(RequestKind::List), 3);
    Ok(())
}
