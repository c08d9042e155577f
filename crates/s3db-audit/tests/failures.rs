//! A failing audit write never fails the user's operation; it is reported by an event and a
//! counter. The failure is real: the store refuses every write under `resource=plg_audits`
//! (core's fault injector, armed between steps).

mod common;

use std::sync::Arc;

use common::*;
use s3db_audit::{AUDITS_RESOURCE, AuditEvent, AuditOperation, AuditPlugin, AuditQuery, AuditUser};
use s3db_core::testing::{FaultPlan, FaultSwitch, FaultyStore, TestStore};
use s3db_core::{Database, RequestKind};
use serde_json::json;

async fn failing_db(t: &TestStore, switch: &FaultSwitch) -> s3db_core::Result<Database> {
    let switch = switch.clone();
    Database::builder()
        .connection(t.conn.clone())
        .store_layer(move |inner| Arc::new(FaultyStore::switched(inner, &switch)))
        .connect()
        .await
}

/// Every PUT under `resource=plg_audits` fails before it reaches the store.
fn audit_writes_fail() -> FaultPlan {
    FaultPlan::new()
        .only_kinds([RequestKind::Put])
        .key_part(format!("resource={AUDITS_RESOURCE}"))
        .fail_all()
}

async fn failed_writes_are_reported(t: TestStore) -> TestResult {
    let switch = FaultSwitch::new();
    let db = failing_db(&t, &switch).await?;
    let audit = db.use_plugin(AuditPlugin::new()).await?;
    let users = db.create_resource(users()).await?;
    let mut events = db.subscribe();

    switch.arm(audit_writes_fail());
    // Every operation succeeds and really happened…
    let ann = AuditUser::scope(
        "alice",
        users.insert(json!({"id": "a", "name": "Ann", "region": "eu"})),
    )
    .await?;
    assert_eq!(ann.id(), "a");
    users.update("a", json!({"name": "Anna"})).await?;
    assert_eq!(users.get("a").await?.get("name"), Some(&json!("Anna")));
    for result in users
        .insert_many([
            json!({"id": "b", "name": "B", "region": "us"}),
            json!({"id": "c", "name": "C", "region": "us"}),
        ])
        .await
    {
        result?;
    }
    users.delete("a").await?;
    assert!(!users.exists("a").await?);
    assert_eq!(users.count().await?, 2);

    // … but none was recorded: five failures, counted and broadcast.
    assert_eq!(audit.counters().failed, 5);
    assert_eq!(audit.counters().written, 0);
    let mut failed: Vec<(AuditOperation, Option<String>)> = audit_events(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::WriteFailed {
                resource,
                operation,
                record_id,
                entry_id,
                error,
            } => {
                assert_eq!(resource, "users");
                assert!(!entry_id.is_empty());
                assert!(error.contains("injected"), "{error}");
                Some((operation, record_id))
            }
            _ => None,
        })
        .collect();
    failed.sort();
    let mut expected = vec![
        (AuditOperation::Insert, Some("a".to_owned())),
        (AuditOperation::Insert, Some("b".to_owned())),
        (AuditOperation::Insert, Some("c".to_owned())),
        (AuditOperation::Update, Some("a".to_owned())),
        (AuditOperation::Delete, Some("a".to_owned())),
    ];
    expected.sort();
    assert_eq!(failed, expected);
    assert_eq!(resource(&db, AUDITS_RESOURCE).count().await?, 0);

    // The store recovers: recording goes on.
    switch.disarm();
    users.update("b", json!({"name": "Bee"})).await?;
    assert_eq!(audit.counters().written, 1);
    let entries = audit.query(&AuditQuery::new()).await?;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].record_id.as_deref(), Some("b"));
    Ok(())
}

#[tokio::test]
async fn failed_writes_are_reported_on_memory() -> TestResult {
    failed_writes_are_reported(TestStore::memory("audit_fail")).await
}

#[tokio::test]
async fn failed_writes_are_reported_on_file() -> TestResult {
    failed_writes_are_reported(TestStore::file("audit_fail")).await
}

/// With the core's fault injector: the second PUT of the database — the audit entry of the first
/// insert — fails with a transient storage error. The insert itself succeeded and says so.
#[tokio::test]
async fn an_injected_storage_fault_on_the_entry_is_reported_not_returned() -> TestResult {
    let t = TestStore::memory("audit_fault_plan");
    let setup = connect(&t.conn).await?;
    setup.use_plugin(AuditPlugin::new()).await?;
    setup.create_resource(notes()).await?;
    drop(setup);

    let db = Database::builder()
        .connection(t.conn.clone())
        .store_layer(|inner| {
            Arc::new(FaultyStore::new(
                inner,
                FaultPlan::new().fail_nth(RequestKind::Put, 2),
            ))
        })
        .connect()
        .await?;
    let audit = db
        .use_plugin(AuditPlugin::builder().include_data(false).build()?)
        .await?;
    let notes = resource(&db, "notes");
    let mut events = db.subscribe();
    // PUT #1: the note (succeeds). PUT #2: its audit entry (injected failure).
    let note = notes.insert(json!({"id": "n", "text": "t"})).await?;
    assert_eq!(note.id(), "n");
    assert!(notes.exists("n").await?);
    assert_eq!(audit.counters().failed, 1);
    let events = audit_events(&mut events);
    assert!(
        matches!(&events[..], [AuditEvent::WriteFailed { error, .. }] if error.contains("injected")),
        "{events:?}"
    );
    // The next ones go through.
    notes.update("n", json!({"text": "u"})).await?;
    assert_eq!(
        audit.counters(),
        s3db_audit::AuditCounters {
            written: 1,
            failed: 1
        }
    );
    Ok(())
}
