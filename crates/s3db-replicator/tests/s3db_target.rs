//! The s3db target: a replica database on memory, file and the S3 test server mirrors inserts,
//! updates, deletes and bulk operations exactly; rename, transform, filter; secrets; sync_all.

mod common;

use std::collections::BTreeMap;

use common::*;
use s3db_core::plugin::Document;
use s3db_core::testing::TestStore;
use s3db_core::{ConnectionString, Database, Error, ResourceConfig};
use s3db_replicator::{
    Action, Replicator, ReplicatorEvent, ReplicatorPlugin, ResourceRule, S3dbTarget, SecretPolicy,
};
use serde_json::{Value, json};

/// Every record of a resource as `id → data` without timestamps.
async fn snapshot(db: &Database, resource: &str) -> s3db_core::Result<BTreeMap<String, Value>> {
    let Some(r) = db.resource(resource) else {
        return Ok(BTreeMap::new());
    };
    Ok(r.list()
        .await?
        .into_iter()
        .map(|rec| {
            let mut data = rec.data().clone();
            data.remove("created_at");
            data.remove("updated_at");
            (rec.id().to_owned(), Value::Object(data))
        })
        .collect())
}

async fn mirror_exactly(source: TestStore, replica: TestStore) -> TestResult {
    let plugin = ReplicatorPlugin::builder()
        .replicator(
            Replicator::new("mirror", S3dbTarget::new(&replica.conn.to_string())).resource("users"),
        )
        .build()?;
    let db = Database::builder()
        .connection(source.conn.clone())
        .plugin(plugin)
        .connect()
        .await?;
    let users = db.create_resource(users().timestamps(true)).await?;
    users
        .insert(json!({"id": "u1", "name": "Ann", "region": "eu", "age": 30}))
        .await?;
    users.update("u1", json!({"age": 31})).await?;
    users.patch("u1", json!({"region": "us"})).await?;
    users.insert(json!({"id": "u2", "name": "Bob"})).await?;
    users
        .replace("u2", json!({"name": "Bobby", "age": 5}))
        .await?;
    users.upsert("u3", json!({"name": "Cy"})).await?;
    for r in users
        .insert_many((0..6).map(|i| json!({"id": format!("b{i}"), "name": format!("n{i}")})))
        .await
    {
        r?;
    }
    for r in users.delete_many(&["b0", "b1", "missing"]).await {
        r?;
    }
    users.delete("u2").await?;

    let replica_db = connect(&replica.conn).await?;
    let expected = snapshot(&db, "users").await?;
    assert_eq!(expected.len(), 6, "u1 u3 b2..b5");
    assert_eq!(snapshot(&replica_db, "users").await?, expected);
    let stats = replicator_of(&db).stats()["mirror"];
    assert_eq!((stats.failed, stats.logged), (0, 0));
    // 2 inserts + 3 updates of u1/u2 + upsert + 6 bulk inserts + 2 bulk deletes + delete.
    assert_eq!(stats.replicated, 15);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn mirrors_exactly_on_memory() -> TestResult {
    mirror_exactly(
        TestStore::memory("repl_mirror_mem"),
        TestStore::memory("repl_mirror_mem_replica"),
    )
    .await
}

#[tokio::test]
async fn mirrors_exactly_on_file() -> TestResult {
    mirror_exactly(
        TestStore::file("repl_mirror_file"),
        TestStore::file("repl_mirror_file_replica"),
    )
    .await
}

#[tokio::test]
async fn mirrors_into_the_s3_server() -> TestResult {
    let Some(replica) = TestStore::s3("repl_mirror_s3") else {
        return Ok(());
    };
    let source = TestStore::memory("repl_mirror_s3_source");
    let plugin = ReplicatorPlugin::builder()
        .replicator(
            Replicator::new("mirror", S3dbTarget::new(&replica.conn.to_string())).resource("users"),
        )
        .build()?;
    let db = Database::builder()
        .connection(source.conn.clone())
        .plugin(plugin)
        .connect()
        .await?;
    let users = db.create_resource(users()).await?;
    users.insert(json!({"id": "a", "name": "A"})).await?;
    users.insert(json!({"id": "b", "name": "B"})).await?;
    users.update("a", json!({"age": 2})).await?;
    users.delete("b").await?;
    let replica_db = connect(&replica.conn).await?;
    assert_eq!(
        snapshot(&replica_db, "users").await?,
        BTreeMap::from([("a".to_owned(), json!({"name": "A", "age": 2}))])
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn renames_filters_and_transforms() -> TestResult {
    let replica = Database::connect("memory://repl-tests/rename-replica").await?;
    replica
        .create_resource(
            ResourceConfig::new("people")
                .attribute("label", "string|required")
                .attribute("region", "string"),
        )
        .await?;
    let rule = ResourceRule::new("users")
        .rename("people")
        .filter(|d: &Document| d.get("region") == Some(&json!("eu")))
        .transform(|d: Document| {
            let name = d.get("name")?.as_str()?.to_owned();
            if name == "skip" {
                return None;
            }
            let id = format!("p-{}", d.get("id")?.as_str()?);
            let mut out = Document::new();
            out.insert("id".into(), json!(id));
            out.insert("label".into(), json!(name.to_uppercase()));
            out.insert("region".into(), d.get("region")?.clone());
            Some(out)
        });
    let db = Database::connect("memory://repl-tests/rename-source").await?;
    let plugin = db
        .use_plugin(
            ReplicatorPlugin::builder()
                .replicator(
                    Replicator::new("people", S3dbTarget::database(replica.clone())).resource(rule),
                )
                .build()?,
        )
        .await?;
    let mut events = db.subscribe();
    let users = db.create_resource(users()).await?;
    users
        .insert(json!({"id": "1", "name": "ann", "region": "eu"}))
        .await?;
    users
        .insert(json!({"id": "2", "name": "bob", "region": "us"}))
        .await?; // filtered
    users
        .insert(json!({"id": "3", "name": "skip", "region": "eu"}))
        .await?; // transformed away
    users.update("2", json!({"region": "eu"})).await?; // enters the filter
    users.update("1", json!({"region": "us"})).await?; // leaves it: deleted there
    users.update("3", json!({"age": 4})).await?; // still skipped
    let people = replica
        .resource("people")
        .unwrap_or_else(|| panic!("people"));
    let got: Vec<(String, Value, Value)> = people
        .list()
        .await?
        .into_iter()
        .map(|r| {
            (
                r.id().to_owned(),
                r.get("label").cloned().unwrap_or_default(),
                r.get("region").cloned().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(got, [("p-2".to_owned(), json!("BOB"), json!("eu"))]);
    let sent: Vec<(Action, String)> = replicator_events(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            ReplicatorEvent::Replicated { action, id, .. } => Some((action, id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        [
            (Action::Insert, "p-1".to_owned()),
            (Action::Update, "p-2".to_owned()),
            (Action::Delete, "p-1".to_owned()),
        ]
    );
    assert!(people.get("p-1").await.is_err());
    assert_eq!(plugin.stats()["people"].replicated, 3);
    Ok(())
}

#[tokio::test]
async fn created_replicas_take_the_sources_configuration() -> TestResult {
    let same = Database::connect("memory://repl-tests/config-same").await?;
    let renamed = Database::connect("memory://repl-tests/config-renamed").await?;
    let db = Database::connect("memory://repl-tests/config-source").await?;
    db.use_plugin(
        ReplicatorPlugin::builder()
            .replicator(
                Replicator::new("same", S3dbTarget::database(same.clone())).resource("users"),
            )
            .replicator(
                Replicator::new("renamed", S3dbTarget::database(renamed.clone()))
                    .resource(ResourceRule::new("users").rename("clients")),
            )
            .build()?,
    )
    .await?;
    let users = db
        .create_resource(
            users()
                .partition("byRegion", ["region"])
                .timestamps(true)
                .id_strategy(s3db_core::resource::IdStrategy::Ulid),
        )
        .await?;
    users
        .insert(json!({"id": "u1", "name": "Ann", "region": "eu"}))
        .await?;
    for (db, name) in [(&same, "users"), (&renamed, "clients")] {
        let replica = db
            .resource(name)
            .unwrap_or_else(|| panic!("{name} created"));
        let def = replica.definition();
        assert_eq!(replica.partitions(), ["byRegion"], "{name}");
        assert!(def.timestamps() && !def.paranoid(), "{name}");
        assert_eq!(
            replica
                .list_partition("byRegion", json!({"region": "eu"}))
                .await?
                .len(),
            1,
            "{name}"
        );
    }
    // The same-named replica is made from the source's own configuration, id strategy included.
    let minted = same
        .resource("users")
        .unwrap_or_else(|| panic!("users"))
        .insert(json!({"name": "Bob"}))
        .await?;
    assert_eq!(minted.id().len(), 26, "a ULID: {}", minted.id());
    Ok(())
}

#[tokio::test]
async fn missing_target_resource_with_a_transform_is_logged_not_fatal() -> TestResult {
    let replica = Database::connect("memory://repl-tests/missing-replica").await?;
    let db = Database::connect("memory://repl-tests/missing-source").await?;
    let plugin = db
        .use_plugin(
            ReplicatorPlugin::builder()
                .replicator(
                    Replicator::new("m", S3dbTarget::database(replica.clone()))
                        .resource(ResourceRule::new("users").transform(Some)),
                )
                .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    // The write succeeds; the replication is refused for good (not retried) and logged.
    users.insert(json!({"id": "x", "name": "X"})).await?;
    let stats = plugin.stats()["m"];
    assert_eq!((stats.failed, stats.retried, stats.logged), (1, 0, 1));
    let entries = plugin.log_entries(None).await?;
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].error.contains("does not exist"),
        "{}",
        entries[0].error
    );
    assert_eq!(
        entries[0].change.data,
        Some(
            json!({"name": "X"})
                .as_object()
                .cloned()
                .unwrap_or_default()
        )
    );
    // Once the resource exists, the replay delivers it.
    replica.create_resource(common::users()).await?;
    let report = plugin.retry_failed().await?;
    assert_eq!((report.resolved, report.failed), (1, 0));
    assert_eq!(
        replica
            .resource("users")
            .map(|r| r.name().to_owned())
            .as_deref(),
        Some("users")
    );
    assert!(
        replica
            .resource("users")
            .unwrap_or_else(|| panic!("users"))
            .exists("x")
            .await?
    );
    Ok(())
}

fn secret_users() -> ResourceConfig {
    users().attribute("api_key", "secret")
}

#[tokio::test]
async fn secrets_are_excluded_by_default_and_replicated_on_request() -> TestResult {
    let plain = Database::connect("memory://repl-tests/secrets-plain").await?;
    let with_key = Database::builder()
        .connection(ConnectionString::parse(
            "memory://repl-tests/secrets-keyed",
        )?)
        .passphrase("replica passphrase")
        .connect()
        .await?;
    let plugin = ReplicatorPlugin::builder()
        .replicator(Replicator::new("plain", S3dbTarget::database(plain.clone())).resource("users"))
        .replicator(
            Replicator::new(
                "keyed",
                S3dbTarget::new("memory://repl-tests/secrets-keyed")
                    .passphrase("replica passphrase"),
            )
            .resource(ResourceRule::new("users").secrets(SecretPolicy::Replicate)),
        )
        .build()?;
    let db = Database::builder()
        .connection(ConnectionString::parse(
            "memory://repl-tests/secrets-source",
        )?)
        .passphrase("source passphrase")
        .plugin(plugin)
        .connect()
        .await?;
    let users = db.create_resource(secret_users()).await?;
    users
        .insert(json!({"id": "s1", "name": "S", "api_key": "k-123"}))
        .await?;
    // Excluded: the replica's resource has no secret attribute and the record no key.
    let p = plain.resource("users").unwrap_or_else(|| panic!("created"));
    assert_eq!(p.definition().secret_paths(), Vec::<String>::new());
    let rec = p.get("s1").await?;
    assert_eq!(rec.get("api_key"), None);
    assert_eq!(rec.get("name"), Some(&json!("S")));
    // Replicated: a secret attribute again, encrypted under the replica's passphrase (created
    // by the target's own connection: this handle learns of it by reloading).
    with_key.reload().await?;
    let k = with_key
        .resource("users")
        .unwrap_or_else(|| panic!("created"));
    assert_eq!(k.definition().secret_paths(), ["api_key"]);
    assert_eq!(k.get("s1").await?.get("api_key"), Some(&json!("k-123")));
    let raw = with_key
        .store()
        .list_keys(None)
        .await?
        .into_iter()
        .find(|key| key.as_str().ends_with("id=s1"))
        .unwrap_or_else(|| panic!("stored"));
    let object = with_key.store().get(&raw).await?;
    let stored = format!("{:?}{:?}", object.head.metadata, object.body);
    assert!(!stored.contains("k-123"), "the replica stores it encrypted");
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn sync_all_copies_existing_records_in_pages() -> TestResult {
    let replica = Database::connect("memory://repl-tests/sync-replica").await?;
    let db = Database::connect("memory://repl-tests/sync-source").await?;
    let users = db.create_resource(users()).await?;
    for r in users
        .insert_many((0..23).map(|i| json!({"id": format!("u{i:02}"), "name": "n", "age": i})))
        .await
    {
        r?;
    }
    let plugin = db
        .use_plugin(
            ReplicatorPlugin::builder()
                .sync_page_size(5)
                .replicator(
                    Replicator::new("m", S3dbTarget::database(replica.clone())).resource(
                        ResourceRule::new("users").filter(|d: &Document| {
                            d.get("age")
                                .and_then(Value::as_i64)
                                .is_some_and(|a| a % 2 == 0)
                        }),
                    ),
                )
                .build()?,
        )
        .await?;
    let mut events = db.subscribe();
    let report = plugin.sync_all("users").await?;
    assert_eq!(
        (
            report.records,
            report.replicated,
            report.skipped,
            report.failed
        ),
        (23, 12, 11, 0)
    );
    let ids = replica
        .resource("users")
        .unwrap_or_else(|| panic!("created"))
        .list_ids()
        .await?;
    let expected: Vec<String> = (0..23)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("u{i:02}"))
        .collect();
    assert_eq!(ids, expected);
    assert!(replicator_events(&mut events).iter().any(|e| matches!(
        e,
        ReplicatorEvent::Synced {
            records: 23,
            replicated: 12,
            failed: 0,
            ..
        }
    )));
    assert!(matches!(
        plugin.sync_all("nope").await,
        Err(Error::Refused { .. })
    ));
    Ok(())
}
