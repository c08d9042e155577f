//! Full and incremental backups, restore modes, checksum verification, streaming by pages.

mod common;

use std::path::PathBuf;

use common::*;
use s3db_backup::{
    BackupError, BackupEvent, BackupKind, BackupPlugin, BackupStatus, RestoreMode, RestoreOptions,
};
use s3db_core::testing::TestStore;
use serde_json::json;

fn location(info: &s3db_backup::BackupInfo) -> PathBuf {
    PathBuf::from(
        info.drivers[0]
            .location
            .clone()
            .unwrap_or_else(|| panic!("no location")),
    )
}

async fn full_cycle(ts: TestStore) -> TestResult {
    let dir = tempfile::tempdir()?;
    let (db, backup, users) = open(&ts.conn, folder_plugin(dir.path())).await?;
    let mut events = db.subscribe();
    seed(&users, 5).await?;
    let original = snapshot(&users).await?;

    let full = backup.backup(BackupKind::Full).await?;
    assert_eq!(full.status, BackupStatus::Completed);
    assert_eq!(full.kind, BackupKind::Full);
    assert_eq!(full.resources["users"].records, 5);
    assert_eq!(full.resources["users"].present, 5);
    let checksum = full.checksum.clone().unwrap_or_default();
    assert_eq!(checksum.len(), 64);
    let path = location(&full);
    assert_eq!(std::fs::metadata(&path)?.len(), full.size);
    assert!(
        path.parent()
            .is_some_and(|p| p.ends_with(full.started_at.format("%Y-%m-%d").to_string())),
        "{{date}} in the path: {}",
        path.display()
    );
    assert!(full.finished_at.is_some_and(|f| f >= full.started_at));
    // The stored status record says the same.
    let stored = backup
        .status(&full.id)
        .await?
        .unwrap_or_else(|| panic!("status"));
    assert_eq!(stored, full);
    assert_eq!(backup.list().await?.len(), 1);
    // The archive holds s3db.json, a manifest, and the records as JSON lines.
    let archive = read_archive(&path);
    assert!(archive.contains_key("s3db.json") && archive.contains_key("manifest.json"));
    let mut archived = ids_under(&archive, "resources/users/records/");
    archived.sort();
    assert_eq!(archived, original.keys().cloned().collect::<Vec<_>>());

    let evs = backup_events(&mut events);
    assert!(
        matches!(&evs[0], BackupEvent::Started { id, .. } if *id == full.id),
        "{evs:?}"
    );
    assert!(
        matches!(&evs[1], BackupEvent::Completed { id, records, .. } if *id == full.id && records["users"] == 5),
        "{evs:?}"
    );

    // Change things: update, delete, insert.
    users.update("u000", json!({"name": "changed"})).await?;
    users.delete("u001").await?;
    users
        .insert(json!({"id": "extra", "name": "new one"}))
        .await?;

    // merge: archived versions come back, records not in the archive stay.
    let report = backup.restore(&full.id, RestoreMode::Merge).await?;
    assert_eq!(report.resources["users"].written, 5);
    assert_eq!(report.total().failed, 0, "{:?}", report.errors);
    let now = snapshot(&users).await?;
    assert_eq!(now.len(), 6);
    for (id, v) in &original {
        assert_eq!(&now[id], v);
    }
    assert!(now.contains_key("extra"));

    // skip: existing records are kept, missing ones come back.
    users
        .update("u000", json!({"name": "changed again"}))
        .await?;
    users.delete("u002").await?;
    let report = backup.restore(&full.id, RestoreMode::Skip).await?;
    assert_eq!(
        (
            report.resources["users"].written,
            report.resources["users"].skipped
        ),
        (1, 4)
    );
    let now = snapshot(&users).await?;
    assert_eq!(now["u000"]["name"], json!("changed again"));
    assert_eq!(now["u002"], original["u002"]);

    // replace: exactly the archive.
    let report = backup.restore(&full.id, RestoreMode::Replace).await?;
    assert_eq!(report.resources["users"].deleted, 6);
    assert_eq!(snapshot(&users).await?, original);

    let evs = backup_events(&mut events);
    assert!(evs.iter().any(|e| matches!(
        e,
        BackupEvent::RestoreStarted {
            mode: RestoreMode::Replace,
            ..
        }
    )));
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, BackupEvent::RestoreCompleted { .. }))
            .count(),
        3
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn full_backup_and_every_restore_mode_memory() -> TestResult {
    full_cycle(TestStore::memory("bk-full")).await
}

#[tokio::test]
async fn full_backup_and_every_restore_mode_file() -> TestResult {
    full_cycle(TestStore::file("bk-full")).await
}

#[tokio::test]
async fn full_backup_and_restore_on_the_s3_server() -> TestResult {
    let Some(ts) = TestStore::s3("bk-full") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (db, backup, users) = open(&ts.conn, folder_plugin(dir.path())).await?;
    seed(&users, 4).await?;
    let original = snapshot(&users).await?;
    let full = backup.full().await?;
    users.delete("u003").await?;
    users.update("u000", json!({"age": 99})).await?;
    backup.restore(&full.id, RestoreMode::Replace).await?;
    assert_eq!(snapshot(&users).await?, original);
    db.disconnect().await?;
    Ok(())
}

/// More records than a page: each page is its own archive entry (what the writer holds at
/// most), and everything comes back.
#[tokio::test]
async fn large_resources_are_streamed_page_by_page() -> TestResult {
    let ts = TestStore::file("bk-pages");
    let dir = tempfile::tempdir()?;
    let plugin = BackupPlugin::builder()
        .filesystem(dir.path().display().to_string())
        .page_size(10)
        .concurrency(4)
        .build()?;
    let (db, backup, users) = open(&ts.conn, plugin).await?;
    seed(&users, 35).await?;
    let original = snapshot(&users).await?;
    let full = backup.full().await?;
    let archive = read_archive(&location(&full));
    let pages: Vec<usize> = archive
        .iter()
        .filter(|(k, _)| k.starts_with("resources/users/records/"))
        .map(|(_, v)| v.lines().count())
        .collect();
    assert_eq!(pages, [10, 10, 10, 5]);
    let id_pages = archive
        .keys()
        .filter(|k| k.starts_with("resources/users/ids/"))
        .count();
    assert_eq!(id_pages, 4);

    // Restored into another database (same resource definition).
    let other = TestStore::memory("bk-pages-target");
    let db2 = connect(&other.conn).await?;
    let p2 = db2
        .use_plugin(
            BackupPlugin::builder()
                .filesystem(dir.path().display().to_string())
                .page_size(7)
                .build()?,
        )
        .await?;
    let users2 = db2.create_resource(common::users()).await?;
    // The status record lives in the source database: copy it over, as a user moving backups
    // between databases would.
    let meta = db
        .resource(s3db_backup::METADATA_RESOURCE)
        .unwrap_or_else(|| panic!("meta"));
    let rec = meta.get(&full.id).await?;
    db2.resource(s3db_backup::METADATA_RESOURCE)
        .unwrap_or_else(|| panic!("meta"))
        .insert_with_id(&full.id, rec.data())
        .await?;
    let report = p2.restore(&full.id, RestoreMode::Merge).await?;
    assert_eq!(report.resources["users"].written, 35);
    assert_eq!(snapshot(&users2).await?, original);
    db.disconnect().await?;
    db2.disconnect().await?;
    Ok(())
}

async fn incremental_cycle(ts: TestStore) -> TestResult {
    let dir = tempfile::tempdir()?;
    let plugin = BackupPlugin::builder()
        .filesystem(dir.path().display().to_string())
        .page_size(3)
        .build()?;
    let (db, backup, users) = open(&ts.conn, plugin).await?;
    let notes = db.create_resource(notes()).await?;
    seed(&users, 8).await?;
    notes.insert(json!({"id": "n1", "text": "kept"})).await?;
    // An incremental without any previous backup holds everything.
    let first = backup.incremental().await?;
    assert_eq!(first.resources["users"].records, 8);
    assert_eq!(first.resources["users"].base, None);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let full = backup.full().await?;
    let at_full = snapshot(&users).await?;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    users.update("u002", json!({"age": 200})).await?;
    users.insert(json!({"id": "u100", "name": "late"})).await?;
    users.delete("u005").await?;
    users.delete("u007").await?;
    let inc = backup.incremental().await?;
    let s = &inc.resources["users"];
    assert_eq!(s.base.as_deref(), Some(full.id.as_str()));
    assert_eq!(s.changed_since, Some(full.store_started_at));
    assert_eq!((s.records, s.deleted, s.present), (2, 2, 7));
    assert_eq!(inc.resources["notes"].records, 0);
    let archive = read_archive(&location(&inc));
    let mut changed = ids_under(&archive, "resources/users/records/");
    changed.sort();
    assert_eq!(changed, ["u002", "u100"]);
    assert_eq!(
        ids_under(&archive, "resources/users/deleted/"),
        ["u005", "u007"]
    );
    let after_inc = snapshot(&users).await?;

    // Nothing changed since: an empty incremental based on the previous one.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let empty = backup.incremental().await?;
    assert_eq!(
        empty.resources["users"].base.as_deref(),
        Some(inc.id.as_str())
    );
    assert_eq!(
        (
            empty.resources["users"].records,
            empty.resources["users"].deleted
        ),
        (0, 0)
    );

    // Replace is refused for an incremental; nothing is written.
    let err = backup.restore(&inc.id, RestoreMode::Replace).await;
    assert!(
        matches!(&err, Err(BackupError::ReplaceNeedsFull { base, .. }) if *base == full.id),
        "{err:?}"
    );

    // The chain restores the state at the incremental: full (replace), then incremental (merge).
    users.insert(json!({"id": "zzz", "name": "after"})).await?;
    users.update("u000", json!({"name": "after"})).await?;
    backup
        .restore(
            &full.id,
            RestoreOptions::new(RestoreMode::Replace).resources(["users"]),
        )
        .await?;
    assert_eq!(snapshot(&users).await?, at_full);
    let report = backup.restore(&inc.id, RestoreMode::Merge).await?;
    assert_eq!(report.resources["users"].written, 2);
    assert_eq!(report.resources["users"].deleted, 2);
    assert_eq!(snapshot(&users).await?, after_inc);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn incremental_holds_exactly_the_changes_memory() -> TestResult {
    incremental_cycle(TestStore::memory("bk-inc")).await
}

#[tokio::test]
async fn incremental_holds_exactly_the_changes_file() -> TestResult {
    incremental_cycle(TestStore::file("bk-inc")).await
}

#[tokio::test]
async fn a_corrupted_archive_is_refused_and_nothing_is_written() -> TestResult {
    let ts = TestStore::memory("bk-corrupt");
    let dir = tempfile::tempdir()?;
    let (db, backup, users) = open(&ts.conn, folder_plugin(dir.path())).await?;
    let mut events = db.subscribe();
    seed(&users, 3).await?;
    let full = backup.full().await?;
    users.delete_many(&["u000", "u001", "u002"]).await;
    let path = location(&full);
    let mut bytes = std::fs::read(&path)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes)?;
    let before = db.store().requests();
    for mode in [RestoreMode::Merge, RestoreMode::Replace, RestoreMode::Skip] {
        let err = backup.restore(&full.id, mode).await;
        assert!(
            matches!(&err, Err(BackupError::ChecksumMismatch { expected, actual, .. }) if *expected == full.checksum.clone().unwrap_or_default() && expected != actual),
            "{err:?}"
        );
    }
    let after = db.store().requests();
    assert_eq!(
        before.count(s3db_core::RequestKind::Put),
        after.count(s3db_core::RequestKind::Put),
        "nothing was written"
    );
    assert_eq!(users.count().await?, 0);
    let core: s3db_core::Error = BackupError::ChecksumMismatch {
        id: "x".into(),
        expected: "a".into(),
        actual: "b".into(),
    }
    .into();
    assert!(matches!(core, s3db_core::Error::Plugin { ref plugin, .. } if plugin == "backup"));
    assert!(
        backup_events(&mut events)
            .iter()
            .any(|e| matches!(e, BackupEvent::RestoreFailed { .. }))
    );

    // A missing archive is a typed error too.
    std::fs::remove_file(&path)?;
    let err = backup.restore(&full.id, RestoreMode::Merge).await;
    assert!(matches!(err, Err(BackupError::Io { .. })), "{err:?}");
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_typed_errors() -> TestResult {
    let ts = TestStore::memory("bk-bad");
    let dir = tempfile::tempdir()?;
    let (db, backup, users) = open(&ts.conn, folder_plugin(dir.path())).await?;
    seed(&users, 2).await?;
    let err = backup
        .backup_resources(BackupKind::Full, ["users", "nope"])
        .await;
    assert!(
        matches!(&err, Err(BackupError::UnknownResource { resource, .. }) if resource == "nope"),
        "{err:?}"
    );
    let err = backup
        .backup_resources(BackupKind::Full, [s3db_backup::METADATA_RESOURCE])
        .await;
    assert!(
        matches!(err, Err(BackupError::UnknownResource { .. })),
        "{err:?}"
    );
    assert!(backup.list().await?.is_empty(), "nothing recorded");
    assert!(matches!(
        backup.restore("no-such-backup", RestoreMode::Merge).await,
        Err(BackupError::NotFound(_))
    ));
    let full = backup.backup_resources(BackupKind::Full, ["users"]).await?;
    let err = backup
        .restore(
            &full.id,
            RestoreOptions::new(RestoreMode::Merge).resources(["notes"]),
        )
        .await;
    assert!(
        matches!(err, Err(BackupError::UnknownResource { .. })),
        "{err:?}"
    );
    // Not completed: refused.
    let meta = db
        .resource(s3db_backup::METADATA_RESOURCE)
        .unwrap_or_else(|| panic!("meta"));
    meta.update(&full.id, json!({"status": "in_progress"}))
        .await?;
    let err = backup.restore(&full.id, RestoreMode::Merge).await;
    assert!(
        matches!(err, Err(BackupError::NotCompleted { .. })),
        "{err:?}"
    );
    // A plugin that is not installed.
    let loose = folder_plugin(dir.path());
    assert!(matches!(loose.full().await, Err(BackupError::NotInstalled)));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_resource_missing_in_the_target_is_refused_before_writing() -> TestResult {
    let ts = TestStore::memory("bk-missing");
    let dir = tempfile::tempdir()?;
    let (db, backup, users) = open(&ts.conn, folder_plugin(dir.path())).await?;
    let notes = db.create_resource(notes()).await?;
    seed(&users, 2).await?;
    notes.insert(json!({"id": "n", "text": "t"})).await?;
    let full = backup.full().await?;
    assert_eq!(full.resource_names(), ["notes", "users"]);

    let other = TestStore::memory("bk-missing-target");
    let db2 = connect(&other.conn).await?;
    let p2 = db2.use_plugin(folder_plugin(dir.path())).await?;
    let users2 = db2.create_resource(common::users()).await?;
    let rec = db
        .resource(s3db_backup::METADATA_RESOURCE)
        .unwrap_or_else(|| panic!("meta"))
        .get(&full.id)
        .await?;
    db2.resource(s3db_backup::METADATA_RESOURCE)
        .unwrap_or_else(|| panic!("meta"))
        .insert_with_id(&full.id, rec.data())
        .await?;
    let err = p2.restore(&full.id, RestoreMode::Merge).await;
    assert!(
        matches!(&err, Err(BackupError::UnknownResource { resource, .. }) if resource == "notes"),
        "{err:?}"
    );
    assert_eq!(users2.count().await?, 0, "nothing written");
    let ok = p2
        .restore(
            &full.id,
            RestoreOptions::new(RestoreMode::Merge).resources(["users"]),
        )
        .await?;
    assert_eq!(ok.resources["users"].written, 2);
    db.disconnect().await?;
    db2.disconnect().await?;
    Ok(())
}
