//! Backups made at once by many tasks, several databases and several OS processes (this test
//! binary re-executed) on one bucket and one backup folder: distinct ids, intact archives,
//! consistent status records.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use s3db_backup::{BackupKind, BackupPlugin, BackupStatus, RestoreMode, S3Driver};
use s3db_core::ConnectionString;
use s3db_core::testing::{TestStore, TestWorker};

const CONN: &str = "S3DB_BACKUP_WORKER_CONN";
const DIR: &str = "S3DB_BACKUP_WORKER_DIR";
const COUNT: &str = "S3DB_BACKUP_WORKER_COUNT";

/// Checks that every status record is completed, ids are distinct, and each archive restores
/// (its checksum verified) in skip mode without writing anything.
async fn check_all(backup: &BackupPlugin, expected: usize) -> TestResult {
    let list = backup.list().await?;
    assert_eq!(list.len(), expected);
    let ids: BTreeSet<&str> = list.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids.len(), expected);
    let locations: BTreeSet<String> = list
        .iter()
        .filter_map(|b| b.drivers[0].location.clone())
        .collect();
    assert_eq!(locations.len(), expected, "one archive per backup");
    for b in &list {
        assert_eq!(b.status, BackupStatus::Completed, "{b:?}");
        let report = backup.restore(&b.id, RestoreMode::Skip).await?;
        assert_eq!(report.total().written, 0);
        assert_eq!(report.total().failed, 0);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_on_one_folder_back_up_at_once() -> TestResult {
    let ts = TestStore::file("bk-race");
    let dir = tempfile::tempdir()?;
    let (db1, b1, users) = open(&ts.conn, folder_plugin(dir.path())).await?;
    seed(&users, 20).await?;
    let (db2, b2, _) = open(&ts.conn, folder_plugin(dir.path())).await?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let b = if i % 2 == 0 { b1.clone() } else { b2.clone() };
        let kind = if i % 3 == 0 {
            BackupKind::Incremental
        } else {
            BackupKind::Full
        };
        tasks.push(tokio::spawn(async move { b.backup(kind).await }));
    }
    for t in tasks {
        let info = t.await??;
        assert_eq!(info.status, BackupStatus::Completed);
    }
    check_all(&b1, 8).await?;
    check_all(&b2, 8).await?;
    db1.disconnect().await?;
    db2.disconnect().await?;
    Ok(())
}

/// The worker "test": does nothing unless started by a parent test with its env vars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() -> TestResult {
    let Ok(conn) = std::env::var(CONN) else {
        return Ok(());
    };
    let conn = ConnectionString::parse(&conn)?;
    let dir = std::path::PathBuf::from(std::env::var(DIR)?);
    let count: usize = std::env::var(COUNT)?.parse()?;
    let db = connect(&conn).await?;
    let backup = db.use_plugin(folder_plugin(&dir)).await?;
    db.create_resource(users()).await?;
    for i in 0..count {
        let kind = if i % 2 == 0 {
            BackupKind::Full
        } else {
            BackupKind::Incremental
        };
        let info = backup.backup(kind).await?;
        println!("BACKUP {}", info.id);
    }
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_back_up_one_bucket_at_once() -> TestResult {
    let ts = TestStore::file("bk-procs");
    let dir = tempfile::tempdir()?;
    let (db, backup, users) = open(&ts.conn, folder_plugin(dir.path())).await?;
    seed(&users, 30).await?;
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(TestWorker::spawn(
            "worker_process",
            [
                (CONN, ts.conn.to_string().into()),
                (DIR, dir.path().as_os_str().to_owned()),
                (COUNT, "3".into()),
            ],
        )?);
    }
    let mut reported = BTreeSet::new();
    for child in children {
        let out = child.finish(Duration::from_secs(180)).await?;
        reported.extend(out.reports("BACKUP ").map(str::to_owned));
    }
    assert_eq!(reported.len(), 9);
    let listed: BTreeSet<String> = backup.list().await?.into_iter().map(|b| b.id).collect();
    assert_eq!(listed, reported);
    check_all(&backup, 9).await?;
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_back_up_at_once_on_the_s3_server() -> TestResult {
    let (Some(ts), Some(target)) = (TestStore::s3("bk-race-s3"), TestStore::s3("bk-race-s3-t"))
    else {
        return Ok(());
    };
    let plugin = || -> Result<BackupPlugin, s3db_backup::ConfigError> {
        BackupPlugin::builder()
            .driver(S3Driver::from_connection(target.conn.clone())?)
            .build()
    };
    let (db1, b1, users) = open(&ts.conn, plugin()?).await?;
    seed(&users, 3).await?;
    let (db2, b2, _) = open(&ts.conn, plugin()?).await?;
    let (r1, r2) = tokio::join!(b1.full(), b2.full());
    let (r1, r2) = (r1?, r2?);
    assert_ne!(r1.id, r2.id);
    check_all(&b1, 2).await?;
    db1.disconnect().await?;
    db2.disconnect().await?;
    Ok(())
}
