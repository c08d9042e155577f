//! The hook bus: before-hooks change or abort, after-hooks observe, middleware wraps operations
//! (and can answer without storage), events reach subscribers without blocking writers, and
//! database hooks see resources being created.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use s3db_core::resource::hooks::{
    DatabaseHooks, Event, InsertOp, Middleware, Next, Operation, Outcome, ResourceHooks, UpdateOp,
};
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, FieldError, Record, RequestKind, Resource, ResourceConfig};
use serde_json::json;

type TestResult = Result<(), Error>;

async fn notes(t: &TestStore) -> Result<(Database, Resource), Error> {
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let notes = db
        .create_resource(
            ResourceConfig::new("notes")
                .attribute("text", "string|required")
                .attribute("tag", "string"),
        )
        .await?;
    Ok((db, notes))
}

/// Upper-cases text, refuses the tag "forbidden", and logs what it sees.
struct Shouting {
    log: Arc<Mutex<Vec<String>>>,
    name: &'static str,
}

#[async_trait]
impl ResourceHooks for Shouting {
    async fn before_insert(&self, _resource: &str, op: &mut InsertOp) -> s3db_core::Result<()> {
        self.push(format!("{} before_insert", self.name));
        if op.data.get("tag") == Some(&json!("forbidden")) {
            return Err(Error::Validation(vec![FieldError::new(
                "tag",
                "hook",
                "this tag is forbidden",
            )]));
        }
        if let Some(text) = op.data.get("text").and_then(|v| v.as_str()) {
            let loud = text.to_uppercase();
            op.data.insert("text".into(), json!(loud));
        }
        Ok(())
    }
    async fn after_insert(&self, _resource: &str, record: &Record) -> s3db_core::Result<()> {
        self.push(format!("{} after_insert {}", self.name, record.id()));
        Ok(())
    }
    async fn before_update(&self, _resource: &str, op: &mut UpdateOp) -> s3db_core::Result<()> {
        op.changes.insert("tag".into(), json!("edited"));
        Ok(())
    }
    async fn after_update(
        &self,
        _resource: &str,
        before: &Record,
        after: &Record,
    ) -> s3db_core::Result<()> {
        self.push(format!(
            "{} after_update {:?} -> {:?}",
            self.name,
            before.get("tag"),
            after.get("tag")
        ));
        Ok(())
    }
    async fn before_delete(&self, _resource: &str, id: &str) -> s3db_core::Result<()> {
        if id == "keep" {
            return Err(Error::Refused {
                operation: "delete",
                reason: "kept by a hook".into(),
            });
        }
        Ok(())
    }
}

impl Shouting {
    fn push(&self, line: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(line);
        }
    }
}

#[tokio::test]
async fn before_hooks_change_or_abort_and_after_hooks_observe() -> TestResult {
    let t = TestStore::memory("hooks");
    let (db, notes) = notes(&t).await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let first = notes.add_hooks(Shouting {
        log: Arc::clone(&log),
        name: "first",
    });
    notes.add_hooks(Shouting {
        log: Arc::clone(&log),
        name: "second",
    });

    let rec = notes.insert(json!({"id": "n1", "text": "hello"})).await?;
    assert_eq!(rec.get("text"), Some(&json!("HELLO")));
    assert_eq!(
        notes.get("n1").await?.get("text"),
        Some(&json!("HELLO")),
        "stored as changed"
    );

    let before = db.store().requests();
    let refused = notes
        .insert(json!({"id": "n2", "text": "x", "tag": "forbidden"}))
        .await
        .err();
    assert!(matches!(refused, Some(Error::Validation(_))), "{refused:?}");
    assert_eq!(
        db.store().requests().since(&before).count(RequestKind::Put),
        0,
        "aborted: nothing written"
    );
    assert!(!notes.exists("n2").await?);

    let updated = notes.update("n1", json!({"text": "again"})).await?;
    assert_eq!(updated.get("tag"), Some(&json!("edited")));

    notes.insert(json!({"id": "keep", "text": "k"})).await?;
    assert!(notes.delete("keep").await.is_err());
    assert!(notes.exists("keep").await?);

    let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(
        &lines[..4],
        [
            "first before_insert",
            "second before_insert",
            "first after_insert n1",
            "second after_insert n1"
        ]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("after_update None -> Some(String(\"edited\"))")),
        "{lines:?}"
    );

    // Removing a hook set stops it.
    assert!(notes.remove_hooks(first));
    assert_eq!(notes.interceptor_count(), (1, 0));
    Ok(())
}

/// A tiny read cache: answers repeated `get`s without storage, and logs every operation.
struct Interceptor {
    seen: Arc<Mutex<Vec<&'static str>>>,
    cache: Mutex<Option<Record>>,
}

#[async_trait]
impl Middleware for Interceptor {
    async fn handle(
        &self,
        _resource: &Resource,
        op: Operation,
        next: Next<'_>,
    ) -> s3db_core::Result<Outcome> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(op.name());
        }
        if let Operation::Get { id } = &op {
            let cached = self
                .cache
                .lock()
                .ok()
                .and_then(|c| c.clone())
                .filter(|r| r.id() == id);
            if let Some(record) = cached {
                return Ok(Outcome::Record(record));
            }
        }
        let is_get = matches!(op, Operation::Get { .. });
        let outcome = next.run(op).await?;
        if let (true, Outcome::Record(record)) = (is_get, &outcome)
            && let Ok(mut cache) = self.cache.lock()
        {
            *cache = Some(record.clone());
        }
        Ok(outcome)
    }
}

#[tokio::test]
async fn middleware_wraps_and_can_answer_without_storage() -> TestResult {
    let t = TestStore::memory("middleware");
    let (db, notes) = notes(&t).await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let id = notes.add_middleware(Interceptor {
        seen: Arc::clone(&seen),
        cache: Mutex::new(None),
    });
    notes.insert(json!({"id": "n1", "text": "hi"})).await?;
    let first = notes.get("n1").await?;
    let before = db.store().requests();
    let again = notes.get("n1").await?;
    assert_eq!(again, first);
    assert_eq!(
        db.store().requests().since(&before).total(),
        0,
        "answered without storage"
    );
    notes.count().await?;
    notes.update("n1", json!({"text": "yo"})).await?;
    let names = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(names, ["insert", "get", "get", "count", "update"]);
    // A plugin reading the stored state goes past the middleware, to the store.
    let before = db.store().requests();
    let stored = notes.get_from_store("n1").await?;
    assert_eq!(stored.get("text"), Some(&json!("yo")));
    assert_eq!(db.store().requests().since(&before).total(), 1);
    let names = seen.lock().map(|s| s.len()).unwrap_or_default();
    assert_eq!(names, 5, "the middleware did not see get_from_store");
    assert!(notes.remove_middleware(id));
    let before = db.store().requests();
    assert_eq!(notes.get("n1").await?.get("text"), Some(&json!("yo")));
    assert_eq!(
        db.store().requests().since(&before).total(),
        1,
        "without the middleware, storage answers"
    );
    Ok(())
}

#[tokio::test]
async fn events_reach_subscribers_and_slow_ones_do_not_block_writes() -> TestResult {
    let t = TestStore::memory("events");
    let (db, notes) = notes(&t).await?;
    let mut on_resource = notes.subscribe();
    let mut on_db = db.subscribe();
    let _never_read = notes.subscribe(); // a subscriber that never reads
    notes.insert(json!({"id": "e1", "text": "a"})).await?;
    notes.update("e1", json!({"text": "b"})).await?;
    notes.delete("e1").await?;
    let mut kinds = Vec::new();
    while let Ok(event) = on_resource.try_recv() {
        kinds.push(match event {
            Event::Inserted { record, .. } => format!("inserted {}", record.id()),
            Event::Updated { before, after, .. } => {
                format!("updated {:?}->{:?}", before.get("text"), after.get("text"))
            }
            Event::Deleted { id, .. } => format!("deleted {id}"),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        kinds,
        [
            "inserted e1",
            "updated Some(String(\"a\"))->Some(String(\"b\"))",
            "deleted e1"
        ]
    );
    let mut db_events = 0;
    while let Ok(event) = on_db.try_recv() {
        assert_eq!(event.resource(), Some("notes"));
        db_events += 1;
    }
    assert_eq!(db_events, 3);
    // Far more writes than the channel holds: the silent subscriber never blocks them.
    for i in 0..(s3db_core::resource::EVENT_CAPACITY + 50) {
        notes.insert(json!({"text": format!("n{i}")})).await?;
    }
    Ok(())
}

struct Watcher {
    created: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl DatabaseHooks for Watcher {
    async fn before_connect(&self, _conn: &s3db_core::ConnectionString) -> s3db_core::Result<()> {
        if let Ok(mut c) = self.created.lock() {
            c.push("before_connect".to_owned());
        }
        Ok(())
    }
    async fn after_connect(&self, db: &Database) -> s3db_core::Result<()> {
        if let Ok(mut c) = self.created.lock() {
            c.push(format!(
                "after_connect with {} resources",
                db.resources().len()
            ));
        }
        Ok(())
    }
    async fn after_disconnect(&self, _db: &Database) -> s3db_core::Result<()> {
        if let Ok(mut c) = self.created.lock() {
            c.push("after_disconnect".to_owned());
        }
        Ok(())
    }
    async fn before_create_resource(&self, config: &mut ResourceConfig) -> s3db_core::Result<()> {
        if config.name() == "forbidden" {
            return Err(Error::Refused {
                operation: "create_resource",
                reason: "not here".into(),
            });
        }
        Ok(())
    }
    async fn after_create_resource(&self, resource: &Resource) -> s3db_core::Result<()> {
        if let Ok(mut c) = self.created.lock() {
            c.push(resource.name().to_owned());
        }
        Ok(())
    }
}

#[tokio::test]
async fn database_hooks_see_resources_created() -> TestResult {
    let t = TestStore::memory("db_hooks");
    let created = Arc::new(Mutex::new(Vec::new()));
    let db = Database::builder()
        .connection(t.conn.clone())
        .hooks(Watcher {
            created: Arc::clone(&created),
        })
        .connect()
        .await?;
    db.create_resource(ResourceConfig::new("a").attribute("v", "number"))
        .await?;
    let refused = db
        .create_resource(ResourceConfig::new("forbidden").attribute("v", "number"))
        .await;
    assert!(refused.is_err());
    assert!(db.resource("forbidden").is_none());
    db.disconnect().await?;
    assert_eq!(
        created.lock().map(|c| c.clone()).unwrap_or_default(),
        [
            "before_connect",
            "after_connect with 0 resources",
            "a",
            "after_disconnect"
        ]
    );
    Ok(())
}

/// Creates a `plg_shadow_<name>` resource for every other resource created, from the hook.
struct Shadowing {
    db: Arc<std::sync::OnceLock<Database>>,
}

#[async_trait]
impl DatabaseHooks for Shadowing {
    async fn after_create_resource(&self, resource: &Resource) -> s3db_core::Result<()> {
        if resource.name().starts_with("plg_") {
            return Ok(());
        }
        if let Some(db) = self.db.get() {
            db.create_resource(ResourceConfig::new(format!(
                "plg_shadow_{}",
                resource.name()
            )))
            .await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_after_create_hook_may_create_a_resource() -> TestResult {
    let t = TestStore::memory("db_hook_creates");
    let cell = Arc::new(std::sync::OnceLock::new());
    let db = Database::builder()
        .connection(t.conn.clone())
        .hooks(Shadowing {
            db: Arc::clone(&cell),
        })
        .connect()
        .await?;
    let _ = cell.set(db.clone());
    // Before the fix the hook waited for the lock its own create_resource held: a deadlock.
    let created = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        db.create_resource(ResourceConfig::new("orders").attribute("v", "number")),
    )
    .await;
    assert!(created.is_ok(), "create_resource deadlocked in its hook");
    created.map_err(|_| Error::Refused {
        operation: "create_resource",
        reason: "timed out".into(),
    })??;
    assert!(db.resource("plg_shadow_orders").is_some());
    Ok(())
}

/// Counts what a delete_all goes through, and refuses it while `refuse` is set.
struct Clearing {
    log: Arc<Mutex<Vec<String>>>,
    refuse: bool,
}

#[async_trait]
impl ResourceHooks for Clearing {
    async fn before_delete_all(&self, resource: &str) -> s3db_core::Result<()> {
        if self.refuse {
            return Err(Error::Refused {
                operation: "delete_all",
                reason: format!("{resource} is kept by a hook"),
            });
        }
        Ok(())
    }
    async fn after_delete_all(&self, resource: &str, objects: u64) -> s3db_core::Result<()> {
        if let Ok(mut log) = self.log.lock() {
            log.push(format!("after_delete_all {resource} {objects}"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn delete_all_goes_through_middleware_hooks_and_events() -> TestResult {
    let t = TestStore::memory("delete-all");
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let notes = db
        .create_resource(
            ResourceConfig::new("notes")
                .attribute("text", "string|required")
                .attribute("tag", "string")
                .partition("byTag", ["tag"])
                .paranoid(false),
        )
        .await?;
    for i in 0..3 {
        notes
            .insert(json!({"id": format!("n{i}"), "text": "x", "tag": "t"}))
            .await?;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    notes.add_middleware(Interceptor {
        seen: Arc::clone(&seen),
        cache: Mutex::new(None),
    });
    let log = Arc::new(Mutex::new(Vec::new()));
    let refusing = notes.add_hooks(Clearing {
        log: Arc::clone(&log),
        refuse: true,
    });
    let mut events = notes.subscribe();

    // A before-hook keeps everything: nothing is deleted.
    let before = db.store().requests();
    assert!(matches!(
        notes.delete_all().await,
        Err(Error::Refused { .. })
    ));
    assert_eq!(db.store().requests().since(&before).total(), 0);
    assert_eq!(notes.count().await?, 3);

    assert!(notes.remove_hooks(refusing));
    notes.add_hooks(Clearing {
        log: Arc::clone(&log),
        refuse: false,
    });
    // 3 records + 3 partition references.
    assert_eq!(notes.delete_all().await?, 6);
    assert_eq!(notes.count().await?, 0);
    let names = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(
        names,
        ["delete_all", "count", "delete_all", "count"],
        "middleware sees delete_all"
    );
    let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(lines, ["after_delete_all notes 6"]);
    let mut all_deleted = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::AllDeleted { resource, objects } = event {
            all_deleted.push((resource, objects));
        }
    }
    assert_eq!(all_deleted, [("notes".to_owned(), 6)]);
    Ok(())
}

/// Logs what after-delete hooks are handed; asks for the deleted record when `wants` is set.
struct DeleteWatcher {
    wants: bool,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

#[async_trait]
impl ResourceHooks for DeleteWatcher {
    fn wants_deleted_record(&self) -> bool {
        self.wants
    }
    async fn after_delete(
        &self,
        _resource: &str,
        _id: &str,
        record: Option<&Record>,
    ) -> s3db_core::Result<()> {
        let text = record.and_then(|r| r.get("text").and_then(|t| t.as_str().map(str::to_owned)));
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(text);
        }
        Ok(())
    }
}

#[tokio::test]
async fn hooks_that_want_the_deleted_record_get_it() -> TestResult {
    let t = TestStore::memory("hooks_deleted_record");
    let (db, notes) = notes(&t).await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let taken = || {
        seen.lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    };
    // Nobody asks: a delete of a resource without partitions is one DELETE, no record.
    let plain = notes.add_hooks(DeleteWatcher {
        wants: false,
        seen: Arc::clone(&seen),
    });
    notes.insert(json!({"id": "a", "text": "first"})).await?;
    let before = db.store().requests();
    notes.delete("a").await?;
    assert_eq!(db.store().requests().since(&before).total(), 1);
    assert_eq!(taken(), [None]);
    assert!(notes.remove_hooks(plain));

    // One hook set asks: every after-delete hook gets the record (one GET more).
    notes.add_hooks(DeleteWatcher {
        wants: true,
        seen: Arc::clone(&seen),
    });
    notes.add_hooks(DeleteWatcher {
        wants: false,
        seen: Arc::clone(&seen),
    });
    notes.insert(json!({"id": "b", "text": "second"})).await?;
    let before = db.store().requests();
    notes.delete("b").await?;
    let spent = db.store().requests().since(&before);
    assert_eq!(
        (
            spent.count(RequestKind::Get),
            spent.count(RequestKind::Delete)
        ),
        (1, 1)
    );
    assert_eq!(
        taken(),
        [Some("second".to_owned()), Some("second".to_owned())]
    );
    // A delete of a missing record changes nothing and runs no after-hook.
    notes.delete("missing").await?;
    assert!(taken().is_empty());
    Ok(())
}
