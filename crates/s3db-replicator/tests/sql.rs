//! The SQL target (feature `sql`): a SQLite file mirrors inserts, updates, deletes and bulk
//! operations exactly (read back here with rusqlite); rename and filter; sync_all; table names
//! that could inject SQL (or that differ only in case) are refused; a locked database is
//! retried, logged, then replayed.
#![cfg(feature = "sql")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use rusqlite::{Connection, OpenFlags};
use s3db_core::Database;
use s3db_replicator::{
    Action, Change, ConfigError, LogStatus, ReplicationError, Replicator, ReplicatorEvent,
    ReplicatorPlugin, ResourceRule, SqlTarget, Target,
};
use serde_json::{Value, json};

type Res = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A temporary directory and the path of a database file in it.
fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.path().join("mirror.db");
    (dir, path)
}

fn open_ro(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// Every row of `table` as `id → data`, and the `updated_at` of each.
fn rows(
    path: &Path,
    table: &str,
) -> Result<BTreeMap<String, (Value, String)>, Box<dyn std::error::Error + Send + Sync>> {
    let conn = open_ro(path)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, data, updated_at FROM \"{table}\" ORDER BY id"
    ))?;
    let mut out = BTreeMap::new();
    let mut q = stmt.query([])?;
    while let Some(row) = q.next()? {
        let data: String = row.get(1)?;
        out.insert(row.get(0)?, (serde_json::from_str(&data)?, row.get(2)?));
    }
    Ok(out)
}

/// Only the data of [`rows`].
fn data(
    path: &Path,
    table: &str,
) -> Result<BTreeMap<String, Value>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(rows(path, table)?
        .into_iter()
        .map(|(id, (d, _))| (id, d))
        .collect())
}

fn tables(path: &Path) -> rusqlite::Result<Vec<String>> {
    let conn = open_ro(path)?;
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// Every record of a resource as `id → data`.
async fn snapshot(db: &Database, resource: &str) -> s3db_core::Result<BTreeMap<String, Value>> {
    let Some(r) = db.resource(resource) else {
        return Ok(BTreeMap::new());
    };
    Ok(r.list()
        .await?
        .into_iter()
        .map(|rec| (rec.id().to_owned(), Value::Object(rec.data().clone())))
        .collect())
}

fn plugin(target: SqlTarget, rule: impl Into<ResourceRule>) -> ReplicatorPlugin {
    ReplicatorPlugin::builder()
        .replicator(
            Replicator::new("sql", target)
                .resource(rule)
                .max_retries(2)
                .backoff(Duration::from_millis(10)),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_writes_exactly_into_a_sqlite_file() -> Res {
    let (_dir, path) = temp_db();
    let db = Database::connect("memory://repl-sql/mirror").await?;
    db.use_plugin(plugin(SqlTarget::sqlite(&path), "users"))
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
        .insert_many((0..40).map(|i| json!({"id": format!("b{i:02}"), "name": format!("n{i}")})))
        .await
    {
        r?;
    }
    for r in users.delete_many(&["b00", "b01", "missing"]).await {
        r?;
    }
    users.delete("u2").await?;

    let expected = snapshot(&db, "users").await?;
    assert_eq!(expected.len(), 40, "u1 u3 b02..b39");
    let mirrored = rows(&path, "users")?;
    assert_eq!(
        mirrored
            .iter()
            .map(|(id, (d, _))| (id.clone(), d.clone()))
            .collect::<BTreeMap<_, _>>(),
        expected,
        "the table holds exactly the records, as JSON without their id"
    );
    for (id, (_, updated_at)) in &mirrored {
        assert!(
            DateTime::parse_from_rfc3339(updated_at).is_ok(),
            "{id}: updated_at {updated_at:?}"
        );
    }
    // Queryable with SQLite's JSON functions.
    let conn = open_ro(&path)?;
    let name: String = conn.query_row(
        "SELECT json_extract(data, '$.name') FROM users WHERE id = 'u1'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(name, "Ann");
    let in_us: i64 = conn.query_row(
        "SELECT count(*) FROM users WHERE json_extract(data, '$.region') = 'us'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(in_us, 1);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    assert_eq!(mode, "wal");
    assert_eq!(tables(&path)?, ["users"]);

    let stats = replicator_of(&db).stats()["sql"];
    assert_eq!((stats.failed, stats.logged, stats.retried), (0, 0, 0));
    // 2 inserts + 3 updates of u1/u2 + upsert + 40 bulk inserts + 2 bulk deletes + delete.
    assert_eq!(stats.replicated, 49);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn rename_map_and_a_record_leaving_the_filter() -> Res {
    let (_dir, path) = temp_db();
    let db = Database::connect("memory://repl-sql/rename").await?;
    let rule = ResourceRule::new("users")
        .rename("eu-people")
        .filter(|d| d.get("region") == Some(&json!("eu")));
    db.use_plugin(plugin(SqlTarget::sqlite(&path), rule))
        .await?;
    let users = db.create_resource(users()).await?;
    users
        .insert(json!({"id": "1", "name": "ann", "region": "eu"}))
        .await?;
    users
        .insert(json!({"id": "2", "name": "bob", "region": "us"}))
        .await?; // filtered
    users.update("2", json!({"region": "eu"})).await?; // enters the filter
    assert_eq!(
        data(&path, "eu-people")?,
        BTreeMap::from([
            ("1".to_owned(), json!({"name": "ann", "region": "eu"})),
            ("2".to_owned(), json!({"name": "bob", "region": "eu"})),
        ])
    );
    users.update("1", json!({"region": "us"})).await?; // leaves it: its row is deleted
    assert_eq!(
        data(&path, "eu-people")?,
        BTreeMap::from([("2".to_owned(), json!({"name": "bob", "region": "eu"}))])
    );
    users.delete("1").await?; // never sent: it did not pass
    users.delete("2").await?;
    assert!(data(&path, "eu-people")?.is_empty());
    assert_eq!(tables(&path)?, ["eu-people"], "only the renamed table");
    let stats = replicator_of(&db).stats()["sql"];
    assert_eq!((stats.replicated, stats.failed), (4, 0));
    Ok(())
}

#[tokio::test]
async fn sync_all_copies_existing_records() -> Res {
    let (_dir, path) = temp_db();
    let db = Database::connect("memory://repl-sql/sync").await?;
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
                    Replicator::new("sql", SqlTarget::sqlite(&path)).resource(
                        ResourceRule::new("users")
                            .filter(|d| d.get("age").and_then(Value::as_i64) < Some(20)),
                    ),
                )
                .build()?,
        )
        .await?;
    let report = plugin.sync_all("users").await?;
    assert_eq!(
        (
            report.records,
            report.replicated,
            report.skipped,
            report.failed
        ),
        (23, 20, 3, 0)
    );
    let mut expected = snapshot(&db, "users").await?;
    expected.retain(|_, d| d["age"].as_i64() < Some(20));
    assert_eq!(data(&path, "users")?, expected);
    // Syncing again changes nothing (upserts).
    plugin.sync_all("users").await?;
    assert_eq!(data(&path, "users")?, expected);
    Ok(())
}

#[tokio::test]
async fn table_names_that_could_inject_sql_are_refused() -> Res {
    let (_dir, path) = temp_db();
    {
        let conn = Connection::open(&path)?;
        conn.execute_batch("CREATE TABLE victims (x TEXT); INSERT INTO victims VALUES ('alive');")?;
    }
    let db = Database::connect("memory://repl-sql/unsafe").await?;
    let plugin = db
        .use_plugin(
            ReplicatorPlugin::builder()
                .replicator(
                    Replicator::new("sql", SqlTarget::sqlite(&path))
                        .resource(
                            ResourceRule::new("users").rename("users\"; DROP TABLE victims; --"),
                        )
                        .resource(ResourceRule::new("orders").rename("sqlite_master"))
                        .resource(ResourceRule::new("items").rename("line-items"))
                        .resource(ResourceRule::new("products").rename("LINE-Items"))
                        .max_retries(3)
                        .backoff(Duration::from_millis(10)),
                )
                .build()?,
        )
        .await?;
    let mut events = db.subscribe();
    let users = db.create_resource(users()).await?;
    users.insert(json!({"id": "u1", "name": "Ann"})).await?;
    let orders = db
        .create_resource(s3db_core::ResourceConfig::new("orders").attribute("total", "number"))
        .await?;
    orders.insert(json!({"id": "o1", "total": 1})).await?;
    let items = db
        .create_resource(s3db_core::ResourceConfig::new("items").attribute("sku", "string"))
        .await?;
    items
        .insert(json!({"id": "i1", "sku": "a\"; DROP TABLE victims; --"}))
        .await?;
    // SQLite's names ignore case: a second resource may not share the table.
    let products = db
        .create_resource(s3db_core::ResourceConfig::new("products").attribute("sku", "string"))
        .await?;
    products.insert(json!({"id": "p1", "sku": "p"})).await?;

    // Refused before reaching the database, not retried, logged.
    let failed: Vec<_> = replicator_events(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            ReplicatorEvent::Failed {
                resource,
                attempts,
                error,
                ..
            } => Some((resource, attempts, error)),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for (resource, attempts, error) in &failed {
        assert_eq!(*attempts, 1, "{resource}: rejections are not retried");
        let expected = if resource == "products" {
            "SQLite names ignore case"
        } else {
            "cannot name a SQL table"
        };
        assert!(error.contains(expected), "{resource}: {error}");
    }
    assert_eq!(plugin.log_entries(Some(LogStatus::Failed)).await?.len(), 3);
    // The victim survives; only the safe (quoted, hyphenated) table was created.
    assert_eq!(tables(&path)?, ["line-items", "victims"]);
    let conn = open_ro(&path)?;
    let alive: String = conn.query_row("SELECT x FROM victims", [], |r| r.get(0))?;
    assert_eq!(alive, "alive");
    // Values are bound, never spliced: the id and data are stored as they are.
    assert_eq!(
        data(&path, "line-items")?,
        BTreeMap::from([(
            "i1".to_owned(),
            json!({"sku": "a\"; DROP TABLE victims; --"})
        )])
    );
    Ok(())
}

fn change(resource: &str, action: Action, id: &str, data: Option<Value>) -> Change {
    Change {
        resource: resource.to_owned(),
        source_resource: resource.to_owned(),
        action,
        id: id.to_owned(),
        data: data.and_then(|d| match d {
            Value::Object(m) => Some(m),
            _ => None,
        }),
        before: None,
        timestamp: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_retried_then_logged_then_replayed() -> Res {
    let (_dir, path) = temp_db();
    let db = Database::connect("memory://repl-sql/locked").await?;
    let target = SqlTarget::sqlite(&path).busy_timeout(Duration::from_millis(20));
    let plugin = db.use_plugin(plugin(target, "users")).await?;
    let mut events = db.subscribe();
    let users = db.create_resource(users()).await?;
    users.insert(json!({"id": "u1", "name": "Ann"})).await?;

    // Another process holds the write lock.
    let holder = Connection::open(&path)?;
    holder.execute_batch("BEGIN EXCLUSIVE; INSERT INTO users VALUES ('x', '{}', 'now');")?;

    // Direct: busy is a typed, transient error.
    let direct = SqlTarget::sqlite(&path).busy_timeout(Duration::ZERO);
    let err = direct
        .send(&change(
            "users",
            Action::Insert,
            "d1",
            Some(json!({"a": 1})),
        ))
        .await;
    match &err {
        Err(
            e @ ReplicationError::Sql {
                code: Some(code),
                transient: true,
                ..
            },
        ) => {
            assert_eq!(code & 0xff, 5, "SQLITE_BUSY: {e}");
            assert!(e.is_transient());
        }
        other => panic!("expected a transient busy error, got {other:?}"),
    }

    // Through the plugin: the write succeeds; the change is retried, then logged.
    users.insert(json!({"id": "u2", "name": "Bob"})).await?;
    users.update("u1", json!({"age": 3})).await?;
    assert_eq!(users.count().await?, 2, "the writes succeeded");
    let failed: Vec<_> = replicator_events(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            ReplicatorEvent::Failed {
                id,
                attempts,
                error,
                log_entry,
                ..
            } => Some((id, attempts, error, log_entry.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for (id, attempts, error, logged) in &failed {
        assert_eq!(*attempts, 3, "{id}: first attempt and 2 retries");
        assert!(
            error.contains("locked") || error.contains("busy"),
            "{error}"
        );
        assert!(logged);
    }
    let stats = plugin.stats()["sql"];
    assert_eq!(
        (stats.replicated, stats.failed, stats.retried, stats.logged),
        (1, 2, 4, 2)
    );
    assert_eq!(plugin.log_entries(Some(LogStatus::Failed)).await?.len(), 2);

    // Still locked: the replay fails again and the entries stay failed.
    let report = plugin.retry_failed().await?;
    assert_eq!((report.resolved, report.failed), (0, 2));

    holder.execute_batch("ROLLBACK")?;
    drop(holder);
    let report = plugin.retry_failed().await?;
    assert_eq!((report.resolved, report.failed), (2, 0));
    assert_eq!(data(&path, "users")?, snapshot(&db, "users").await?);
    assert!(
        plugin
            .log_entries(Some(LogStatus::Failed))
            .await?
            .is_empty()
    );
    assert_eq!(plugin.stats()["sql"].resolved, 2);
    Ok(())
}

#[tokio::test]
async fn in_memory_database_and_configuration() -> Res {
    let target = SqlTarget::sqlite(":memory:");
    target
        .send(&change("users", Action::Insert, "1", Some(json!({"a": 1}))))
        .await?;
    target
        .send(&change("users", Action::Update, "1", Some(json!({"a": 2}))))
        .await?;
    target
        .send(&change("users", Action::Delete, "1", None))
        .await?;
    // Deleting what is not there, or before the table exists, is fine (idempotent).
    target
        .send(&change("other", Action::Delete, "nope", None))
        .await?;
    target.close().await;
    target
        .send(&change("users", Action::Insert, "2", Some(json!({}))))
        .await?;

    let refused = ReplicatorPlugin::builder()
        .replicator(Replicator::new("sql", SqlTarget::sqlite("")).resource("users"))
        .build();
    assert!(
        matches!(refused, Err(ConfigError::BadTarget { kind: "sql", .. })),
        "{refused:?}"
    );
    // A directory that does not exist: a permanent error.
    let missing = SqlTarget::sqlite("/nonexistent-dir-for-s3db-tests/x.db");
    match missing
        .send(&change("users", Action::Insert, "1", Some(json!({}))))
        .await
    {
        Err(e @ ReplicationError::Sql { .. }) => assert!(!e.is_transient(), "{e}"),
        other => panic!("expected an SQL error, got {other:?}"),
    }
    Ok(())
}
