//! Conformance, counting only while installed and started, windows, storage, the monthly
//! estimate of a live window, events, and the table and JSON forms.

use s3db_core::plugin::CustomEvent;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use s3db_core::plugin::Event;
use s3db_core::testing::TestStore;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_core::{Database, Error, Key, Metadata, RequestKind, ResourceConfig};
use s3db_costs::{CostsEvent, CostsPlugin, GB, Prices, Usd};
use serde_json::json;
use tokio::sync::broadcast;

type TestResult = Result<(), Error>;

fn key(k: &str) -> Key {
    Key::parse(k).unwrap_or_else(|e| panic!("{k}: {e}"))
}

async fn put(db: &Database, k: &str) -> TestResult {
    db.store()
        .put(&key(k), &Metadata::new(), "x".into())
        .await
        .map(|_| ())
}

async fn memory_db(test: &str) -> Result<Database, Error> {
    Database::builder()
        .connection(TestStore::memory(test).conn)
        .connect()
        .await
}

fn costs_events(events: &mut broadcast::Receiver<Event>) -> Vec<CostsEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.extend(CostsEvent::from_event(&event));
    }
    out
}

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(CostsPlugin::default),
        resource: ResourceConfig::new("notes").attribute("text", "string"),
        exercise: Arc::new(|db, notes| {
            Box::pin(async move {
                let costs = db
                    .plugin::<CostsPlugin>()
                    .unwrap_or_else(|| panic!("installed"));
                let before = costs.snapshot().usage.count(RequestKind::Put);
                notes.insert(json!({"text": "x"})).await?;
                let snap = costs.snapshot();
                assert!(snap.usage.count(RequestKind::Put) > before);
                assert!(snap.by_resource.contains_key(notes.name()));
                costs.measure_storage().await?;
                Ok(())
            })
        }),
    })
    .await
}

#[tokio::test]
async fn an_uninstalled_plugin_counts_nothing_more() -> TestResult {
    let db = memory_db("costs_uninstall").await?;
    let costs = db.use_plugin(CostsPlugin::default()).await?;
    assert!(costs.is_counting());
    put(&db, "resource=a/data/id=1").await?;
    assert_eq!(costs.snapshot().usage.requests(), 1);

    db.uninstall_plugin("costs", false).await?;
    assert!(!costs.is_counting());
    let before = db.store().requests();
    for i in 0..3 {
        put(&db, &format!("resource=a/data/id=x{i}")).await?;
    }
    assert_eq!(db.store().requests().since(&before).total(), 3);
    let snap = costs.snapshot();
    assert_eq!(
        snap.usage.requests(),
        1,
        "requests after uninstall are not counted"
    );
    assert!(matches!(
        costs.measure_storage().await,
        Err(Error::Refused { .. })
    ));

    // A new instance counts from its own install only, and the old one stays put.
    let again = db.use_plugin(CostsPlugin::default()).await?;
    put(&db, "resource=a/data/id=2").await?;
    assert_eq!(again.snapshot().usage.requests(), 1);
    assert_eq!(costs.snapshot().usage.requests(), 1);
    db.disconnect().await
}

#[tokio::test]
async fn a_stopped_plugin_counts_nothing_more() -> TestResult {
    let db = memory_db("costs_stop").await?;
    let costs = db.use_plugin(CostsPlugin::default()).await?;
    put(&db, "resource=a/data/id=1").await?;
    db.disconnect().await?; // stops every plugin
    assert!(!costs.is_counting());
    put(&db, "resource=a/data/id=2").await?;
    db.store().get(&key("resource=a/data/id=2")).await?;
    assert_eq!(costs.snapshot().usage.requests(), 1);
    // Uninstalling a stopped plugin is fine too.
    db.uninstall_plugin("costs", true).await?;
    assert!(!costs.is_counting());
    Ok(())
}

#[tokio::test]
async fn reset_closes_the_window_and_starts_a_new_one() -> TestResult {
    let db = memory_db("costs_reset").await?;
    let costs = db.use_plugin(CostsPlugin::default()).await?;
    let mut events = db.subscribe();
    put(&db, "resource=a/data/id=1").await?;
    put(&db, "resource=a/data/id=2").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let closed = costs.reset();
    assert_eq!(closed.usage.count(RequestKind::Put), 2);
    assert!(closed.duration >= Duration::from_millis(20));
    assert!(closed.end > closed.start);
    assert_eq!(closed.request_cost.pico_usd(), 2 * 5_000_000);

    let fresh = costs.snapshot();
    assert!(fresh.usage.is_empty(), "a new window starts empty");
    assert!(fresh.by_resource.is_empty());
    assert_eq!(fresh.total, Usd::ZERO);
    assert_eq!(
        fresh.start, closed.end,
        "windows follow each other without gap"
    );
    assert!(fresh.duration < closed.duration);

    db.store().get(&key("resource=a/data/id=1")).await?;
    let next = costs.reset();
    assert_eq!(next.start, closed.end);
    assert_eq!(next.usage.requests(), 1);
    assert_eq!(next.usage.count(RequestKind::Get), 1);
    assert_eq!(next.request_cost.pico_usd(), 400_000);

    let seen = costs_events(&mut events);
    assert!(
        matches!(
            seen.as_slice(),
            [
                CostsEvent::WindowClosed { requests: 2, .. },
                CostsEvent::WindowClosed { requests: 1, .. }
            ]
        ),
        "{seen:?}"
    );
    assert_eq!(
        seen[1].name(),
        "costs.window-closed",
        "broadcast as a custom plugin event"
    );
    db.disconnect().await
}

#[tokio::test]
async fn storage_is_measured_and_priced() -> TestResult {
    let db = memory_db("costs_storage").await?;
    let costs = db.use_plugin(CostsPlugin::default()).await?;
    let mut events = db.subscribe();
    let notes = db
        .create_resource(ResourceConfig::new("notes").attribute("text", "string"))
        .await?;
    for i in 0..5 {
        notes
            .insert(json!({"text": "y".repeat(100 * (i + 1))}))
            .await?;
    }
    assert!(costs.snapshot().storage.is_none(), "not measured yet");
    let entries: Vec<_> = db.store().list(None).try_collect().await?;
    let expected: u64 = entries.iter().map(|e| e.size).sum();

    let lists_before = costs.snapshot().usage.count(RequestKind::List);
    let measured = costs.measure_storage().await?;
    assert_eq!(measured.bytes, expected);
    assert_eq!(measured.objects, Some(entries.len() as u64));
    assert_eq!(
        measured.monthly_cost,
        Prices::default().storage_cost(expected)
    );
    let snap = costs.snapshot();
    assert_eq!(snap.storage, Some(measured));
    assert_eq!(
        snap.usage.count(RequestKind::List),
        lists_before + 1,
        "the measurement is one LIST, counted"
    );
    assert_eq!(snap.monthly_estimate.stored_bytes, Some(expected));
    assert_eq!(snap.monthly_estimate.storage_cost, measured.monthly_cost);
    assert!(matches!(
        costs_events(&mut events).as_slice(),
        [CostsEvent::StorageMeasured { objects: 6, .. }]
    ));

    // A size given without listing.
    costs.set_stored_bytes(2 * GB);
    let snap = costs.snapshot();
    let storage = snap.storage.unwrap_or_else(|| panic!("given"));
    assert_eq!((storage.bytes, storage.objects), (2 * GB, None));
    assert_eq!(storage.monthly_cost.to_string(), "$0.046");
    db.disconnect().await
}

#[tokio::test]
async fn the_monthly_estimate_extrapolates_the_window() -> TestResult {
    let db = memory_db("costs_estimate").await?;
    let costs = db
        .use_plugin(CostsPlugin::default().free_tier(true))
        .await?;
    costs.set_stored_bytes(10 * GB);
    for i in 0..10 {
        put(&db, &format!("resource=a/data/id={i}")).await?;
        db.store()
            .get(&key(&format!("resource=a/data/id={i}")))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let snap = costs.snapshot();
    let m = &snap.monthly_estimate;
    // The estimate is the prices' estimate of this very window…
    assert_eq!(
        *m,
        costs
            .prices()
            .monthly_estimate(&snap.usage, snap.duration, Some(10 * GB))
    );
    // …which scales each count by 30 days / window.
    let factor = s3db_costs::MONTH.as_secs_f64() / snap.duration.as_secs_f64();
    let puts = m.usage.count(RequestKind::Put) as f64;
    assert!(
        (puts - 10.0 * factor).abs() <= 1.0,
        "{puts} vs {}",
        10.0 * factor
    );
    assert_eq!(
        m.request_cost,
        costs.requests_cost(RequestKind::Put, m.usage.count(RequestKind::Put))
            + costs.requests_cost(RequestKind::Get, m.usage.count(RequestKind::Get))
    );
    // 10 bytes out per 50 ms is far under 100 GB a month: free.
    assert_eq!(m.transfer_out_cost, Usd::ZERO);
    assert_eq!(m.storage_cost.to_string(), "$0.23");
    assert_eq!(m.total, m.request_cost + m.storage_cost);
    assert!(m.total > snap.total);
    assert_eq!(costs.monthly_estimate().stored_bytes, Some(10 * GB));
    db.disconnect().await
}

#[tokio::test]
async fn a_snapshot_reads_as_a_table_and_serializes_to_json() -> TestResult {
    let db = memory_db("costs_display").await?;
    let costs = db.use_plugin(CostsPlugin::default()).await?;
    let notes = db
        .create_resource(ResourceConfig::new("notes").attribute("text", "string"))
        .await?;
    let n = notes.insert(json!({"text": "hello"})).await?;
    notes.get(n.id()).await?;
    costs.measure_storage().await?;
    let snap = costs.snapshot();
    let table = snap.to_string();
    for needle in [
        "S3 costs from",
        "PUT",
        "GET",
        "window total",
        "storage",
        "resource notes",
        "database",
        "monthly estimate",
    ] {
        assert!(table.contains(needle), "{needle:?} missing from\n{table}");
    }
    let json = serde_json::to_value(&snap).map_err(|e| Error::Corrupt {
        key: "snapshot".to_owned(),
        reason: e.to_string(),
    })?;
    assert_eq!(
        json["usage"]["requests"]["PUT"],
        json!(snap.usage.count(RequestKind::Put))
    );
    assert_eq!(json["by_resource"]["notes"]["requests"]["GET"], json!(1));
    assert!(json["request_cost"].as_f64().is_some_and(|c| c > 0.0));
    assert!(json["duration"].as_f64().is_some());
    assert!(json["storage"]["bytes"].as_u64().is_some_and(|b| b > 0));
    assert!(json["monthly_estimate"]["total"].as_f64().is_some());
    db.disconnect().await
}
