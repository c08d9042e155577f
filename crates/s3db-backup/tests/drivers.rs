//! The s3 driver (parts in another store), multi strategies, custom drivers, configuration
//! errors.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use s3db_backup::{
    ArchiveTarget, BackupDriver, BackupError, BackupPlugin, BackupResult, BackupStatus,
    ConfigError, Driver, FilesystemDriver, MultiStrategy, RestoreMode, S3Driver,
};
use s3db_core::plugin::{SelectionError, async_trait};
use s3db_core::testing::TestStore;
use s3db_core::{Key, Store};
use serde_json::json;

/// A destination that always fails.
struct Broken;

#[async_trait]
impl BackupDriver for Broken {
    fn kind(&self) -> &'static str {
        "broken"
    }
    async fn put(&self, _: &ArchiveTarget, _: &Path) -> BackupResult<String> {
        Err(BackupError::Driver {
            destination: "broken".into(),
            reason: "down".into(),
        })
    }
    async fn get(&self, _: &str, _: &Path) -> BackupResult<()> {
        Err(BackupError::Driver {
            destination: "broken".into(),
            reason: "down".into(),
        })
    }
    async fn delete(&self, _: &str) -> BackupResult<()> {
        Ok(())
    }
}

fn broken() -> Driver {
    Driver::Single(Arc::new(Broken))
}

#[tokio::test]
async fn s3_driver_uploads_parts_to_another_store() -> TestResult {
    let ts = TestStore::memory("bk-s3drv");
    let target = TestStore::memory("bk-s3drv-target");
    let driver = S3Driver::from_connection(target.conn.clone())?
        .prefix("archives/{date}")?
        .part_size(1024)?;
    let plugin = BackupPlugin::builder().driver(driver).build()?;
    let (db, backup, users) = open(&ts.conn, plugin).await?;
    seed(&users, 60).await?;
    let original = snapshot(&users).await?;
    let full = backup.full().await?;
    let location = full.drivers[0].location.clone().unwrap_or_default();
    assert!(location.starts_with(&format!("archives/{}", full.started_at.format("%Y-%m-%d"))));
    let keys = target
        .store
        .list_keys(Some(&Key::parse(&location)?))
        .await?;
    let parts = keys
        .iter()
        .filter(|k| k.last_part().starts_with("part-"))
        .count();
    assert_eq!(parts as u64, full.size.div_ceil(1024), "{keys:?}");
    assert!(parts > 1);
    assert!(keys.iter().any(|k| k.last_part() == "parts.json"));

    users.delete_many(&["u000", "u010"]).await;
    backup.restore(&full.id, RestoreMode::Merge).await?;
    assert_eq!(snapshot(&users).await?, original);

    // Without parts.json the archive is incomplete: never read.
    target
        .store
        .delete(&Key::parse(&location)?.join("parts.json")?)
        .await?;
    let err = backup.restore(&full.id, RestoreMode::Merge).await;
    assert!(matches!(err, Err(BackupError::Driver { .. })), "{err:?}");
    // Deleting removes every part.
    backup.delete(&full.id).await?;
    assert!(
        target
            .store
            .list_keys(Some(&Key::parse(&location)?))
            .await?
            .is_empty()
    );
    assert!(backup.status(&full.id).await?.is_none());
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn s3_driver_on_the_s3_server() -> TestResult {
    let (Some(ts), Some(target)) = (TestStore::s3("bk-s3srv"), TestStore::s3("bk-s3srv-t")) else {
        return Ok(());
    };
    let driver = S3Driver::from_connection(target.conn.clone())?.part_size(4096)?;
    let plugin = BackupPlugin::builder().driver(driver).build()?;
    let (db, backup, users) = open(&ts.conn, plugin).await?;
    seed(&users, 5).await?;
    let original = snapshot(&users).await?;
    let full = backup.full().await?;
    users.update("u001", json!({"name": "x"})).await?;
    backup.restore(&full.id, RestoreMode::Merge).await?;
    assert_eq!(snapshot(&users).await?, original);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn multi_all_writes_everywhere_and_falls_back_on_read() -> TestResult {
    let ts = TestStore::memory("bk-multi-all");
    let dir = tempfile::tempdir()?;
    let target = TestStore::memory("bk-multi-all-t");
    let driver = Driver::multi(
        MultiStrategy::All,
        [
            Driver::filesystem(format!("{}/{{date}}", dir.path().display()))?,
            S3Driver::from_connection(target.conn.clone())?.into(),
        ],
    );
    let (db, backup, users) =
        open(&ts.conn, BackupPlugin::builder().driver(driver).build()?).await?;
    seed(&users, 3).await?;
    let original = snapshot(&users).await?;
    let full = backup.full().await?;
    assert_eq!(full.drivers.len(), 2);
    assert!(full.drivers.iter().all(|d| d.ok));
    assert_eq!(full.drivers[0].destination, "multi[0]:filesystem");
    assert_eq!(full.drivers[1].destination, "multi[1]:s3");
    // The first copy is lost: the second one serves the restore.
    std::fs::remove_file(full.drivers[0].location.clone().unwrap_or_default())?;
    users.delete("u000").await?;
    backup.restore(&full.id, RestoreMode::Merge).await?;
    assert_eq!(snapshot(&users).await?, original);
    db.disconnect().await?;

    // One destination down: the backup fails and the copy that was made is removed.
    let ts = TestStore::memory("bk-multi-all-fail");
    let dir = tempfile::tempdir()?;
    let driver = Driver::multi(
        MultiStrategy::All,
        [
            Driver::filesystem(dir.path().display().to_string())?,
            broken(),
        ],
    );
    let (db, backup, users) =
        open(&ts.conn, BackupPlugin::builder().driver(driver).build()?).await?;
    seed(&users, 2).await?;
    let err = backup.full().await;
    assert!(matches!(err, Err(BackupError::Driver { .. })), "{err:?}");
    let listed = backup.list().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, BackupStatus::Failed);
    assert!(listed[0].error.is_some());
    assert!(listed[0].drivers.iter().all(|d| !d.ok));
    let archives = std::fs::read_dir(dir.path())?.count();
    assert_eq!(archives, 0, "the successful copy was rolled back");
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn multi_any_and_priority() -> TestResult {
    let ts = TestStore::memory("bk-multi-any");
    let dir = tempfile::tempdir()?;
    let fs = || Driver::filesystem(dir.path().display().to_string());
    let any = Driver::multi(MultiStrategy::Any, [broken(), fs()?]);
    let (db, backup, users) = open(&ts.conn, BackupPlugin::builder().driver(any).build()?).await?;
    seed(&users, 2).await?;
    let b = backup.full().await?;
    assert_eq!(b.status, BackupStatus::Completed);
    assert_eq!(
        b.drivers.iter().map(|d| d.ok).collect::<Vec<_>>(),
        [false, true]
    );
    backup.restore(&b.id, RestoreMode::Merge).await?;
    db.disconnect().await?;

    // Priority: the first destination that works, and only that one.
    let ts = TestStore::memory("bk-multi-prio");
    let dir2 = tempfile::tempdir()?;
    let prio = Driver::multi(
        MultiStrategy::Priority,
        [
            fs()?,
            Driver::filesystem(dir2.path().display().to_string())?,
        ],
    );
    let (db, backup, users) = open(&ts.conn, BackupPlugin::builder().driver(prio).build()?).await?;
    seed(&users, 2).await?;
    let b = backup.full().await?;
    assert_eq!(b.drivers.len(), 1);
    assert_eq!(std::fs::read_dir(dir2.path())?.count(), 0);
    db.disconnect().await?;

    let ts = TestStore::memory("bk-multi-prio2");
    let prio = Driver::multi(MultiStrategy::Priority, [broken(), fs()?]);
    let (db, backup, users) = open(&ts.conn, BackupPlugin::builder().driver(prio).build()?).await?;
    seed(&users, 2).await?;
    let b = backup.full().await?;
    assert_eq!(
        b.drivers.iter().map(|d| d.ok).collect::<Vec<_>>(),
        [false, true]
    );
    db.disconnect().await?;
    Ok(())
}

#[test]
fn configuration_is_validated() {
    let err = BackupPlugin::builder().build().err();
    assert_eq!(err, Some(ConfigError::NoDriver));
    let err = BackupPlugin::builder().filesystem("  ").build().err();
    assert!(matches!(err, Some(ConfigError::BadPath { .. })), "{err:?}");
    let err = BackupPlugin::builder()
        .filesystem("./b/{day}")
        .build()
        .err();
    assert!(matches!(err, Some(ConfigError::BadPath { .. })), "{err:?}");
    let err = BackupPlugin::builder().s3("nope://x").build().err();
    assert!(
        matches!(err, Some(ConfigError::BadConnection { .. })),
        "{err:?}"
    );
    let err = S3Driver::new("memory://b/p")
        .and_then(|d| d.part_size(10))
        .err();
    assert_eq!(err, Some(ConfigError::PartSize { bytes: 10 }));
    let err = S3Driver::new("memory://b/p")
        .and_then(|d| d.prefix("a/../b"))
        .err();
    assert!(matches!(err, Some(ConfigError::BadPath { .. })), "{err:?}");
    let ok = || BackupPlugin::builder().filesystem("./b");
    assert_eq!(
        ok().page_size(0).build().err(),
        Some(ConfigError::PageSize { size: 0 })
    );
    assert_eq!(
        ok().concurrency(0).build().err(),
        Some(ConfigError::ZeroConcurrency)
    );
    assert!(matches!(
        ok().include(["plg_x"]).build().err(),
        Some(ConfigError::Selection(
            SelectionError::BadResourceName { .. }
        ))
    ));
    assert!(matches!(
        ok().include(["a"]).exclude(["a"]).build().err(),
        Some(ConfigError::Selection(
            SelectionError::IncludedAndExcluded { .. }
        ))
    ));
    assert_eq!(
        BackupPlugin::builder()
            .driver(Driver::multi(MultiStrategy::All, Vec::<Driver>::new()))
            .build()
            .err(),
        Some(ConfigError::EmptyMulti)
    );
    assert!(FilesystemDriver::new("./x/{date}/").is_ok());
    let _: Store = S3Driver::new("memory://b/p")
        .unwrap_or_else(|e| panic!("{e}"))
        .store()
        .clone();
}

#[tokio::test]
async fn include_and_exclude_choose_resources() -> TestResult {
    let ts = TestStore::memory("bk-include");
    let dir = tempfile::tempdir()?;
    let plugin = BackupPlugin::builder()
        .filesystem(dir.path().display().to_string())
        .exclude(["notes"])
        .build()?;
    let (db, backup, _users) = open(&ts.conn, plugin).await?;
    db.create_resource(notes()).await?;
    let b = backup.full().await?;
    assert_eq!(b.resource_names(), ["users"]);
    let b = backup
        .backup_resources(s3db_backup::BackupKind::Full, ["notes"])
        .await?;
    assert_eq!(b.resource_names(), ["notes"]);
    db.disconnect().await?;
    Ok(())
}
