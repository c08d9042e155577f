//! Grandfather-father-son pruning with injected dates.

mod common;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use common::*;
use s3db_backup::{BackupEvent, BackupPlugin, ManualClock, Retention};
use s3db_core::testing::TestStore;

#[tokio::test]
async fn gfs_prunes_archives_and_records_with_injected_dates() -> TestResult {
    let ts = TestStore::file("bk-gfs");
    let dir = tempfile::tempdir()?;
    let start = Utc
        .with_ymd_and_hms(2023, 11, 20, 3, 0, 0)
        .single()
        .unwrap_or_else(|| panic!("date"));
    let clock = Arc::new(ManualClock::new(start));
    let plugin = BackupPlugin::builder()
        .filesystem(format!("{}/{{date}}", dir.path().display()))
        .clock(clock.clone())
        .build()?;
    let (db, backup, users) = open(&ts.conn, plugin).await?;
    let mut events = db.subscribe();
    seed(&users, 2).await?;
    // One full backup a day from 2023-11-20 to 2024-01-09 (51 days), and a second one on the
    // last day.
    let mut made = Vec::new();
    for _ in 0..51 {
        made.push(backup.full().await?);
        clock.advance(chrono::Duration::days(1));
    }
    clock.advance(chrono::Duration::days(-1) + chrono::Duration::hours(5));
    made.push(backup.full().await?);
    let day = |b: &s3db_backup::BackupInfo| b.started_at.format("%Y-%m-%d %H").to_string();

    let pruned = backup
        .prune_with(&Retention::new().daily(3).weekly(2).monthly(2).yearly(5))
        .await?;
    let mut kept: Vec<String> = backup.list().await?.iter().map(day).collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            // yearly: newest of 2023 and of 2024
            "2023-12-31 03",
            // weekly: ISO week 2 of 2024 (Mon 8th), and week 1 (newest: Sun 7th)
            "2024-01-07 03",
            // daily: 9th (the newest of the day, 08:00), 8th, 7th; monthly: Jan (9th), Dec (31st)
            "2024-01-08 03",
            "2024-01-09 08",
        ]
    );
    assert_eq!(pruned.len(), made.len() - 4);
    // The pruned archives are gone from the folder, dated folders too.
    let archives: Vec<_> = walk(dir.path());
    assert_eq!(archives.len(), 4, "{archives:?}");
    let evs = backup_events(&mut events);
    assert!(
        evs.iter()
            .any(|e| matches!(e, BackupEvent::Pruned { ids } if ids.len() == pruned.len()))
    );
    // Nothing else to prune.
    assert!(
        backup
            .prune_with(&Retention::new().daily(3).weekly(2).monthly(2).yearly(5))
            .await?
            .is_empty()
    );
    db.disconnect().await?;
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "gz") {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn configured_retention_runs_after_each_backup_and_keeps_bases() -> TestResult {
    let ts = TestStore::memory("bk-gfs-auto");
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0)
            .single()
            .unwrap_or_else(|| panic!("date")),
    ));
    let plugin = BackupPlugin::builder()
        .filesystem(dir.path().display().to_string())
        .clock(clock.clone())
        .retention(Retention::new().daily(2))
        .build()?;
    let (db, backup, users) = open(&ts.conn, plugin).await?;
    seed(&users, 2).await?;
    let full = backup.full().await?;
    for i in 0..4 {
        clock.advance(chrono::Duration::days(1));
        users.update("u000", serde_json::json!({"age": i})).await?;
        backup.incremental().await?;
    }
    let list = backup.list().await?;
    // Two days kept; their incremental chain down to the full backup is kept as well.
    assert_eq!(
        list.len(),
        5,
        "{:?}",
        list.iter().map(|b| &b.id).collect::<Vec<_>>()
    );
    assert!(list.iter().any(|b| b.id == full.id));

    // Two later full backups: the old chain is no longer needed by anything kept.
    clock.advance(chrono::Duration::days(1));
    let full2 = backup.full().await?;
    clock.advance(chrono::Duration::days(1));
    let full3 = backup.full().await?;
    let ids: Vec<String> = backup.list().await?.into_iter().map(|b| b.id).collect();
    assert_eq!(ids, [full3.id, full2.id]);
    db.disconnect().await?;
    Ok(())
}
