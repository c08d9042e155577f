//! Conformance, background consolidation, and stopping.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_core::testing::{FaultMode, TestStore};
use s3db_eventual::{EventualConsistencyPlugin, EventualExt, Mode, PLUGIN_NAME};

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> TestResult {
    for mode in [Mode::Sync, Mode::Async] {
        check_plugin(&PluginCase {
            make: Box::new(move || plugin(mode)),
            resource: wallets(),
            exercise: Arc::new(move |_db, wallets| {
                Box::pin(async move {
                    let h = wallets.eventual("balance");
                    h.add("w", 2).await?;
                    h.add("w", 3).await?;
                    assert_eq!(h.consolidate("w").await?, 5.0);
                    assert_eq!(h.recalculate("w").await?, 5.0);
                    Ok(())
                })
            }),
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn many_tasks_on_memory_sum_exactly() -> TestResult {
    for mode in [Mode::Sync, Mode::Async] {
        let t = TestStore::memory("eventual_many_tasks");
        let (db, h) = open(&t.conn, plugin(mode)).await?;
        let mut tasks = Vec::new();
        for task in 0..12u32 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10u32 {
                    let id = ["a", "b", "c"][((task + i) % 3) as usize];
                    h.add(id, task * 100 + i).await?;
                    if i % 3 == 0 {
                        h.consolidate(id).await?;
                    }
                }
                Ok::<_, s3db_core::Error>(())
            }));
        }
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("{e}"))?;
        }
        let mut total = 0.0;
        for id in ["a", "b", "c"] {
            let v = h.consolidate(id).await?;
            let txs = assert_all_applied(&h, id).await?;
            assert_eq!(v, txs.iter().map(|t| t.value).sum::<f64>(), "{mode:?} {id}");
            assert_eq!(h.recalculate(id).await?, v);
            total += v;
        }
        let expected: u32 = (0..12u32)
            .flat_map(|t| (0..10u32).map(move |i| t * 100 + i))
            .sum();
        assert_eq!(total, f64::from(expected), "{mode:?}");
        db.disconnect().await?;
    }
    Ok(())
}

#[tokio::test]
async fn async_mode_consolidates_in_the_background_and_stops_on_uninstall() -> TestResult {
    let t = TestStore::file("eventual_background");
    let db = connect(&t.conn).await?;
    let p = db
        .use_plugin(
            EventualConsistencyPlugin::builder()
                .field("wallets", "balance")
                .consolidation_interval(Duration::from_millis(50))
                .gc_interval(Duration::from_millis(50))
                .build()?,
        )
        .await?;
    let wallets = db.create_resource(wallets()).await?;
    let h = wallets.eventual("balance");
    h.add("w", 4).await?;
    h.add("w", 6).await?;
    // The record's value is written before its transactions are marked applied: wait for both.
    let consolidated = async {
        while h.value("w").await? != Some(10.0)
            || !h.transactions("w").await?.iter().all(|t| t.applied)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, s3db_core::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(10), consolidated)
        .await
        .unwrap_or_else(|_| panic!("the background task never consolidated"))?;
    assert_all_applied(&h, "w").await?;
    let cx = db
        .plugin_context(PLUGIN_NAME)
        .unwrap_or_else(|| panic!("context"));
    assert_eq!(cx.running_tasks(), 2, "consolidation and gc loops");

    db.uninstall_plugin(PLUGIN_NAME, false).await?;
    assert_eq!(cx.running_tasks(), 0, "nothing left running");
    assert!(
        h.add("w", 1).await.is_err(),
        "handles refuse after uninstall"
    );
    assert!(!wallets.eventual("balance").is_managed());
    drop(p);

    // Another process writes a pending transaction: nobody consolidates it any more here.
    let (other, h2) = open(&t.conn, plugin(Mode::Async)).await?;
    h2.add("w", 100).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h2.value("w").await?,
        Some(10.0),
        "the stopped plugin's loop is gone"
    );
    assert_eq!(h2.consolidate("w").await?, 110.0);
    other.disconnect().await?;
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_failed_sync_consolidation_is_picked_up_in_the_background() -> TestResult {
    let t = TestStore::memory("eventual_sync_fallback");
    let (db, switch) = crashable(&t.conn).await?;
    let p = db
        .use_plugin(
            EventualConsistencyPlugin::builder()
                .field("wallets", "balance")
                .mode(Mode::Sync)
                .consolidation_interval(Duration::from_millis(50))
                .build()?,
        )
        .await?;
    db.create_resource(wallets()).await?;
    let h = p.field("wallets", "balance");
    switch.arm(puts(&["resource=wallets/data/"], 0, FaultMode::Fail));
    let receipt = h.add("w", 9).await?;
    assert_eq!(receipt.value, None, "durable, not consolidated");
    switch.disarm();
    let done = async {
        while h.value("w").await? != Some(9.0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, s3db_core::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .unwrap_or_else(|_| panic!("never consolidated"))?;
    db.disconnect().await?;
    Ok(())
}
