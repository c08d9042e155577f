//! Writes, consolidation semantics, recalculation, analytics, garbage collection, bad input.

mod common;

use std::time::Duration;

use common::*;
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, ResourceConfig};
use s3db_eventual::{
    ConfigError, EventualConsistencyPlugin, EventualExt, FieldConfig, Mode, Operation, Period,
};
use serde_json::json;

#[tokio::test]
async fn sync_writes_return_the_new_value_and_create_the_record() -> TestResult {
    let t = TestStore::memory("eventual_sync_writes");
    let (db, _) = open(&t.conn, plugin(Mode::Sync)).await?;
    let wallets = db.resource("wallets").unwrap_or_else(|| panic!("wallets"));
    let h = wallets.eventual("balance");
    assert!(!wallets.exists("w").await?);
    assert_eq!(h.add("w", 10).await?.value, Some(10.0));
    assert!(
        wallets.exists("w").await?,
        "consolidation creates the record"
    );
    assert_eq!(h.sub("w", 4).await?.value, Some(6.0));
    assert_eq!(h.increment("w").await?.value, Some(7.0));
    assert_eq!(h.decrement("w").await?.value, Some(6.0));
    assert_eq!(h.add("w", 0.5).await?.value, Some(6.5));
    assert_eq!(wallets.get("w").await?.get("balance"), Some(&json!(6.5)));
    assert_eq!(h.value("w").await?, Some(6.5));
    let txs = assert_all_applied(&h, "w").await?;
    let ops: Vec<Operation> = txs.iter().map(|t| t.operation).collect();
    use Operation::*;
    assert_eq!(ops, [Add, Sub, Add, Sub, Add]);
    // Each sync write consolidated its own batch.
    let batches: Vec<u64> = txs.iter().filter_map(|t| t.batch).collect();
    assert_eq!(batches, [1, 2, 3, 4, 5]);
    // Other fields of an existing record are kept.
    wallets.update("w", json!({"owner": "ann"})).await?;
    h.add("w", 1).await?;
    let w = wallets.get("w").await?;
    assert_eq!(
        (w.get("owner"), w.get("balance")),
        (Some(&json!("ann")), Some(&json!(7.5)))
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn async_writes_only_record_until_consolidated() -> TestResult {
    let t = TestStore::memory("eventual_async_writes");
    let (db, h) = open(&t.conn, plugin(Mode::Async)).await?;
    let r = h.add("w", 5).await?;
    assert_eq!(r.value, None);
    h.add("w", 7).await?;
    assert_eq!(h.value("w").await?, None, "not consolidated yet");
    let pending = h.transactions("w").await?;
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|t| !t.applied));
    assert_eq!(pending[0].id, r.transaction_id);
    let report = h.consolidate_report("w").await?;
    assert_eq!(
        (report.value, report.applied, report.recovered),
        (12.0, 2, 0)
    );
    assert_all_applied(&h, "w").await?;
    // Nothing left: consolidating again changes nothing.
    let again = h.consolidate_report("w").await?;
    assert_eq!((again.value, again.applied), (12.0, 0));
    // consolidate_pending finds records through their pending markers.
    h.add("a", 1).await?;
    h.add("b", 2).await?;
    assert_eq!(h.consolidate_pending().await?, 2);
    assert_eq!(
        (h.value("a").await?, h.value("b").await?),
        (Some(1.0), Some(2.0))
    );
    assert_eq!(h.consolidate_pending().await?, 0, "markers are gone");
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn set_is_the_base_then_the_current_value_then_the_initial_value() -> TestResult {
    let t = TestStore::memory("eventual_bases");
    let db = connect(&t.conn).await?;
    let p = db
        .use_plugin(
            EventualConsistencyPlugin::builder()
                .field_config(FieldConfig::new("wallets", "balance").initial_value(100.0))
                .field_config(FieldConfig::new("wallets", "peak").reducer(f64::max))
                .mode(Mode::Async)
                .build()?,
        )
        .await?;
    let wallets = db
        .create_resource(wallets().attribute("peak", "number"))
        .await?;
    let h = wallets.eventual("balance");
    // Initial value when the record has none.
    h.add("w", 5).await?;
    assert_eq!(h.consolidate("w").await?, 105.0);
    // Current value as base.
    h.sub("w", 10).await?;
    assert_eq!(h.consolidate("w").await?, 95.0);
    // The last set wins over what came before it in the batch; later amounts add to it.
    h.add("w", 1000).await?;
    h.set("w", 7).await?;
    h.add("w", 3).await?;
    assert_eq!(h.consolidate("w").await?, 10.0);
    assert_eq!(h.recalculate("w").await?, 10.0);
    // A custom reducer.
    let peak = p.field("wallets", "peak");
    for v in [3, 9, 4] {
        peak.add("w", v).await?;
    }
    assert_eq!(peak.consolidate("w").await?, 9.0);
    assert_eq!(peak.recalculate("w").await?, 9.0);
    let w = wallets.get("w").await?;
    assert_eq!(
        (w.get("balance"), w.get("peak")),
        (Some(&json!(10.0)), Some(&json!(9.0)))
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn recalculate_equals_consolidate_and_repairs_a_field_changed_outside() -> TestResult {
    let t = TestStore::memory("eventual_recalculate");
    let (db, h) = open(&t.conn, plugin(Mode::Async)).await?;
    let mut expected = 0.0;
    for round in 0..5u32 {
        for i in 0..4u32 {
            let amount = f64::from(round * 10 + i);
            if i % 3 == 2 {
                h.sub("w", amount).await?;
                expected -= amount;
            } else {
                h.add("w", amount).await?;
                expected += amount;
            }
        }
        let consolidated = h.consolidate("w").await?;
        assert_eq!(consolidated, expected);
        assert_eq!(h.recalculate("w").await?, consolidated, "round {round}");
    }
    // Pending transactions: recalculate folds them too, like consolidate would.
    h.add("w", 1).await?;
    assert_eq!(h.recalculate("w").await?, expected + 1.0);
    assert_eq!(h.consolidate("w").await?, expected + 1.0);
    // A field written outside the plugin is rebuilt from the log.
    let wallets = db.resource("wallets").unwrap_or_else(|| panic!("wallets"));
    wallets.update("w", json!({"balance": -5})).await?;
    assert_eq!(h.recalculate("w").await?, expected + 1.0);
    assert_eq!(h.value("w").await?, Some(expected + 1.0));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn bad_input_and_bad_configuration_are_typed_errors() -> TestResult {
    let t = TestStore::memory("eventual_bad_input");
    let (db, h) = open(&t.conn, plugin(Mode::Sync)).await?;
    assert!(matches!(
        h.add("w", f64::NAN).await,
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        h.set("w", f64::INFINITY).await,
        Err(Error::Validation(_))
    ));
    assert!(matches!(h.add("a/b", 1).await, Err(Error::BadKey { .. })));
    assert!(h.transactions("w").await?.is_empty(), "nothing written");
    let wallets = db.resource("wallets").unwrap_or_else(|| panic!("wallets"));
    let unmanaged = wallets.eventual("owner");
    assert!(!unmanaged.is_managed());
    match unmanaged.add("w", 1).await {
        Err(Error::Refused { reason, .. }) => assert!(
            reason.contains(".field(\"wallets\", \"owner\")"),
            "{reason}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    // A record whose field holds something else than a number.
    let notes = db
        .create_resource(ResourceConfig::new("notes").attribute("n", "string"))
        .await?;
    notes.insert(json!({"id": "x", "n": "text"})).await?;
    let db2 = Database::connect(&t.conn.to_string()).await?;
    let p2 = db2
        .use_plugin(
            EventualConsistencyPlugin::builder()
                .field("notes", "n")
                .mode(Mode::Async)
                .build()?,
        )
        .await?;
    db2.reload().await?;
    p2.field("notes", "n").add("x", 1).await?;
    assert!(matches!(
        p2.field("notes", "n").consolidate("x").await,
        Err(Error::Refused { .. })
    ));

    let b = || EventualConsistencyPlugin::builder();
    assert_eq!(b().build().err(), Some(ConfigError::NoFields));
    assert!(matches!(
        b().field("a.b", "c").build(),
        Err(ConfigError::BadName { .. })
    ));
    assert!(matches!(
        b().field("a", "").build(),
        Err(ConfigError::BadName { .. })
    ));
    assert!(matches!(
        b().field("plg_x", "c").build(),
        Err(ConfigError::BadName { .. })
    ));
    assert!(matches!(
        b().field("a", "x".repeat(100)).build(),
        Err(ConfigError::BadName { .. })
    ));
    assert!(matches!(
        b().field("a", "c").field("a", "c").build(),
        Err(ConfigError::Duplicate { .. })
    ));
    assert!(matches!(
        b().field_config(FieldConfig::new("a", "c").initial_value(f64::NAN))
            .build(),
        Err(ConfigError::NotFinite { .. })
    ));
    assert!(matches!(
        b().field("a", "c")
            .consolidation_interval(Duration::ZERO)
            .build(),
        Err(ConfigError::IntervalTooShort { .. })
    ));
    assert!(matches!(
        b().field("a", "c")
            .lock_ttl(Duration::from_millis(1))
            .build(),
        Err(ConfigError::IntervalTooShort { .. })
    ));
    assert_eq!(
        b().field("a", "c")
            .retention(Some(Duration::ZERO))
            .build()
            .err(),
        Some(ConfigError::ZeroRetention)
    );
    db.disconnect().await?;
    db2.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn analytics_per_period_and_top_records() -> TestResult {
    let t = TestStore::memory("eventual_analytics");
    let (db, h) = open(&t.conn, plugin(Mode::Async)).await?;
    h.add("a", 10).await?;
    h.add("a", 5).await?;
    h.sub("b", 2).await?;
    h.add("c", 30).await?;
    h.set("c", 1).await?; // not an amount
    let txs = h.transactions("a").await?;
    let (hour, day, month) = (
        txs[0].cohort_hour.clone(),
        txs[0].cohort_day.clone(),
        txs[0].cohort_month.clone(),
    );
    for (period, cohort) in [
        (Period::Hour, &hour),
        (Period::Day, &day),
        (Period::Month, &month),
    ] {
        let buckets = h.analytics(period).await?;
        // The test may straddle an hour boundary; only check totals then.
        let total: u64 = buckets.iter().map(|b| b.count).sum();
        assert_eq!(total, 4);
        if buckets.len() == 1 {
            let b = &buckets[0];
            assert_eq!(&b.cohort, cohort);
            assert_eq!(
                (b.count, b.sum, b.min, b.max, b.records),
                (4, 43.0, -2.0, 30.0, 3)
            );
            assert!((b.avg - 10.75).abs() < 1e-12);
            let top = h.top_records(period, cohort, 2).await?;
            let top: Vec<(&str, u64, f64)> = top
                .iter()
                .map(|r| (r.record_id.as_str(), r.count, r.sum))
                .collect();
            assert_eq!(top, [("c", 1, 30.0), ("a", 2, 15.0)]);
        }
    }
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn garbage_collection_folds_old_transactions_into_a_checkpoint() -> TestResult {
    let t = TestStore::memory("eventual_gc");
    let (db, h) = open(&t.conn, plugin(Mode::Async)).await?;
    for v in [5, 7, 11] {
        h.add("w", v).await?;
    }
    h.consolidate("w").await?;
    h.set("w", 100).await?;
    h.sub("w", 1).await?;
    assert_eq!(h.consolidate("w").await?, 99.0);
    tokio::time::sleep(Duration::from_millis(30)).await;
    h.add("w", 2).await?; // applied after the cutoff below, kept
    assert_eq!(h.consolidate("w").await?, 101.0);
    h.add("w", 4).await?; // pending, kept
    let report = h.garbage_collect(Duration::from_millis(20)).await?;
    assert_eq!((report.deleted, report.checkpoints), (4, 1));
    let txs = h.transactions("w").await?;
    assert_eq!(txs.len(), 3);
    assert!(txs[0].checkpoint && txs[0].operation == Operation::Set && txs[0].value == 99.0);
    assert_eq!(h.recalculate("w").await?, 105.0);
    assert_eq!(h.value("w").await?, Some(105.0));
    // Nothing more to collect with the same cutoff (one old transaction left: the checkpoint).
    let again = h.garbage_collect(Duration::from_millis(20)).await?;
    assert_eq!(again.deleted, 0);
    // Checkpoints are not amounts.
    let total: f64 = h
        .analytics(Period::Month)
        .await?
        .iter()
        .map(|b| b.sum)
        .sum();
    assert_eq!(total, 6.0);
    db.disconnect().await?;
    Ok(())
}
