//! What is recorded, for which resources, with which user and data — on memory and file stores.

mod common;

use std::sync::Arc;

use common::*;
use s3db_audit::{
    AUDITS_RESOURCE, AuditEntry, AuditExt, AuditOperation, AuditPlugin, AuditQuery, AuditUser,
    SECRET_MASK,
};
use s3db_core::testing::TestStore;
use s3db_core::{Database, ResourceConfig};
use serde_json::{Value, json};

async fn db_with(
    t: &TestStore,
    plugin: AuditPlugin,
) -> s3db_core::Result<(Database, Arc<AuditPlugin>)> {
    let db = connect(&t.conn).await?;
    let audit = db.use_plugin(plugin).await?;
    Ok((db, audit))
}

fn ops(entries: &[AuditEntry]) -> Vec<(AuditOperation, Option<&str>)> {
    entries
        .iter()
        .map(|e| (e.operation, e.record_id.as_deref()))
        .collect()
}

async fn insert_update_delete(t: TestStore) -> TestResult {
    let (db, audit) = db_with(&t, AuditPlugin::new()).await?;
    let users = db.create_resource(users()).await?;
    users
        .insert(json!({"id": "u1", "name": "Ann", "region": "eu", "age": 30}))
        .await?;
    users.update("u1", json!({"region": "us"})).await?;
    users.delete("u1").await?;

    let history = audit.record_history("users", "u1").await?;
    assert_eq!(
        ops(&history),
        [
            (AuditOperation::Insert, Some("u1")),
            (AuditOperation::Update, Some("u1")),
            (AuditOperation::Delete, Some("u1")),
        ]
    );
    let [insert, update, delete] = &history[..] else {
        panic!("three entries: {history:?}");
    };
    let ann_eu = json!({"name": "Ann", "region": "eu", "age": 30});
    let ann_us = json!({"name": "Ann", "region": "us", "age": 30});
    assert_eq!(
        (&insert.old_data, &insert.new_data),
        (&None, &Some(ann_eu.clone()))
    );
    assert_eq!(
        (&update.old_data, &update.new_data),
        (&Some(ann_eu), &Some(ann_us.clone()))
    );
    assert_eq!((&delete.old_data, &delete.new_data), (&Some(ann_us), &None));
    for e in &history {
        assert_eq!(e.resource, "users");
        assert_eq!(e.user, "system");
        assert!(!e.truncated);
        assert_eq!(e.date, e.timestamp.format("%Y-%m-%d").to_string());
        assert!(e.id.starts_with(&format!("{:013}", e.timestamp.timestamp_millis())));
    }
    // The partition of the record as it was then.
    assert_eq!(insert.partition.as_deref(), Some("byRegion"));
    assert_eq!(
        insert.partition_values.clone().map(Value::Object),
        Some(json!({"byRegion": {"region": "eu"}}))
    );
    assert_eq!(
        update.partition_values.clone().map(Value::Object),
        Some(json!({"byRegion": {"region": "us"}}))
    );
    assert_eq!(audit.counters().written, 3);
    assert_eq!(audit.counters().failed, 0);

    // Entries are stored in plg_audits, partitioned by day and by resource.
    let audits = resource(&db, AUDITS_RESOURCE);
    assert_eq!(audits.count().await?, 3);
    assert_eq!(
        audits
            .count_partition("byResource", json!({"resource": "users"}))
            .await?,
        3
    );
    assert_eq!(
        audits
            .count_partition("byDate", json!({"date": insert.date}))
            .await?,
        3
    );
    Ok(())
}

#[tokio::test]
async fn records_insert_update_delete_on_memory() -> TestResult {
    insert_update_delete(TestStore::memory("audit_iud")).await
}

#[tokio::test]
async fn records_insert_update_delete_on_file() -> TestResult {
    insert_update_delete(TestStore::file("audit_iud")).await
}

#[tokio::test]
async fn deletes_of_resources_without_partitions_keep_the_old_data() -> TestResult {
    let t = TestStore::memory("audit_delete_plain");
    let (db, audit) = db_with(&t, AuditPlugin::new()).await?;
    let notes = db.create_resource(notes()).await?;
    notes.insert(json!({"id": "n1", "text": "hello"})).await?;
    notes.delete("n1").await?;
    // Deleting what is not there changes nothing and is not recorded.
    notes.delete("n1").await?;
    notes.delete("never").await?;
    let entries = audit.query(&AuditQuery::new().resource("notes")).await?;
    assert_eq!(
        ops(&entries),
        [
            (AuditOperation::Insert, Some("n1")),
            (AuditOperation::Delete, Some("n1")),
        ]
    );
    assert_eq!(entries[1].old_data, Some(json!({"text": "hello"})));
    assert_eq!(entries[1].partition, None);
    // The core reads the record for the hooks (one GET per delete); the plugin adds no middleware.
    assert_eq!(notes.interceptor_count(), (1, 0));
    notes.insert(json!({"id": "n2", "text": "again"})).await?;
    let before = db.store().requests();
    notes.delete("n2").await?;
    let spent = db.store().requests().since(&before);
    assert_eq!(spent.count(s3db_core::RequestKind::Get), 1, "{spent:?}");
    let last = audit.record_history("notes", "n2").await?;
    assert_eq!(last[1].old_data, Some(json!({"text": "again"})));
    Ok(())
}

#[tokio::test]
async fn bulk_operations_record_one_entry_per_id() -> TestResult {
    let t = TestStore::file("audit_bulk");
    let (db, audit) = db_with(&t, AuditPlugin::new()).await?;
    let users = db.create_resource(users()).await?;
    let notes = db.create_resource(notes()).await?;
    let docs: Vec<Value> = (0..7)
        .map(|i| json!({"id": format!("u{i}"), "name": "N", "region": if i % 2 == 0 { "eu" } else { "us" }}))
        .collect();
    AuditUser::scope("importer", async {
        for result in users.insert_many(&docs).await {
            result?;
        }
        for result in notes
            .insert_many((0..5).map(|i| json!({"id": format!("n{i}"), "text": "t"})))
            .await
        {
            result?;
        }
        let ids: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
        for result in users.delete_many(&ids).await {
            result?;
        }
        for result in notes.delete_many(&["n0", "n1", "n2", "n3", "n4"]).await {
            result?;
        }
        Ok::<(), s3db_core::Error>(())
    })
    .await?;
    let stats = audit.stats(&AuditQuery::new()).await?;
    assert_eq!(stats.total, 24);
    assert_eq!(stats.by_operation[&AuditOperation::Insert], 12);
    assert_eq!(stats.by_operation[&AuditOperation::Delete], 12);
    assert_eq!(stats.by_user["importer"], 24);
    assert_eq!(stats.by_partition["byRegion"], 14);
    for i in 0..7 {
        let history = audit.record_history("users", &format!("u{i}")).await?;
        assert_eq!(
            history.iter().map(|e| e.operation).collect::<Vec<_>>(),
            [AuditOperation::Insert, AuditOperation::Delete]
        );
        assert!(history[1].old_data.is_some());
    }
    for i in 0..5 {
        let history = audit.record_history("notes", &format!("n{i}")).await?;
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].old_data, Some(json!({"text": "t"})));
    }
    Ok(())
}

#[tokio::test]
async fn upserts_replaces_patches_and_delete_all_are_recorded() -> TestResult {
    let t = TestStore::memory("audit_kinds");
    let (db, audit) = db_with(&t, AuditPlugin::new()).await?;
    let users = db.create_resource(users()).await?;
    users
        .upsert("a", json!({"name": "A", "region": "eu"}))
        .await?;
    users
        .upsert("a", json!({"name": "A2", "region": "eu"}))
        .await?;
    users.patch("a", json!({"age": 3})).await?;
    users
        .replace("a", json!({"name": "A3", "region": "us"}))
        .await?;
    let current = users.get("a").await?;
    users
        .update_if_match("a", json!({"age": 4}), current.etag())
        .await?;
    users
        .insert(json!({"id": "b", "name": "B", "region": "us"}))
        .await?;
    users.delete_all().await?;
    let entries = audit.query(&AuditQuery::new().resource("users")).await?;
    assert_eq!(
        ops(&entries),
        [
            (AuditOperation::Insert, Some("a")),
            (AuditOperation::Update, Some("a")),
            (AuditOperation::Update, Some("a")),
            (AuditOperation::Update, Some("a")),
            (AuditOperation::Update, Some("a")),
            (AuditOperation::Insert, Some("b")),
            (AuditOperation::DeleteAll, None),
        ]
    );
    assert_eq!(
        entries[3].old_data,
        Some(json!({"name": "A2", "region": "eu", "age": 3}))
    );
    assert_eq!(
        entries[3].new_data,
        Some(json!({"name": "A3", "region": "us"}))
    );
    Ok(())
}

#[tokio::test]
async fn internal_resources_are_never_audited() -> TestResult {
    let t = TestStore::memory("audit_internal");
    let (db, audit) = db_with(&t, AuditPlugin::new()).await?;
    let internal = db
        .create_resource(ResourceConfig::new("plg_other").attribute("x", "string"))
        .await?;
    internal.insert(json!({"id": "1", "x": "y"})).await?;
    internal.update("1", json!({"x": "z"})).await?;
    internal.delete("1").await?;
    let users = db.create_resource(users()).await?;
    users
        .insert(json!({"id": "u", "name": "U", "region": "eu"}))
        .await?;
    // Exactly one entry: the user insert. Writing it did not record itself.
    let audits = resource(&db, AUDITS_RESOURCE);
    assert_eq!(audits.count().await?, 1);
    assert_eq!(audit.counters().written, 1);
    assert!(!audit.audits_resource("plg_other"));
    assert!(!audit.audits_resource(AUDITS_RESOURCE));
    let (hooks, middleware) = audits.interceptor_count();
    assert_eq!((hooks, middleware), (0, 0));
    assert!(internal.extension::<s3db_audit::AuditHandle>().is_none());
    Ok(())
}

#[tokio::test]
async fn include_exclude_and_operations_choose_what_is_recorded() -> TestResult {
    let t = TestStore::memory("audit_filters");
    let (db, audit) = db_with(
        &t,
        AuditPlugin::builder()
            .exclude(["notes"])
            .operations([AuditOperation::Update, AuditOperation::Delete])
            .build()?,
    )
    .await?;
    let users = db.create_resource(users()).await?;
    let notes = db.create_resource(notes()).await?;
    users
        .insert(json!({"id": "u", "name": "U", "region": "eu"}))
        .await?;
    users.update("u", json!({"name": "V"})).await?;
    users.delete("u").await?;
    notes.insert(json!({"id": "n", "text": "t"})).await?;
    notes.delete("n").await?;
    let all = audit.query(&AuditQuery::new()).await?;
    assert_eq!(
        ops(&all),
        [
            (AuditOperation::Update, Some("u")),
            (AuditOperation::Delete, Some("u"))
        ]
    );

    let t = TestStore::memory("audit_include");
    let (db, audit) = db_with(&t, AuditPlugin::builder().include(["notes"]).build()?).await?;
    let users = db.create_resource(common::users()).await?;
    let notes = db.create_resource(common::notes()).await?;
    users
        .insert(json!({"id": "u", "name": "U", "region": "eu"}))
        .await?;
    notes.insert(json!({"id": "n", "text": "t"})).await?;
    let all = audit.query(&AuditQuery::new()).await?;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].resource, "notes");
    assert!(AuditExt::audit(&users).is_none());
    assert!(AuditExt::audit(&notes).is_some());
    Ok(())
}

#[tokio::test]
async fn data_and_partitions_can_be_left_out() -> TestResult {
    let t = TestStore::memory("audit_no_data");
    let (db, audit) = db_with(
        &t,
        AuditPlugin::builder()
            .include_data(false)
            .include_partitions(false)
            .build()?,
    )
    .await?;
    let users = db.create_resource(users()).await?;
    let notes = db.create_resource(notes()).await?;
    users
        .insert(json!({"id": "u", "name": "U", "region": "eu"}))
        .await?;
    users.update("u", json!({"name": "V"})).await?;
    users.delete("u").await?;
    notes.insert(json!({"id": "n", "text": "t"})).await?;
    // Without data, the hooks do not want deleted records: deletes read nothing first.
    assert_eq!(notes.interceptor_count(), (1, 0));
    let before = db.store().requests();
    notes.delete("n").await?;
    let spent = db.store().requests().since(&before);
    assert_eq!(spent.count(s3db_core::RequestKind::Get), 0, "{spent:?}");
    let all = audit.query(&AuditQuery::new()).await?;
    assert_eq!(all.len(), 5);
    for e in &all {
        assert_eq!((&e.old_data, &e.new_data), (&None, &None));
        assert_eq!((&e.partition, &e.partition_values), (&None, &None));
    }
    Ok(())
}

#[tokio::test]
async fn large_data_is_capped_and_flagged() -> TestResult {
    let t = TestStore::memory("audit_cap");
    let (db, audit) = db_with(&t, AuditPlugin::builder().max_data_size(60).build()?).await?;
    let notes = db
        .create_resource(
            ResourceConfig::new("docs")
                .attribute("title", "string|required")
                .attribute("body", "string")
                .behavior(s3db_core::Behavior::BodyOverflow),
        )
        .await?;
    let body = "x".repeat(5_000);
    notes
        .insert(json!({"id": "d", "title": "T", "body": body}))
        .await?;
    notes.update("d", json!({"body": "short"})).await?;
    let history = audit.record_history("docs", "d").await?;
    // The insert lost `body` (too big) but kept `title`.
    assert!(history[0].truncated);
    assert_eq!(history[0].new_data, Some(json!({"title": "T"})));
    // The update's old data is the big one (cut), its new data fits.
    assert!(history[1].truncated);
    assert_eq!(history[1].old_data, Some(json!({"title": "T"})));
    assert_eq!(
        history[1].new_data,
        Some(json!({"title": "T", "body": "short"}))
    );
    let stats = audit.stats(&AuditQuery::new()).await?;
    assert_eq!(stats.truncated, 2);
    Ok(())
}

#[tokio::test]
async fn secrets_are_masked() -> TestResult {
    let t = TestStore::memory("audit_secrets");
    let db = Database::builder()
        .connection(t.conn.clone())
        .passphrase("correct horse battery staple")
        .connect()
        .await?;
    let audit = db.use_plugin(AuditPlugin::new()).await?;
    let keys = db
        .create_resource(
            ResourceConfig::new("keys")
                .attribute("owner", "string|required")
                .attribute("token", "secret|required"),
        )
        .await?;
    keys.insert(json!({"id": "k", "owner": "ann", "token": "s3cr3t"}))
        .await?;
    keys.update("k", json!({"token": "n3w"})).await?;
    keys.delete("k").await?;
    let history = audit.record_history("keys", "k").await?;
    assert_eq!(history.len(), 3);
    let masked = json!({"owner": "ann", "token": SECRET_MASK});
    assert_eq!(history[0].new_data, Some(masked.clone()));
    assert_eq!(history[1].old_data, Some(masked.clone()));
    assert_eq!(history[1].new_data, Some(masked.clone()));
    assert_eq!(history[2].old_data, Some(masked));
    // Nowhere in plg_audits does a secret appear in clear.
    let raw = serde_json::to_string(
        &resource(&db, AUDITS_RESOURCE)
            .list()
            .await?
            .iter()
            .map(|r| r.to_json())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    assert!(!raw.contains("s3cr3t") && !raw.contains("n3w"), "{raw}");
    Ok(())
}

#[tokio::test]
async fn the_user_comes_from_the_scope_then_the_resolver_then_the_default() -> TestResult {
    let t = TestStore::memory("audit_users");
    let (db, audit) = db_with(&t, AuditPlugin::builder().default_user("svc").build()?).await?;
    let notes = db.create_resource(notes()).await?;
    notes.insert(json!({"id": "a", "text": "t"})).await?;
    AuditUser::scope("alice", async {
        notes.insert(json!({"id": "b", "text": "t"})).await?;
        AuditUser::scope("bob", notes.insert(json!({"id": "c", "text": "t"}))).await?;
        notes.insert(json!({"id": "d", "text": "t"})).await?;
        Ok::<(), s3db_core::Error>(())
    })
    .await?;
    // Concurrent operations of different users in one task each keep their own.
    let (x, y) = tokio::join!(
        AuditUser::scope("xavier", notes.insert(json!({"id": "x", "text": "t"}))),
        AuditUser::scope("yara", notes.insert(json!({"id": "y", "text": "t"}))),
    );
    x?;
    y?;
    let users: Vec<(String, String)> = audit
        .query(&AuditQuery::new().resource("notes"))
        .await?
        .into_iter()
        .map(|e| (e.record_id.unwrap_or_default(), e.user))
        .collect();
    let expected = [
        ("a", "svc"),
        ("b", "alice"),
        ("c", "bob"),
        ("d", "alice"),
        ("x", "xavier"),
        ("y", "yara"),
    ];
    let mut users = users;
    users.sort();
    assert_eq!(
        users,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );

    // A resolver answers when no scope does; without both, "system".
    let t = TestStore::memory("audit_resolver");
    let (db, audit) = db_with(
        &t,
        AuditPlugin::builder()
            .user_resolver(|| Some("from-resolver".to_owned()))
            .build()?,
    )
    .await?;
    let notes = db.create_resource(common::notes()).await?;
    notes.insert(json!({"id": "a", "text": "t"})).await?;
    AuditUser::scope("scoped", notes.insert(json!({"id": "b", "text": "t"}))).await?;
    let got: Vec<String> = audit
        .query(&AuditQuery::new())
        .await?
        .into_iter()
        .map(|e| e.user)
        .collect();
    assert_eq!(got, ["from-resolver", "scoped"]);
    Ok(())
}

#[tokio::test]
async fn resources_created_before_and_after_install_are_audited_and_new_definitions_seen()
-> TestResult {
    let t = TestStore::file("audit_order");
    let db = connect(&t.conn).await?;
    let before = db.create_resource(notes()).await?;
    let audit = db.use_plugin(AuditPlugin::new()).await?;
    let after = db.create_resource(users()).await?;
    before.insert(json!({"id": "n", "text": "t"})).await?;
    after
        .insert(json!({"id": "u", "name": "U", "region": "eu"}))
        .await?;
    // A new version of notes with a partition: its entries name it.
    let notes_v2 = db
        .create_resource(
            ResourceConfig::new("notes")
                .attribute("text", "string|required")
                .attribute("topic", "string")
                .partition("byTopic", ["topic"])
                .paranoid(false),
        )
        .await?;
    notes_v2
        .insert(json!({"id": "m", "text": "t", "topic": "rust"}))
        .await?;
    assert_eq!(notes_v2.interceptor_count().0, 1, "hooks registered once");
    let m = audit.record_history("notes", "m").await?;
    assert_eq!(m[0].partition.as_deref(), Some("byTopic"));
    assert_eq!(audit.query(&AuditQuery::new()).await?.len(), 3);

    // Another process (database) opening the same place and the audit records there too.
    let other = connect(&t.conn).await?;
    let other_audit = other.use_plugin(AuditPlugin::new()).await?;
    resource(&other, "users")
        .update("u", json!({"name": "W"}))
        .await?;
    let history = other_audit.record_history("users", "u").await?;
    assert_eq!(
        history.iter().map(|e| e.operation).collect::<Vec<_>>(),
        [AuditOperation::Insert, AuditOperation::Update]
    );
    assert_eq!(audit.record_history("users", "u").await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn records_insert_update_delete_on_s3() -> TestResult {
    match TestStore::s3("audit_iud_s3") {
        Some(t) => insert_update_delete(t).await,
        None => Ok(()),
    }
}
