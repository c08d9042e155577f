//! A record's transaction log goes with the record: deleting it (`delete`, `delete_many`) or
//! clearing its resource (`delete_all`) deletes its transactions, consolidation intent and
//! pending marker, so that a record created again under the same id starts from a clean log —
//! also when the delete races with adds and consolidations, and when the clean-up fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use s3db_core::plugin::CustomEvent;
use s3db_core::testing::{FaultMode, TestStore};
use s3db_core::{ConnectionString, Database, Error, Key, Resource, ResourceConfig, Result};
use s3db_eventual::{EventualConsistencyPlugin, EventualEvent, EventualExt, EventualHandle, Mode};
use serde_json::json;

const TX: &str = "plg_users_tx_points";
const TX_DATA: &str = "resource=plg_users_tx_points/data/";
const LOCKS: &str = "plugin=eventual-consistency/locks/";
const RECORD: &str = "resource=users/data/";

fn users() -> ResourceConfig {
    ResourceConfig::new("users")
        .attribute("points", "number|default:0")
        .attribute("name", "string")
        .paranoid(false)
}

fn points(mode: Mode) -> EventualConsistencyPlugin {
    EventualConsistencyPlugin::builder()
        .field("users", "points")
        .mode(mode)
        .consolidation_interval(Duration::from_secs(3600))
        .lock_ttl(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("plugin config: {e}"))
}

async fn setup(db: &Database, mode: Mode) -> Result<(Resource, EventualHandle)> {
    db.use_plugin(points(mode)).await?;
    let users = db.create_resource(users()).await?;
    let h = users.eventual("points");
    Ok((users, h))
}

/// How many transaction objects the field has, fenced off or not.
async fn stored_transactions(db: &Database) -> Result<usize> {
    let tx = db.resource(TX).unwrap_or_else(|| panic!("{TX} exists"));
    Ok(tx.list_ids().await?.len())
}

/// The plugin's objects kept per record of `users` (intents and pending markers).
async fn per_record_objects(db: &Database) -> Result<Vec<String>> {
    let prefix = Key::parse("resource=users/plugin=eventual-consistency")?;
    Ok(db
        .store()
        .list_keys(Some(&prefix))
        .await?
        .into_iter()
        .map(|k| k.to_string())
        .collect())
}

/// `add 10, add 5, sub 3` in sync mode: 12.
async fn twelve(h: &EventualHandle, id: &str) -> Result<()> {
    assert_eq!(h.add(id, 10).await?.value, Some(10.0));
    assert_eq!(h.add(id, 5).await?.value, Some(15.0));
    assert_eq!(h.sub(id, 3).await?.value, Some(12.0));
    Ok(())
}

fn cleanup_failures(
    events: &mut tokio::sync::broadcast::Receiver<s3db_core::plugin::Event>,
) -> Vec<String> {
    std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|e| EventualEvent::from_event(&e))
        .filter_map(|e| match e {
            EventualEvent::CleanupFailed { id, error, .. } => {
                Some(format!("{}: {error}", id.unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Delete,
    DeleteMany,
    DeleteAll,
}

/// The reproduction: 12, delete, insert again, 12 — `recalculate` used to replay the old
/// record's transactions too and write 24.
async fn reinserted_record_starts_from_a_clean_log(
    conn: &ConnectionString,
    how: How,
) -> TestResult {
    let db = connect(conn).await?;
    let (users, h) = setup(&db, Mode::Sync).await?;
    let mut events = db.subscribe();
    users
        .insert(json!({"id": "alice", "name": "Alice"}))
        .await?;
    users.insert(json!({"id": "bob"})).await?;
    assert_eq!(users.get("alice").await?.get("points"), Some(&json!(0)));
    twelve(&h, "alice").await?;
    h.add("bob", 1).await?;
    let old: Vec<String> = h
        .transactions("alice")
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(old.len(), 3);

    match how {
        How::Delete => users.delete("alice").await?,
        How::DeleteMany => {
            for result in users.delete_many(&["alice", "bob"]).await {
                result?;
            }
        }
        How::DeleteAll => {
            users.delete_all().await?;
        }
    }
    assert!(!users.exists("alice").await?);
    assert!(h.transactions("alice").await?.is_empty(), "{how:?}");
    if how == How::Delete {
        assert_eq!(
            h.transactions("bob").await?.len(),
            1,
            "other records keep theirs"
        );
        assert_eq!(stored_transactions(&db).await?, 1);
        let left = per_record_objects(&db).await?;
        assert!(left.iter().all(|k| !k.ends_with("/alice")), "{left:?}");
    } else {
        assert!(h.transactions("bob").await?.is_empty());
        assert_eq!(stored_transactions(&db).await?, 0, "{how:?}");
        assert_eq!(per_record_objects(&db).await?, Vec::<String>::new());
    }

    users.insert(json!({"id": "alice"})).await?;
    assert_eq!(h.value("alice").await?, Some(0.0));
    twelve(&h, "alice").await?;
    assert_eq!(h.consolidate("alice").await?, 12.0, "{how:?}");
    assert_eq!(h.recalculate("alice").await?, 12.0, "{how:?}");
    assert_eq!(h.value("alice").await?, Some(12.0));
    let txs = assert_all_applied(&h, "alice").await?;
    assert!(
        txs.iter().all(|t| !old.contains(&t.id)),
        "the old ones are gone"
    );
    let batches: Vec<u64> = txs.iter().filter_map(|t| t.batch).collect();
    assert_eq!(batches, [1, 2, 3], "a new log");
    assert_eq!(cleanup_failures(&mut events), Vec::<String>::new());
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn delete_takes_the_log_with_it_on_memory() -> TestResult {
    for how in [How::Delete, How::DeleteMany, How::DeleteAll] {
        let t = TestStore::memory("eventual_delete_log");
        reinserted_record_starts_from_a_clean_log(&t.conn, how).await?;
    }
    Ok(())
}

#[tokio::test]
async fn delete_takes_the_log_with_it_on_file() -> TestResult {
    for how in [How::Delete, How::DeleteMany, How::DeleteAll] {
        let t = TestStore::file("eventual_delete_log");
        reinserted_record_starts_from_a_clean_log(&t.conn, how).await?;
    }
    Ok(())
}

#[tokio::test]
async fn pending_transactions_go_with_their_record() -> TestResult {
    for t in [
        TestStore::memory("eventual_delete_pending"),
        TestStore::file("eventual_delete_pending"),
    ] {
        let db = connect(&t.conn).await?;
        let (users, h) = setup(&db, Mode::Async).await?;
        users.insert(json!({"id": "alice"})).await?;
        h.add("alice", 10).await?;
        assert_eq!(h.consolidate("alice").await?, 10.0);
        h.add("alice", 5).await?; // pending
        users.delete("alice").await?;
        assert_eq!(stored_transactions(&db).await?, 0);
        assert_eq!(per_record_objects(&db).await?, Vec::<String>::new());
        assert_eq!(h.consolidate_pending().await?, 0, "no marker left");
        assert!(!users.exists("alice").await?, "not re-created");
        // A transaction added after the delete re-creates the record on consolidation.
        h.add("alice", 7).await?;
        assert_eq!(h.consolidate("alice").await?, 7.0);
        assert_eq!(h.recalculate("alice").await?, 7.0);
        assert!(users.exists("alice").await?);
        db.disconnect().await?;
    }
    Ok(())
}

const TASKS: u32 = 8;
const ADDS: u32 = 12;

/// Many tasks add to (and consolidate) one record while it is deleted, again and again, one by
/// one, in bulk and with the whole resource: the end state is consistent.
async fn delete_races_with_adds(conn: &ConnectionString, mode: Mode) -> TestResult {
    let db = connect(conn).await?;
    let (users, h) = setup(&db, mode).await?;
    let mut events = db.subscribe();
    users.insert(json!({"id": "r"})).await?;
    h.add("r", 1000).await?;
    // Adds done: the deletes stop after two thirds of them, so that the last ones race with the
    // clean-ups still under way, and the end state is what the race left.
    let added = Arc::new(AtomicU32::new(0));
    let deleter = {
        let (users, added) = (users.clone(), Arc::clone(&added));
        tokio::spawn(async move {
            // Deletes start every few milliseconds (each waits for the record's lock for its
            // clean-up, so several are under way at once): one by one, in bulk, the whole
            // resource.
            let mut deletes = Vec::new();
            while added.load(Ordering::SeqCst) < TASKS * ADDS * 2 / 3 {
                let users = users.clone();
                let round = deletes.len();
                deletes.push(tokio::spawn(async move {
                    match round % 3 {
                        0 => users.delete("r").await,
                        1 => users.delete_many(&["r", "r"]).await.into_iter().collect(),
                        _ => users.delete_all().await.map(drop),
                    }
                }));
                tokio::time::sleep(Duration::from_millis(2 + (round % 4) as u64)).await;
            }
            let rounds = deletes.len();
            for delete in deletes {
                delete.await.unwrap_or_else(|e| panic!("delete: {e}"))?;
            }
            Ok::<_, Error>(rounds)
        })
    };
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (h, added) = (h.clone(), Arc::clone(&added));
        tasks.push(tokio::spawn(async move {
            for i in 0..ADDS {
                h.add("r", task * 100 + i + 1).await?;
                added.fetch_add(1, Ordering::SeqCst);
                if (task + i) % 3 == 0 {
                    // May lose the record to a delete under it: an error, retried later.
                    let _ = h.consolidate("r").await;
                }
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("adder: {e}"))?;
    }
    let rounds = deleter.await.unwrap_or_else(|e| panic!("deleter: {e}"))?;
    assert!(
        rounds >= 3,
        "{mode:?}: the deletes raced with the adds ({rounds} rounds)"
    );

    let consolidated = h.consolidate("r").await?;
    let recalculated = h.recalculate("r").await?;
    assert_eq!(consolidated, recalculated, "{mode:?}");
    assert_eq!(h.consolidate("r").await?, consolidated, "{mode:?}: stable");
    let txs = assert_all_applied(&h, "r").await?;
    let sum: f64 = txs.iter().map(|t| t.value).sum();
    assert_eq!(consolidated, sum, "{mode:?}: the value is the log");
    assert_eq!(h.value("r").await?, Some(consolidated));
    assert_eq!(
        stored_transactions(&db).await?,
        txs.len(),
        "{mode:?}: nothing dead left behind"
    );
    assert_eq!(cleanup_failures(&mut events), Vec::<String>::new());
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_racing_with_adds_end_consistent_on_memory() -> TestResult {
    for mode in [Mode::Sync, Mode::Async] {
        for _ in 0..3 {
            let t = TestStore::memory("eventual_delete_race");
            delete_races_with_adds(&t.conn, mode).await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_racing_with_adds_end_consistent_on_file() -> TestResult {
    for mode in [Mode::Sync, Mode::Async] {
        let t = TestStore::file("eventual_delete_race");
        delete_races_with_adds(&t.conn, mode).await?;
    }
    Ok(())
}

/// Every DELETE of a transaction fails: the user's delete succeeds, the old transactions stay
/// behind fenced off, and the id used again counts only its new ones.
async fn failed_deletes_leave_only_fenced_transactions(conn: &ConnectionString) -> TestResult {
    let (db, switch) = crashable(conn).await?;
    let (users, h) = setup(&db, Mode::Sync).await?;
    users.insert(json!({"id": "alice"})).await?;
    twelve(&h, "alice").await?;
    let mut events = db.subscribe();

    switch.arm(deletes(&[TX_DATA], 0, FaultMode::Fail));
    users.delete("alice").await?;
    assert!(switch.hits() > 0, "the clean-up was hit");
    assert!(!users.exists("alice").await?, "the record is deleted");
    let failures = cleanup_failures(&mut events);
    assert!(
        failures.len() == 1 && failures[0].starts_with("alice: "),
        "{failures:?}"
    );
    assert_eq!(stored_transactions(&db).await?, 3, "left behind");
    assert!(h.transactions("alice").await?.is_empty(), "fenced off");

    // The id is used again while they are still there (their deletes still fail).
    users.insert(json!({"id": "alice"})).await?;
    twelve(&h, "alice").await?;
    assert_eq!(h.consolidate("alice").await?, 12.0);
    assert_eq!(h.recalculate("alice").await?, 12.0);
    assert_eq!(h.transactions("alice").await?.len(), 3);
    assert_eq!(stored_transactions(&db).await?, 6);
    assert!(h.purge("alice").await.is_err(), "deletes still fail");

    // Once deletes work again, purge deletes them (as the record's next consolidation would).
    switch.disarm();
    assert_eq!(h.purge("alice").await?, 3);
    assert_eq!(h.purge("alice").await?, 0);
    assert_eq!(stored_transactions(&db).await?, 3);
    assert_eq!(h.consolidate("alice").await?, 12.0);
    assert_eq!(h.recalculate("alice").await?, 12.0);
    assert_all_applied(&h, "alice").await?;
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_failed_clean_up_never_fails_the_delete_on_memory() -> TestResult {
    let t = TestStore::memory("eventual_delete_fault");
    failed_deletes_leave_only_fenced_transactions(&t.conn).await
}

#[tokio::test]
async fn a_failed_clean_up_never_fails_the_delete_on_file() -> TestResult {
    let t = TestStore::file("eventual_delete_fault");
    failed_deletes_leave_only_fenced_transactions(&t.conn).await
}

#[tokio::test]
async fn a_clean_up_that_cannot_lock_is_finished_by_the_background_consolidation() -> TestResult {
    for t in [
        TestStore::memory("eventual_delete_nolock"),
        TestStore::file("eventual_delete_nolock"),
    ] {
        let (db, switch) = crashable(&t.conn).await?;
        let (users, h) = setup(&db, Mode::Sync).await?;
        users.insert(json!({"id": "alice"})).await?;
        twelve(&h, "alice").await?;
        let mut events = db.subscribe();

        // Nothing of the clean-up happens: it cannot take the record's lock.
        switch.arm(puts(&[LOCKS], 0, FaultMode::Fail));
        users.delete("alice").await?;
        switch.disarm();
        assert!(!users.exists("alice").await?);
        assert_eq!(cleanup_failures(&mut events).len(), 1);
        assert_eq!(stored_transactions(&db).await?, 3);

        // The record was marked pending: the background round buries what the deleted record
        // left, without re-creating it.
        assert_eq!(h.consolidate_pending().await?, 1);
        assert!(!users.exists("alice").await?, "not re-created");
        assert_eq!(stored_transactions(&db).await?, 0);
        assert_eq!(per_record_objects(&db).await?, Vec::<String>::new());

        users.insert(json!({"id": "alice"})).await?;
        twelve(&h, "alice").await?;
        assert_eq!(h.consolidate("alice").await?, 12.0);
        assert_eq!(h.recalculate("alice").await?, 12.0);
        db.disconnect().await?;
    }
    Ok(())
}

#[tokio::test]
async fn hooks_follow_the_managed_resources_only() -> TestResult {
    let t = TestStore::memory("eventual_delete_scope");
    let db = connect(&t.conn).await?;
    // Installed before the resource exists: the hooks come with its deferred setup.
    let (users, h) = setup(&db, Mode::Sync).await?;
    let other = db
        .create_resource(ResourceConfig::new("others").attribute("points", "number"))
        .await?;
    other.insert(json!({"id": "alice", "points": 3})).await?;
    twelve(&h, "alice").await?;
    other.delete("alice").await?;
    assert_eq!(
        h.transactions("alice").await?.len(),
        3,
        "not a managed resource"
    );
    users.delete("alice").await?;
    assert!(h.transactions("alice").await?.is_empty());
    // Uninstalled, the plugin's hooks are gone with it: deletes leave its data alone.
    twelve(&h, "bob").await?;
    db.uninstall_plugin(s3db_eventual::PLUGIN_NAME, false)
        .await?;
    users.delete("bob").await?;
    assert_eq!(stored_transactions(&db).await?, 3);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn an_interrupted_consolidation_of_a_deleted_record_does_not_bring_it_back() -> TestResult {
    let t = TestStore::memory("eventual_delete_interrupted");
    let (db, switch) = crashable(&t.conn).await?;
    let (users, h) = setup(&db, Mode::Async).await?;
    users.insert(json!({"id": "alice"})).await?;
    h.add("alice", 10).await?;
    assert_eq!(h.consolidate("alice").await?, 10.0);
    h.add("alice", 5).await?;
    // A consolidation planned +5 (its intent is written) and failed writing the record…
    switch.arm(puts(&[RECORD], 0, FaultMode::Fail));
    assert!(h.consolidate("alice").await.is_err());
    // … then the record is deleted, and its clean-up cannot run.
    switch.arm(puts(&[LOCKS], 0, FaultMode::Fail));
    users.delete("alice").await?;
    switch.disarm();
    assert_eq!(stored_transactions(&db).await?, 2);
    // The planned transaction went with the record: it is not folded into a new one.
    assert_eq!(h.consolidate_pending().await?, 1);
    assert!(!users.exists("alice").await?, "not re-created");
    assert_eq!(stored_transactions(&db).await?, 0);
    assert_eq!(per_record_objects(&db).await?, Vec::<String>::new());
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn garbage_collection_deletes_fenced_transactions_and_never_folds_them() -> TestResult {
    let t = TestStore::memory("eventual_delete_gc");
    let (db, switch) = crashable(&t.conn).await?;
    let (users, h) = setup(&db, Mode::Sync).await?;
    users.insert(json!({"id": "alice"})).await?;
    twelve(&h, "alice").await?;
    switch.arm(deletes(&[TX_DATA], 0, FaultMode::Fail));
    users.delete("alice").await?;
    users.insert(json!({"id": "alice"})).await?;
    twelve(&h, "alice").await?;
    switch.disarm();
    assert_eq!(stored_transactions(&db).await?, 6, "3 fenced, 3 live");

    let report = h.garbage_collect(Duration::ZERO).await?;
    assert_eq!((report.deleted, report.checkpoints), (5, 1), "{report:?}");
    assert_eq!(stored_transactions(&db).await?, 1, "the checkpoint");
    assert_eq!(h.consolidate("alice").await?, 12.0);
    assert_eq!(h.recalculate("alice").await?, 12.0);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn an_interrupted_consolidation_left_behind_does_not_block_the_new_record() -> TestResult {
    let t = TestStore::memory("eventual_delete_interrupted_left");
    let (db, switch) = crashable(&t.conn).await?;
    let (users, h) = setup(&db, Mode::Async).await?;
    users.insert(json!({"id": "alice"})).await?;
    h.add("alice", 10).await?;
    assert_eq!(h.consolidate("alice").await?, 10.0);
    h.add("alice", 5).await?;
    // A consolidation wrote the record (15) and failed marking its transaction applied…
    switch.arm(puts(&[TX_DATA], 0, FaultMode::Fail));
    assert!(h.consolidate("alice").await.is_err());
    assert_eq!(h.value("alice").await?, Some(15.0));
    // … then the record is deleted, and deleting its transactions fails: they stay, fenced.
    switch.arm(deletes(&[TX_DATA], 0, FaultMode::Fail));
    users.delete("alice").await?;
    assert_eq!(stored_transactions(&db).await?, 2);

    // The id is used again: the interrupted consolidation is no part of it.
    users.insert(json!({"id": "alice"})).await?;
    h.add("alice", 7).await?;
    assert_eq!(h.consolidate("alice").await?, 7.0);
    assert_eq!(h.recalculate("alice").await?, 7.0);
    switch.disarm();
    assert_eq!(h.purge("alice").await?, 2);
    assert_eq!(h.consolidate("alice").await?, 7.0);
    assert_eq!(h.recalculate("alice").await?, 7.0);
    db.disconnect().await?;
    Ok(())
}
