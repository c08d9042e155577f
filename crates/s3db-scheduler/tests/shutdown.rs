//! Stopping leaves nothing running: the tokio-cron-scheduler instance, its thread and runtime,
//! and the plugin's tasks. Alone in its test binary, so no other test's scheduler thread is
//! counted.

mod common;

use std::time::Duration;

use common::*;
use s3db_core::testing::TestStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_leaves_nothing_running() -> TestResult {
    let t = TestStore::memory("sched_stop");
    let before = timer_threads();
    let (db, runs) = connect(
        &t.conn,
        plugin(vec![recording_job("tick", Duration::from_secs(1), "me")]),
    )
    .await?;
    let s = scheduler(&db);
    assert!(s.is_running().await);
    assert_eq!(
        timer_threads(),
        before + 1,
        "one clock thread while started"
    );
    let cx = db
        .plugin_context("scheduler")
        .unwrap_or_else(|| panic!("context"));
    assert!(cx.running_tasks() >= 1);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(runs.count().await? >= 1);
    db.uninstall_plugin("scheduler", false).await?;
    assert!(!s.is_running().await, "tokio-cron-scheduler shut down");
    assert_eq!(
        timer_threads(),
        before,
        "its thread (and runtime, and tasks) are gone"
    );
    assert_eq!(cx.running_tasks(), 0, "no task of the plugin left");
    assert_eq!(s.runs_in_flight(), 0);
    let at_stop = runs.count().await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(runs.count().await?, at_stop, "no tick after uninstall");
    Ok(())
}
