//! A consolidator that fails or dies between its steps: the next consolidation ends with every
//! transaction folded exactly once.

mod common;

use s3db_core::plugin::CustomEvent;
use std::time::Duration;

use common::*;
use s3db_core::testing::{FaultMode, TestStore};
use s3db_eventual::{EventualConsistencyPlugin, EventualEvent, Mode};

const TX_DATA: &str = "resource=plg_wallets_tx_balance/data/";
const RECORD: &str = "resource=wallets/data/";
const LOCKS: &str = "plugin=eventual-consistency/locks/";

fn short_lease() -> EventualConsistencyPlugin {
    EventualConsistencyPlugin::builder()
        .field("wallets", "balance")
        .mode(Mode::Async)
        .consolidation_interval(Duration::from_secs(3600))
        .lock_ttl(Duration::from_millis(300))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Writes `n` pending transactions of 1..=n to `w` (on an already consolidated value of 1000).
async fn seed(h: &s3db_eventual::EventualHandle, n: u32) -> s3db_core::Result<f64> {
    h.set("w", 1000).await?;
    h.consolidate("w").await?;
    let mut sum = 1000.0;
    for v in 1..=n {
        h.add("w", v).await?;
        sum += f64::from(v);
    }
    Ok(sum)
}

async fn crash_then_rerun(
    crash: FaultMode,
    needles: &[&str],
    skip: u64,
    written: bool,
) -> TestResult {
    let t = TestStore::memory("eventual_crash");
    let (db, switch) = crashable(&t.conn).await?;
    let p = db.use_plugin(short_lease()).await?;
    db.create_resource(wallets()).await?;
    let h = p.field("wallets", "balance");
    let expected = seed(&h, 6).await?;
    let mut events = db.subscribe();

    switch.arm(puts(needles, skip, crash));
    let failed = h.consolidate("w").await;
    switch.disarm();
    assert!(
        failed.is_err(),
        "{crash:?} at {needles:?} after {skip}: the consolidation must fail"
    );
    assert!(switch.hits() > 0);
    // Whether the record write happened before the failure.
    let after_crash = h.value("w").await?;
    assert_eq!(after_crash, Some(if written { expected } else { 1000.0 }));

    // The re-run (here, or in any process) finishes the job: exact, nothing applied twice.
    let report = h.consolidate_report("w").await?;
    assert_eq!(
        report.value, expected,
        "{crash:?} at {needles:?} after {skip}"
    );
    if written {
        assert_eq!(report.applied, 0, "nothing folded twice");
        assert!(report.recovered > 0);
        let recovered = std::iter::from_fn(|| events.try_recv().ok())
            .filter_map(|e| EventualEvent::from_event(&e))
            .any(|e| matches!(e, EventualEvent::Recovered { .. }));
        assert!(recovered, "a Recovered event");
    } else {
        assert_eq!(report.applied, 6);
    }
    let txs = assert_all_applied(&h, "w").await?;
    assert_eq!(txs.len(), 7);
    assert_eq!(h.value("w").await?, Some(expected));
    assert_eq!(h.recalculate("w").await?, expected);
    assert_eq!(h.consolidate("w").await?, expected, "stable");
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn crash_after_the_record_write_before_any_mark() -> TestResult {
    crash_then_rerun(FaultMode::Fail, &[TX_DATA], 0, true).await
}

#[tokio::test]
async fn crash_after_some_marks() -> TestResult {
    crash_then_rerun(FaultMode::Fail, &[TX_DATA], 3, true).await
}

#[tokio::test]
async fn record_write_applied_but_its_answer_lost() -> TestResult {
    crash_then_rerun(FaultMode::AnswerLost, &[RECORD], 0, true).await
}

#[tokio::test]
async fn record_write_failed_before_reaching_the_store() -> TestResult {
    crash_then_rerun(FaultMode::Fail, &[RECORD], 0, false).await
}

#[tokio::test]
async fn crash_writing_the_intent() -> TestResult {
    crash_then_rerun(FaultMode::Fail, &["/consolidation/balance/"], 0, false).await
}

#[tokio::test]
async fn a_user_update_after_the_crash_does_not_confuse_recovery() -> TestResult {
    // Written, then a user changes another field (new version): still recognised as written.
    let t = TestStore::memory("eventual_crash_user_update");
    let (db, switch) = crashable(&t.conn).await?;
    let p = db.use_plugin(short_lease()).await?;
    let wallets = db.create_resource(wallets()).await?;
    let h = p.field("wallets", "balance");
    let expected = seed(&h, 4).await?;
    switch.arm(puts(&[TX_DATA], 0, FaultMode::Fail));
    assert!(h.consolidate("w").await.is_err());
    switch.disarm();
    wallets
        .update("w", serde_json::json!({"owner": "ann"}))
        .await?;
    assert_eq!(h.consolidate("w").await?, expected);
    assert_all_applied(&h, "w").await?;

    // Not written, then a user update: recognised as not written.
    h.add("w", 50).await?;
    switch.arm(puts(&[RECORD], 0, FaultMode::Fail));
    assert!(h.consolidate("w").await.is_err());
    switch.disarm();
    wallets
        .update("w", serde_json::json!({"owner": "bob"}))
        .await?;
    assert_eq!(h.consolidate("w").await?, expected + 50.0);
    assert_eq!(h.recalculate("w").await?, expected + 50.0);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_consolidator_that_dies_mid_way_is_taken_over_after_its_lease() -> TestResult {
    let t = TestStore::memory("eventual_crash_dies");
    let (db, switch) = crashable(&t.conn).await?;
    let p = db.use_plugin(short_lease()).await?;
    db.create_resource(wallets()).await?;
    let h = p.field("wallets", "balance");
    let expected = seed(&h, 5).await?;
    // It freezes on its second mark…
    switch.arm(puts(&[TX_DATA], 1, FaultMode::Hang));
    let dying = {
        let h = h.clone();
        tokio::spawn(async move { h.consolidate("w").await })
    };
    let frozen = async {
        while switch.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), frozen)
        .await
        .unwrap_or_else(|_| panic!("the consolidator never reached its marks"));
    // … and dies without releasing its lock (the release its guard attempts on drop hangs).
    switch.arm(puts(&[LOCKS], 0, FaultMode::Hang));
    dying.abort();
    let _ = dying.await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(switch.hits() > 0, "the release was attempted and swallowed");
    switch.disarm();
    assert_eq!(
        h.value("w").await?,
        Some(expected),
        "its record write happened"
    );
    // Another consolidator waits for the lease to expire, takes over and finishes.
    let started = std::time::Instant::now();
    let report = h.consolidate_report("w").await?;
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "it waited for the lease"
    );
    assert_eq!((report.value, report.applied), (expected, 0));
    assert!(report.recovered >= 4, "{report:?}");
    assert_all_applied(&h, "w").await?;
    assert_eq!(h.recalculate("w").await?, expected);
    db.disconnect().await?;
    Ok(())
}
