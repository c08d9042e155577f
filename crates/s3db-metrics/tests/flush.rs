//! Periodic flush into plg_metrics / plg_metrics_slow, retention, cleanup and purge.

mod common;

use s3db_core::plugin::CustomEvent;
use std::time::{Duration, Instant};

use common::{EXPECTED, connect, users, workload};
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, Key};
use s3db_metrics::{METRICS_RESOURCE, MetricsEvent, MetricsPlugin, SLOW_RESOURCE};
use serde_json::json;

type TestResult = Result<(), Error>;

async fn wait_for<F, Fut>(what: &str, mut done: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await? {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn keys_under(db: &Database, resource: &str) -> Result<usize, Error> {
    let prefix = Key::parse(&format!("resource={resource}"))?;
    Ok(db.store().list_keys(Some(&prefix)).await?.len())
}

#[tokio::test]
async fn the_periodic_flush_writes_each_period() -> TestResult {
    let t = TestStore::memory("metrics_flush_periodic");
    let db = connect(t.conn.clone()).await?;
    let mut events = db.subscribe();
    let metrics = db
        .use_plugin(
            MetricsPlugin::builder()
                .flush_every(Duration::from_millis(50))
                .slow_threshold(Duration::ZERO)
                .build()?,
        )
        .await?;
    assert!(db.resource(METRICS_RESOURCE).is_some() && db.resource(SLOW_RESOURCE).is_some());
    let users = db.create_resource(users()).await?;
    workload(&users).await?;
    let total: u64 = EXPECTED.iter().map(|(_, c, _)| c).sum();

    // The background flush writes, per period, one record per operation that ran (a period may
    // end in the middle of the workload: sum over periods), and every slow operation.
    wait_for("the workload to be flushed", || async {
        Ok(metrics
            .history()
            .await?
            .iter()
            .map(|r| r.count)
            .sum::<u64>()
            == total)
    })
    .await?;
    let history = metrics.history().await?;
    for (op, count, errors) in EXPECTED {
        let records: Vec<_> = history.iter().filter(|r| r.operation == op).collect();
        assert!(!records.is_empty(), "{op} flushed");
        let sum = |f: fn(&&s3db_metrics::FlushedMetrics) -> u64| records.iter().map(f).sum::<u64>();
        assert_eq!(
            (sum(|r| r.count), sum(|r| r.errors), sum(|r| r.slow)),
            (count, errors, count),
            "{op}"
        );
        for r in records {
            assert_eq!(r.resource, "users");
            assert!(
                r.min_ms <= r.p50_ms
                    && r.p50_ms <= r.p95_ms
                    && r.p95_ms <= r.p99_ms
                    && r.p99_ms <= r.max_ms,
                "{r:?}"
            );
            assert!(r.period_start <= r.period_end);
        }
    }
    wait_for("the slow operations", || async {
        Ok(metrics.slow_history().await?.len() == usize::try_from(total).unwrap_or_default())
    })
    .await?;
    let slow = metrics.slow_history().await?;
    assert_eq!(slow.last().map(|s| s.operation.as_str()), Some("delete"));

    // A later period: only what ran since is written.
    let n = history.len();
    users.get("u0").await?;
    wait_for("the next flush", || async {
        Ok(metrics.history().await?.len() == n + 1)
    })
    .await?;
    let history = metrics.history().await?;
    let last = history.last().unwrap_or_else(|| panic!("records"));
    assert_eq!((last.operation.as_str(), last.count), ("get", 1));
    assert!(
        history[..n]
            .iter()
            .all(|r| r.period_end <= last.period_start)
    );

    let mut flushed = 0;
    while let Ok(event) = events.try_recv() {
        if let Some(MetricsEvent::Flushed { records, .. }) = MetricsEvent::from_event(&event) {
            flushed += records;
        }
    }
    assert_eq!(flushed, n + 1, "typed Flushed events");

    // Stopping flushes what is left.
    users.get("u1").await?;
    db.disconnect().await?;
    let after_stop = metrics.history().await?;
    assert_eq!(after_stop.len(), n + 2, "the final flush at stop");
    Ok(())
}

#[tokio::test]
async fn cleanup_deletes_old_records_and_retention_applies_at_each_flush() -> TestResult {
    let t = TestStore::file("metrics_cleanup");
    let db = connect(t.conn.clone()).await?;
    // An interval long enough that only explicit flushes run here.
    let metrics = db
        .use_plugin(
            MetricsPlugin::builder()
                .flush_every(Duration::from_secs(3600))
                .slow_threshold(Duration::ZERO)
                .retention(Duration::from_millis(800))
                .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    users.insert(json!({"id": "a", "name": "a"})).await?;
    let first = metrics.flush().await?;
    assert_eq!((first.records, first.slow, first.deleted), (1, 1, 0));
    tokio::time::sleep(Duration::from_millis(250)).await;
    users.get("a").await?;
    let second = metrics.flush().await?;
    assert_eq!((second.records, second.slow, second.deleted), (1, 1, 0));
    assert_eq!(
        metrics.flush().await?.records,
        0,
        "nothing new, nothing written"
    );

    // cleanup(older_than) removes records flushed before the cutoff only.
    assert_eq!(
        metrics.cleanup(Duration::from_millis(150)).await?,
        2,
        "the first flush's two"
    );
    let history = metrics.history().await?;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].operation, "get");
    assert_eq!(metrics.slow_history().await?.len(), 1);
    assert_eq!(metrics.cleanup(Duration::from_secs(3600)).await?, 0);

    // Retention (800 ms) at the next flush removes the second flush's records.
    tokio::time::sleep(Duration::from_millis(850)).await;
    users.count().await?;
    let third = metrics.flush().await?;
    assert_eq!((third.records, third.deleted), (1, 2));
    let history = metrics.history().await?;
    assert_eq!(
        history
            .iter()
            .map(|r| r.operation.as_str())
            .collect::<Vec<_>>(),
        ["count"]
    );
    assert_eq!(
        metrics.cleanup(Duration::ZERO).await?,
        2,
        "everything flushed before now"
    );
    assert!(metrics.history().await?.is_empty());
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn uninstall_with_purge_removes_the_flushed_records() -> TestResult {
    let t = TestStore::memory("metrics_purge");
    let db = connect(t.conn.clone()).await?;
    let metrics = db
        .use_plugin(
            MetricsPlugin::builder()
                .flush_every(Duration::from_secs(3600))
                .slow_threshold(Duration::ZERO)
                .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    workload(&users).await?;
    metrics.flush().await?;
    assert!(keys_under(&db, METRICS_RESOURCE).await? > 0);
    assert!(keys_under(&db, SLOW_RESOURCE).await? > 0);
    let user_keys = keys_under(&db, "users").await?;

    // Without purge the records stay; a new instance sees them.
    db.uninstall_plugin("metrics", false).await?;
    let kept = keys_under(&db, METRICS_RESOURCE).await?;
    assert!(kept > 0);
    let again = db
        .use_plugin(
            MetricsPlugin::builder()
                .flush_every(Duration::from_secs(3600))
                .build()?,
        )
        .await?;
    assert_eq!(again.history().await?.len(), EXPECTED.len());

    let purged = db.uninstall_plugin("metrics", true).await?;
    assert!(purged >= u64::try_from(kept).unwrap_or_default());
    assert_eq!(keys_under(&db, METRICS_RESOURCE).await?, 0);
    assert_eq!(keys_under(&db, SLOW_RESOURCE).await?, 0);
    assert_eq!(
        keys_under(&db, "users").await?,
        user_keys,
        "user records untouched"
    );
    Ok(())
}

#[tokio::test]
async fn two_processes_flush_side_by_side() -> TestResult {
    // Two databases on one folder (as two processes would be): their records never collide.
    let t = TestStore::file("metrics_two_processes");
    let mut plugins = Vec::new();
    let mut dbs = Vec::new();
    for _ in 0..2 {
        let db = connect(t.conn.clone()).await?;
        let p = db
            .use_plugin(
                MetricsPlugin::builder()
                    .flush_every(Duration::from_secs(3600))
                    .build()?,
            )
            .await?;
        let users = db.create_resource(users()).await?;
        users.insert(json!({"name": "x"})).await?;
        plugins.push(p);
        dbs.push(db);
    }
    let (a, b) = tokio::join!(plugins[0].flush(), plugins[1].flush());
    assert_eq!((a?.records, b?.records), (1, 1));
    let history = plugins[0].history().await?;
    assert_eq!(history.len(), 2);
    assert_ne!(history[0].instance, history[1].instance);
    for db in dbs {
        db.disconnect().await?;
    }
    Ok(())
}
