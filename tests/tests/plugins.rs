//! The plugin framework: lifecycle order, typed access, duplicate names, deferred setup in both
//! orders, rollback of a failing install, uninstall with and without purge, stop on disconnect.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use s3db_core::Key;
use s3db_core::plugin::*;
use s3db_core::testing::TestStore;
use serde_json::json;

type TestResult = std::result::Result<(), Error>;

/// Counts inserts into one resource, keeps the count in its storage, runs a ticking task.
struct Counter {
    name: String,
    resource: String,
    log: Arc<Mutex<Vec<String>>>,
    ticks: Arc<AtomicUsize>,
    fail_install: bool,
}

impl Counter {
    fn new(name: &str, resource: &str, log: &Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            name: name.to_owned(),
            resource: resource.to_owned(),
            log: Arc::clone(log),
            ticks: Arc::new(AtomicUsize::new(0)),
            fail_install: false,
        }
    }

    fn note(&self, what: &str) {
        if let Ok(mut log) = self.log.lock() {
            log.push(format!("{} {what}", self.name));
        }
    }
}

struct CountInserts {
    storage: PluginStorage,
}

#[async_trait]
impl ResourceHooks for CountInserts {
    async fn after_insert(&self, resource: &str, _record: &Record) -> Result<()> {
        let key = self.storage.key(Some(resource), &["inserts"])?;
        self.storage
            .set(
                &key,
                &json!({"seen": true})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                SetOptions::default(),
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Plugin for Counter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        self.note("install");
        let storage = cx.storage().clone();
        let hooks_cx = cx.clone();
        cx.when_resource(&self.resource, move |resource| {
            let cx = hooks_cx.clone();
            let storage = storage.clone();
            async move {
                cx.add_resource_hooks(&resource, CountInserts { storage });
                Ok(())
            }
        })
        .await?;
        cx.create_resource(
            ResourceConfig::new(format!("plg_{}_log", cx.storage().slug().replace('-', "_")))
                .attribute("line", "string"),
        )
        .await?;
        if self.fail_install {
            return Err(Error::Refused {
                operation: "install",
                reason: "asked to fail".into(),
            });
        }
        Ok(())
    }

    async fn start(&self, cx: &PluginContext) -> Result<()> {
        self.note("start");
        let ticks = Arc::clone(&self.ticks);
        cx.spawn(async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Ok(())
    }

    async fn stop(&self, _cx: &PluginContext) -> Result<()> {
        self.note("stop");
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, purge: bool) -> Result<()> {
        self.note(&format!("uninstall purge={purge}"));
        Ok(())
    }
}

fn notes() -> ResourceConfig {
    ResourceConfig::new("notes").attribute("text", "string")
}

#[tokio::test]
async fn builder_plugins_install_all_then_start_all_and_stop_in_reverse() -> TestResult {
    let t = TestStore::memory("plugin_order");
    let log = Arc::new(Mutex::new(Vec::new()));
    let db = Database::builder()
        .connection(t.conn.clone())
        .plugin(Counter::new("a", "notes", &log))
        .plugin(Counter::new("b", "notes", &log))
        .connect()
        .await?;
    assert_eq!(db.plugins(), ["a", "b"]);
    db.disconnect().await?;
    let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(
        lines,
        [
            "a install",
            "b install",
            "a start",
            "b start",
            "b stop",
            "a stop"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn typed_access_duplicates_and_failed_install() -> TestResult {
    let t = TestStore::memory("plugin_access");
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let a = db.use_plugin(Counter::new("a", "notes", &log)).await?;
    let found = db
        .plugin::<Counter>()
        .unwrap_or_else(|| panic!("typed access"));
    assert!(Arc::ptr_eq(&a, &found));
    // A second plugin of the same type under another name: found by name.
    let second = db.use_plugin(Counter::new("a2", "notes", &log)).await?;
    let named = db.plugin_named::<Counter>("a2");
    assert!(named.is_some_and(|n| Arc::ptr_eq(&n, &second)));
    assert!(
        db.plugin_named::<Counter>("a")
            .is_some_and(|n| Arc::ptr_eq(&n, &a))
    );
    assert!(db.plugin_named::<Counter>("nope").is_none());
    db.uninstall_plugin("a2", false).await?;
    let dup = db.use_plugin(Counter::new("a", "notes", &log)).await.err();
    assert!(
        matches!(dup, Some(Error::Plugin { ref plugin, .. }) if plugin == "a"),
        "{dup:?}"
    );

    let notes = db.create_resource(notes()).await?;
    let before = notes.interceptor_count();
    let mut bad = Counter::new("bad", "notes", &log);
    bad.fail_install = true;
    let err = db.use_plugin(bad).await.err();
    assert!(
        matches!(err, Some(Error::Plugin { ref plugin, .. }) if plugin == "bad"),
        "{err:?}"
    );
    assert_eq!(
        notes.interceptor_count(),
        before,
        "a failed install is rolled back"
    );
    assert_eq!(db.plugins(), ["a"]);
    Ok(())
}

async fn deferred(resource_first: bool) -> TestResult {
    let t = TestStore::memory(if resource_first {
        "deferred_after"
    } else {
        "deferred_before"
    });
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = if resource_first {
        let r = db.create_resource(notes()).await?;
        db.use_plugin(Counter::new("c", "notes", &log)).await?;
        r
    } else {
        db.use_plugin(Counter::new("c", "notes", &log)).await?;
        db.create_resource(notes()).await?
    };
    assert_eq!(r.interceptor_count(), (1, 0));
    // Creating the resource again (same definition) does not set it up twice.
    db.create_resource(notes()).await?;
    assert_eq!(r.interceptor_count(), (1, 0));
    r.insert(json!({"text": "hi"})).await?;
    let cx = db.plugin_context("c").unwrap_or_else(|| panic!("context"));
    let key = cx.storage().key(Some("notes"), &["inserts"])?;
    assert!(cx.storage().get(&key).await?.is_some(), "the hook ran");
    Ok(())
}

#[tokio::test]
async fn deferred_setup_when_plugin_comes_first() -> TestResult {
    deferred(false).await
}

#[tokio::test]
async fn deferred_setup_when_resource_comes_first() -> TestResult {
    deferred(true).await
}

async fn uninstall(t: TestStore, purge: bool) -> TestResult {
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let notes = db.create_resource(notes()).await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let plugin = db.use_plugin(Counter::new("d", "notes", &log)).await?;
    notes.insert(json!({"id": "n1", "text": "x"})).await?;
    let cx = db.plugin_context("d").unwrap_or_else(|| panic!("context"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(cx.running_tasks() > 0 && plugin.ticks.load(Ordering::SeqCst) > 0);
    let mut events = db.subscribe();
    let deleted = db.uninstall_plugin("d", purge).await?;
    assert_eq!(notes.interceptor_count(), (0, 0));
    assert_eq!(cx.running_tasks(), 0);
    let ticks = plugin.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        plugin.ticks.load(Ordering::SeqCst),
        ticks,
        "the task is stopped"
    );
    let keys: Vec<String> = db
        .store()
        .list_keys(None)
        .await?
        .into_iter()
        .map(|k| k.to_string())
        .collect();
    let plugin_keys: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains("plugin=d/") || k.starts_with("resource=plg_d_log/"))
        .collect();
    let mut purged_event = None;
    while let Ok(e) = events.try_recv() {
        if let Event::Plugin {
            event: PluginEvent::DataPurged { deleted },
            ..
        } = e
        {
            purged_event = Some(deleted);
        }
    }
    if purge {
        assert!(plugin_keys.is_empty(), "{plugin_keys:?}");
        assert!(deleted >= 1);
        assert_eq!(purged_event, Some(deleted));
    } else {
        assert_eq!(deleted, 0);
        assert!(!plugin_keys.is_empty(), "without purge the data stays");
        assert_eq!(purged_event, None);
    }
    assert!(
        keys.contains(&"resource=notes/data/id=n1".to_owned()),
        "user data untouched"
    );
    let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(
        lines.last().map(String::as_str),
        Some(if purge {
            "d uninstall purge=true"
        } else {
            "d uninstall purge=false"
        })
    );
    assert!(
        db.uninstall_plugin("d", purge).await.is_err(),
        "already gone"
    );
    let _ = Key::parse("x")?;
    Ok(())
}

#[tokio::test]
async fn uninstall_with_purge_on_memory() -> TestResult {
    uninstall(TestStore::memory("uninstall_purge"), true).await
}

#[tokio::test]
async fn uninstall_without_purge_on_file() -> TestResult {
    uninstall(TestStore::file("uninstall_keep"), false).await
}

#[tokio::test]
async fn uninstall_with_purge_on_file() -> TestResult {
    uninstall(TestStore::file("uninstall_purge"), true).await
}

#[tokio::test]
async fn reload_runs_deferred_setup_for_resources_other_processes_created() -> TestResult {
    let t = TestStore::file("plugin_reload");
    let log = Arc::new(Mutex::new(Vec::new()));
    let a = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    a.use_plugin(Counter::new("watcher", "notes", &log)).await?;
    // Another process (here: another database on the same folder) creates the resource.
    let b = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    b.create_resource(notes()).await?;
    assert!(a.resource("notes").is_none());
    a.reload().await?;
    let notes_in_a = a.resource("notes").unwrap_or_else(|| panic!("reloaded"));
    assert_eq!(
        notes_in_a.interceptor_count(),
        (1, 0),
        "the deferred setup ran on reload"
    );
    a.reload().await?;
    assert_eq!(notes_in_a.interceptor_count(), (1, 0), "and only once");
    Ok(())
}

#[tokio::test]
async fn dropping_the_database_stops_plugin_tasks() -> TestResult {
    let t = TestStore::memory("plugin_drop");
    let log = Arc::new(Mutex::new(Vec::new()));
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let plugin = db.use_plugin(Counter::new("ticker", "notes", &log)).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(plugin.ticks.load(Ordering::SeqCst) > 0);
    drop(db);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ticks = plugin.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(
        plugin.ticks.load(Ordering::SeqCst),
        ticks,
        "no task outlives its database"
    );
    Ok(())
}
