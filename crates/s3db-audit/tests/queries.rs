//! Queries, statistics, partition history and clean-up, with entries stamped on different days
//! by a manual clock (no sleeping).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use s3db_audit::{
    AUDITS_RESOURCE, AuditEvent, AuditExt, AuditOperation, AuditPlugin, AuditQuery, AuditUser,
    ConfigError, ManualClock,
};
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, Resource};
use serde_json::json;

const DAY: i64 = 24 * 3600;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn days_after(days: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(days * DAY)
}

/// A database whose audit clock the test moves; with users and notes.
async fn setup(
    t: &TestStore,
) -> s3db_core::Result<(
    Database,
    Arc<AuditPlugin>,
    Arc<ManualClock>,
    Resource,
    Resource,
)> {
    let clock = Arc::new(ManualClock::new(t0()));
    let db = connect(&t.conn).await?;
    let audit = db
        .use_plugin(AuditPlugin::builder().clock(clock.clone()).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    let notes = db.create_resource(notes()).await?;
    Ok((db, audit, clock, users, notes))
}

/// Day 0: alice inserts u1 (eu), u2 (us); day 1: bob updates u1 to us, inserts n1; day 5: carol
/// deletes u2, updates n1; day 40: alice deletes u1.
async fn history(clock: &ManualClock, users: &Resource, notes: &Resource) -> TestResult {
    clock.set(days_after(0));
    AuditUser::scope("alice", async {
        users
            .insert(json!({"id": "u1", "name": "A", "region": "eu"}))
            .await?;
        users
            .insert(json!({"id": "u2", "name": "B", "region": "us"}))
            .await?;
        Ok::<(), Error>(())
    })
    .await?;
    clock.set(days_after(1));
    AuditUser::scope("bob", async {
        users.update("u1", json!({"region": "us"})).await?;
        notes.insert(json!({"id": "n1", "text": "t"})).await?;
        Ok::<(), Error>(())
    })
    .await?;
    clock.set(days_after(5));
    AuditUser::scope("carol", async {
        users.delete("u2").await?;
        notes.update("n1", json!({"text": "u"})).await?;
        Ok::<(), Error>(())
    })
    .await?;
    clock.set(days_after(40));
    AuditUser::scope("alice", users.delete("u1")).await?;
    Ok(())
}

fn summary(entries: &[s3db_audit::AuditEntry]) -> Vec<(String, AuditOperation, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e.resource.clone(),
                e.operation,
                e.record_id.clone().unwrap_or_default(),
                e.user.clone(),
            )
        })
        .collect()
}

fn row(
    r: &str,
    op: AuditOperation,
    id: &str,
    user: &str,
) -> (String, AuditOperation, String, String) {
    (r.to_owned(), op, id.to_owned(), user.to_owned())
}

async fn queries(t: TestStore) -> TestResult {
    let (_db, audit, clock, users, notes) = setup(&t).await?;
    history(&clock, &users, &notes).await?;
    use AuditOperation::*;

    let all = audit.query(&AuditQuery::new()).await?;
    assert_eq!(
        summary(&all),
        [
            row("users", Insert, "u1", "alice"),
            row("users", Insert, "u2", "alice"),
            row("users", Update, "u1", "bob"),
            row("notes", Insert, "n1", "bob"),
            row("users", Delete, "u2", "carol"),
            row("notes", Update, "n1", "carol"),
            row("users", Delete, "u1", "alice"),
        ]
    );
    assert_eq!(all[0].timestamp, days_after(0));
    assert_eq!(all[6].date, "2025-04-10");

    // Newest first, limit and offset.
    let page = audit
        .query(&AuditQuery::new().newest_first().offset(1).limit(2))
        .await?;
    assert_eq!(
        summary(&page),
        [
            row("notes", Update, "n1", "carol"),
            row("users", Delete, "u2", "carol")
        ]
    );
    // Limit and offset after filters.
    let page = audit
        .query(&AuditQuery::new().user("alice").offset(1).limit(5))
        .await?;
    assert_eq!(
        summary(&page),
        [
            row("users", Insert, "u2", "alice"),
            row("users", Delete, "u1", "alice")
        ]
    );
    assert!(audit.query(&AuditQuery::new().limit(0)).await?.is_empty());

    // By resource, operation, record.
    let q = AuditQuery::new().resource("notes");
    assert_eq!(audit.query(&q).await?.len(), 2);
    let deletes = audit.query(&AuditQuery::new().operation(Delete)).await?;
    assert_eq!(
        summary(&deletes),
        [
            row("users", Delete, "u2", "carol"),
            row("users", Delete, "u1", "alice")
        ]
    );
    assert_eq!(
        audit
            .record_history("users", "u1")
            .await?
            .iter()
            .map(|e| e.operation)
            .collect::<Vec<_>>(),
        [Insert, Update, Delete]
    );
    let handle = users.audit().unwrap_or_else(|| panic!("users are audited"));
    assert_eq!(handle.history("u2").await?.len(), 2);
    assert_eq!(
        handle
            .entries(AuditQuery::new().operation(Update))
            .await?
            .len(),
        1
    );

    // Date ranges (since inclusive, until exclusive): through the day partitions, and over more
    // than a year through the whole listing.
    let first_days = audit
        .query(&AuditQuery::new().since(days_after(0)).until(days_after(1)))
        .await?;
    assert_eq!(first_days.len(), 2);
    let middle = audit
        .query(&AuditQuery::new().since(days_after(1)).until(days_after(6)))
        .await?;
    assert_eq!(middle.len(), 4);
    let wide = audit
        .query(
            &AuditQuery::new()
                .since(days_after(-500))
                .until(days_after(2)),
        )
        .await?;
    assert_eq!(wide.len(), 4);
    let open_ended = audit.query(&AuditQuery::new().since(days_after(5))).await?;
    assert_eq!(open_ended.len(), 3);
    let users_late = audit
        .query(&AuditQuery::new().resource("users").since(days_after(2)))
        .await?;
    assert_eq!(
        summary(&users_late),
        [
            row("users", Delete, "u2", "carol"),
            row("users", Delete, "u1", "alice")
        ]
    );
    match audit
        .query(&AuditQuery::new().since(days_after(3)).until(days_after(3)))
        .await
    {
        Err(Error::Refused { reason, .. }) => assert!(reason.contains("empty"), "{reason}"),
        other => panic!("an empty range is refused, got {other:?}"),
    }

    // Partitions.
    let eu = audit
        .partition_history("users", "byRegion", json!({"region": "eu"}))
        .await?;
    assert_eq!(summary(&eu), [row("users", Insert, "u1", "alice")]);
    let us = audit
        .partition_history("users", "byRegion", json!({"region": "us"}))
        .await?;
    assert_eq!(us.len(), 4);
    let in_partition = audit
        .query(&AuditQuery::new().partition("byRegion"))
        .await?;
    assert_eq!(in_partition.len(), 5);

    // Statistics.
    let stats = audit.stats(&AuditQuery::new().limit(1)).await?;
    assert_eq!(stats.total, 7);
    assert_eq!(stats.by_operation[&Insert], 3);
    assert_eq!(stats.by_operation[&Update], 2);
    assert_eq!(stats.by_operation[&Delete], 2);
    assert_eq!(stats.by_resource["users"], 5);
    assert_eq!(stats.by_resource["notes"], 2);
    assert_eq!(stats.by_partition["byRegion"], 5);
    assert_eq!(stats.by_user["alice"], 3);
    assert_eq!(stats.by_user["bob"], 2);
    assert_eq!(stats.by_user["carol"], 2);
    assert_eq!(
        stats
            .timeline
            .iter()
            .map(|(d, n)| (d.as_str(), *n))
            .collect::<Vec<_>>(),
        [
            ("2025-03-01", 2),
            ("2025-03-02", 2),
            ("2025-03-06", 2),
            ("2025-04-10", 1)
        ]
    );
    let notes_stats = audit.stats(&AuditQuery::new().resource("notes")).await?;
    assert_eq!(notes_stats.total, 2);
    Ok(())
}

#[tokio::test]
async fn queries_on_memory() -> TestResult {
    queries(TestStore::memory("audit_queries")).await
}

#[tokio::test]
async fn queries_on_file() -> TestResult {
    queries(TestStore::file("audit_queries")).await
}

#[tokio::test]
async fn cleanup_deletes_entries_older_than_the_retention() -> TestResult {
    let t = TestStore::file("audit_cleanup");
    let (db, audit, clock, users, notes) = setup(&t).await?;
    history(&clock, &users, &notes).await?;
    let mut events = db.subscribe();

    // Now is day 40; keep 30 days: everything of days 0, 1 and 5 goes (6 entries).
    clock.set(days_after(40) + chrono::Duration::seconds(1));
    assert_eq!(
        audit.cleanup(Duration::from_secs(30 * DAY as u64)).await?,
        6
    );
    let left = audit.query(&AuditQuery::new()).await?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].timestamp, days_after(40));
    assert!(matches!(
        &audit_events(&mut events)[..],
        [AuditEvent::CleanedUp { deleted: 6 }]
    ));
    // Partition references went with the entries.
    let audits = resource(&db, AUDITS_RESOURCE);
    assert_eq!(
        audits
            .count_partition("byDate", json!({"date": "2025-03-01"}))
            .await?,
        0
    );
    assert_eq!(
        audits
            .count_partition("byResource", json!({"resource": "users"}))
            .await?,
        1
    );
    // Nothing more to do: no event.
    assert_eq!(
        audit.cleanup(Duration::from_secs(30 * DAY as u64)).await?,
        0
    );
    assert!(audit_events(&mut events).is_empty());
    // An explicit cutoff; the boundary is exclusive.
    assert_eq!(audit.cleanup_before(days_after(40)).await?, 0);
    assert_eq!(
        audit
            .cleanup_before(days_after(40) + chrono::Duration::milliseconds(1))
            .await?,
        1
    );
    assert!(audit.query(&AuditQuery::new()).await?.is_empty());
    // The user's records are untouched.
    assert_eq!(notes.count().await?, 1);
    Ok(())
}

#[tokio::test]
async fn bad_configuration_is_refused_with_what_to_fix() {
    let cases: Vec<(Result<AuditPlugin, ConfigError>, &str)> = vec![
        (
            AuditPlugin::builder().max_data_size(0).build(),
            "max_data_size",
        ),
        (
            AuditPlugin::builder().include(["plg_audits"]).build(),
            "plg_audits",
        ),
        (AuditPlugin::builder().exclude([""]).build(), "empty"),
        (
            AuditPlugin::builder().include(["a"]).exclude(["a"]).build(),
            "both included and excluded",
        ),
        (
            AuditPlugin::builder().operations([]).build(),
            "at least one",
        ),
        (
            AuditPlugin::builder().default_user("  ").build(),
            "default user",
        ),
    ];
    for (result, needle) in cases {
        match result {
            Err(e) => assert!(
                e.to_string().contains(needle),
                "{e} should mention {needle}"
            ),
            Ok(p) => panic!("{p:?} should be refused ({needle})"),
        }
    }
    let as_core: Error = ConfigError::ZeroMaxDataSize.into();
    assert!(matches!(as_core, Error::Refused { .. }));
}

#[tokio::test]
async fn queries_need_an_installed_plugin() {
    let audit = AuditPlugin::new();
    match audit.query(&AuditQuery::new()).await {
        Err(Error::Refused { reason, .. }) => assert!(reason.contains("not installed")),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
