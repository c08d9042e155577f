//! Every driver: memory (capacity, weight, TTL), filesystem (zero requests, LRU eviction at
//! max bytes, survives a restart, purge), s3 (PluginStorage, TTL, real server when configured),
//! multi (write-through, promote-on-hit), and failing tiers falling through.

mod common;

use s3db_core::plugin::CustomEvent;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use s3db_cache::{
    CacheDriver, CacheEntry, CacheKey, CachePlugin, FilesystemConfig, Invalidation, MemoryConfig,
    S3Config, Strategy, ValueKind,
};
use s3db_core::plugin::{PluginContext, async_trait};
use s3db_core::testing::TestStore;
use s3db_core::{Error, RequestKind, Result};
use serde_json::json;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn entry_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".entry"))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().map(|m| m.len()).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ----- memory -----

#[tokio::test]
async fn memory_driver_evicts_past_max_entries() -> TestResult {
    let t = TestStore::memory("cache_mem_evict");
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::memory().max_entries(3).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    for i in 0..10 {
        users
            .insert(json!({"id": format!("u{i}"), "name": "x", "region": "eu"}))
            .await?;
    }
    for i in 0..10 {
        users.get(&format!("u{i}")).await?;
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(stats.evictions >= 7, "{stats:?}");
    assert_eq!(stats.evictions, users_cache_evictions(&users));
    assert_eq!(stats.tiers[0].evictions, stats.evictions);
    Ok(())
}

fn users_cache_evictions(users: &s3db_core::Resource) -> u64 {
    use s3db_cache::CacheExt;
    users.cache().map(|c| c.stats().evictions).unwrap_or(0)
}

#[tokio::test]
async fn memory_driver_evicts_past_max_weight() -> TestResult {
    let t = TestStore::memory("cache_mem_weight");
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::memory().max_weight(4_000).build()?)
        .await?;
    let notes = db.create_resource(notes()).await?;
    let big = "x".repeat(1_000);
    for i in 0..10 {
        notes
            .insert(json!({"id": format!("n{i}"), "text": big}))
            .await?;
    }
    for i in 0..10 {
        notes.get(&format!("n{i}")).await?;
    }
    cache.run_pending_tasks().await;
    assert!(cache.stats().evictions >= 5, "{:?}", cache.stats());
    Ok(())
}

#[tokio::test]
async fn memory_entries_expire_after_their_ttl() -> TestResult {
    let t = TestStore::memory("cache_mem_ttl");
    let db = connect(&t.conn).await?;
    db.use_plugin(
        CachePlugin::memory()
            .ttl(Duration::from_millis(200))
            .build()?,
    )
    .await?;
    let notes = db.create_resource(notes()).await?;
    notes.insert(json!({"id": "a", "text": "x"})).await?;
    notes.count().await?;
    assert_eq!(requests_of(&db, notes.count()).await.1, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(requests_of(&db, notes.count()).await.1 > 0, "expired");
    Ok(())
}

// ----- filesystem -----

#[tokio::test]
async fn filesystem_driver_serves_every_read_without_requests() -> TestResult {
    let dir = tempdir();
    let t = TestStore::file("cache_fs_reads");
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::filesystem(dir.path()).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    let reads = || async {
        let eu = json!({"region": "eu"});
        Ok::<_, Error>((
            users.count().await?,
            users.list_ids().await?,
            users.count_partition("byRegion", &eu).await?,
            users.exists("a").await?,
            matches!(users.get("nobody").await, Err(Error::NotFound { .. })),
            users.get("a").await?.to_json(),
            users.list().await?.len(),
        ))
    };
    let first = reads().await?;
    let (second, n) = requests_of(&db, reads()).await;
    assert_eq!(n, 0);
    assert_eq!(first, second?);
    assert!(!entry_files(dir.path()).is_empty());
    // Records are stored as JSON: nothing is left to the store.
    assert_eq!(cache.stats().uncached, 0);
    assert_eq!(cache.stats().errors, 0);
    // Writes are seen.
    users
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    assert_eq!(reads().await?.0, 4);
    assert_eq!(reads().await?.2, 3);
    Ok(())
}

#[tokio::test]
async fn filesystem_driver_evicts_least_recently_used_past_max_bytes() -> TestResult {
    let dir = tempdir();
    let t = TestStore::memory("cache_fs_evict");
    let db = connect(&t.conn).await?;
    // Entries are about 400 bytes: room for about five.
    let cache = db
        .use_plugin(
            CachePlugin::filesystem(dir.path())
                .max_bytes(2_000)
                .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    let count_of = |region: String| {
        let users = users.clone();
        async move {
            users
                .count_partition("byRegion", json!({ "region": region }))
                .await
        }
    };
    count_of("hot".into()).await?;
    for i in 0..20 {
        count_of(format!("r{i}")).await?;
        // Keep "hot" recently used.
        assert_eq!(
            requests_of(&db, count_of("hot".into())).await.1,
            0,
            "hot entry evicted at {i}"
        );
    }
    let files = entry_files(dir.path());
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    assert!(total <= 2_000, "{total} bytes on disk");
    assert!(files.len() >= 2);
    let stats = cache.stats();
    assert!(stats.evictions >= 10, "{stats:?}");
    // The oldest cold entry is gone: it reloads.
    assert!(requests_of(&db, count_of("r0".into())).await.1 > 0);
    Ok(())
}

#[tokio::test]
async fn filesystem_driver_survives_a_restart() -> TestResult {
    let dir = tempdir();
    let t = TestStore::file("cache_fs_restart");
    {
        let db = connect(&t.conn).await?;
        db.use_plugin(CachePlugin::filesystem(dir.path()).build()?)
            .await?;
        let users = db.create_resource(users()).await?;
        seed_users(&users).await?;
        assert_eq!(users.count().await?, 3);
        assert_eq!(users.list_ids().await?, ["a", "b", "c"]);
        db.disconnect().await?;
    }
    // A new process: new database, new plugin instance, same folder.
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::filesystem(dir.path()).build()?)
        .await?;
    let users = resource(&db, "users");
    let (count, n) = requests_of(&db, users.count()).await;
    assert_eq!((count?, n), (3, 0), "served from the folder");
    let (ids, n) = requests_of(&db, users.list_ids()).await;
    assert_eq!((ids?.len(), n), (3, 0));
    assert_eq!(cache.stats().hits, 2);
    // Its own writes invalidate what it found on disk.
    users.delete("a").await?;
    assert_eq!(users.count().await?, 2);
    assert_eq!(users.list_ids().await?, ["b", "c"]);
    Ok(())
}

#[tokio::test]
async fn filesystem_driver_serves_records_after_a_restart() -> TestResult {
    let dir = tempdir();
    let t = TestStore::memory("cache_fs_restart_records");
    let first = {
        let db = connect(&t.conn).await?;
        db.use_plugin(CachePlugin::filesystem(dir.path()).build()?)
            .await?;
        let users = db.create_resource(users()).await?;
        seed_users(&users).await?;
        let a = users.get("a").await?;
        db.disconnect().await?;
        a
    };
    // A new process: new database, new plugin instance, same folder.
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::filesystem(dir.path()).build()?)
        .await?;
    let users = resource(&db, "users");
    let (a, n) = requests_of(&db, users.get("a")).await;
    let a = a?;
    assert_eq!(n, 0, "served from the folder");
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(a.to_json(), first.to_json());
    assert_eq!(a.etag(), first.etag());
    assert_eq!(a.schema_version(), first.schema_version());
    // The etag read back is usable for a conditional write, which invalidates the entry.
    users
        .update_if_match("a", json!({"name": "Ann 2"}), a.etag())
        .await?;
    let (a, n) = requests_of(&db, users.get("a")).await;
    assert_eq!(a?.get("name"), Some(&json!("Ann 2")));
    assert!(n > 0, "reloaded after the write");
    Ok(())
}

#[tokio::test]
async fn filesystem_purge_clears_the_folder() -> TestResult {
    let root = tempdir();
    let dir = root.path().join("cache");
    let t = TestStore::memory("cache_fs_purge");
    let db = connect(&t.conn).await?;
    db.use_plugin(CachePlugin::filesystem(&dir).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    users.count().await?;
    assert!(!entry_files(&dir).is_empty());
    db.uninstall_plugin("cache", false).await?;
    assert!(!entry_files(&dir).is_empty(), "kept without purge");
    db.use_plugin(CachePlugin::filesystem(&dir).build()?)
        .await?;
    db.uninstall_plugin("cache", true).await?;
    assert!(
        !dir.exists(),
        "purge removes the entries and the emptied folder"
    );
    Ok(())
}

// ----- s3 -----

async fn s3_driver_on(t: TestStore) -> TestResult {
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::s3().ttl(Duration::from_secs(2)).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    assert_eq!(users.count().await?, 3);
    // A hit is one GET of the entry instead of a LIST of the resource.
    let before = db.store().requests();
    assert_eq!(users.count().await?, 3);
    assert_eq!(
        users
            .count_partition("byRegion", json!({"region": "eu"}))
            .await?,
        2
    );
    assert_eq!(
        users
            .count_partition("byRegion", json!({"region": "eu"}))
            .await?,
        2
    );
    let spent = db.store().requests().since(&before);
    assert_eq!(spent.count(RequestKind::List), 1, "{spent:?}");
    let keys = db.store().list_keys(None).await?;
    assert!(
        keys.iter()
            .any(|k| k.as_str().starts_with("resource=users/plugin=cache/c/")),
        "{keys:?}"
    );
    // Writes are seen.
    users
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    assert_eq!(users.count().await?, 4);
    assert_eq!(
        users
            .count_partition("byRegion", json!({"region": "eu"}))
            .await?,
        3
    );
    // Entries expire with their TTL.
    users.count().await?;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (_, spent) = {
        let before = db.store().requests();
        let c = users.count().await?;
        (c, db.store().requests().since(&before))
    };
    assert_eq!(spent.count(RequestKind::List), 1, "expired entry reloads");
    assert!(cache.stats().hits >= 2);
    db.uninstall_plugin("cache", true).await?;
    let left: Vec<_> = db
        .store()
        .list_keys(None)
        .await?
        .into_iter()
        .filter(|k| k.as_str().contains("plugin=cache"))
        .collect();
    assert!(left.is_empty(), "purge: {left:?}");
    Ok(())
}

#[tokio::test]
async fn s3_driver_on_memory() -> TestResult {
    s3_driver_on(TestStore::memory("cache_s3_mem")).await
}

#[tokio::test]
async fn s3_driver_on_file() -> TestResult {
    s3_driver_on(TestStore::file("cache_s3_file")).await
}

#[tokio::test]
async fn s3_driver_on_s3() -> TestResult {
    match TestStore::s3("cache_s3_s3") {
        Some(t) => s3_driver_on(t).await,
        None => Ok(()),
    }
}

// ----- multi -----

#[tokio::test]
async fn multi_write_through_writes_every_tier() -> TestResult {
    let dir = tempdir();
    let t = TestStore::file("cache_multi_wt");
    let tiers = || {
        CachePlugin::multi([
            MemoryConfig::new().into(),
            FilesystemConfig::new(dir.path()).into(),
        ])
        .strategy(Strategy::WriteThrough)
        .build()
    };
    let db = connect(&t.conn).await?;
    let cache = db.use_plugin(tiers()?).await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    users.count().await?;
    users.get("a").await?;
    assert_eq!(
        entry_files(dir.path()).len(),
        2,
        "the count and the record went to disk too"
    );
    assert_eq!(requests_of(&db, users.count()).await.1, 0);
    assert_eq!(requests_of(&db, users.get("a")).await.1, 0);
    let stats = cache.stats();
    assert_eq!((stats.tiers[0].hits, stats.tiers[1].hits), (2, 0));
    db.disconnect().await?;

    // Restarted: memory is empty, the disk tier answers, and stays the one answering.
    let db = connect(&t.conn).await?;
    let cache = db.use_plugin(tiers()?).await?;
    let users = resource(&db, "users");
    assert_eq!(requests_of(&db, users.count()).await.1, 0);
    assert_eq!(requests_of(&db, users.count()).await.1, 0);
    assert_eq!(requests_of(&db, users.get("a")).await.1, 0);
    let stats = cache.stats();
    assert_eq!((stats.tiers[0].hits, stats.tiers[1].hits), (0, 3));
    Ok(())
}

#[tokio::test]
async fn multi_promote_on_hit_copies_lower_hits_up() -> TestResult {
    let dir = tempdir();
    let t = TestStore::file("cache_multi_promote");
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(
            CachePlugin::multi([
                MemoryConfig::new().into(),
                FilesystemConfig::new(dir.path()).into(),
            ])
            .strategy(Strategy::PromoteOnHit)
            .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    users.count().await?; // miss: stored in the lowest tier only
    assert_eq!(entry_files(dir.path()).len(), 1);
    assert_eq!(requests_of(&db, users.count()).await.1, 0); // disk hit, promoted
    assert_eq!(requests_of(&db, users.count()).await.1, 0); // memory hit
    let stats = cache.stats();
    assert_eq!((stats.tiers[0].hits, stats.tiers[1].hits), (1, 1));
    // Records too: stored on disk, promoted when read there.
    users.get("a").await?;
    assert_eq!(entry_files(dir.path()).len(), 2);
    assert_eq!(requests_of(&db, users.get("a")).await.1, 0); // disk hit, promoted
    assert_eq!(requests_of(&db, users.get("a")).await.1, 0); // memory hit
    let stats = cache.stats();
    assert_eq!((stats.tiers[0].hits, stats.tiers[1].hits), (2, 2));
    // A write reaches both tiers.
    users
        .insert(json!({"id": "d", "name": "Dee", "region": "us"}))
        .await?;
    assert_eq!(users.count().await?, 4);
    assert_eq!(users.count().await?, 4);
    assert_eq!(users.count().await?, 4);
    Ok(())
}

// ----- failing tiers -----

/// A driver whose every operation fails.
#[derive(Debug, Default)]
struct Failing {
    calls: AtomicU64,
}

impl Failing {
    fn fail(&self) -> Error {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Error::Storage {
            operation: "failing driver",
            key: String::new(),
            transient: true,
            source: "injected".into(),
        }
    }
}

#[async_trait]
impl CacheDriver for Failing {
    fn describe(&self) -> String {
        "failing".into()
    }
    fn accepts(&self, _kind: ValueKind) -> bool {
        true
    }
    fn ttl(&self) -> Option<Duration> {
        None
    }
    async fn get(&self, _key: &CacheKey) -> Result<Option<CacheEntry>> {
        Err(self.fail())
    }
    async fn put(&self, _key: &CacheKey, _entry: &CacheEntry) -> Result<()> {
        Err(self.fail())
    }
    async fn remove(&self, _key: &CacheKey) -> Result<()> {
        Err(self.fail())
    }
    async fn invalidate(&self, _invalidation: &Invalidation) -> Result<()> {
        Err(self.fail())
    }
    async fn clear(&self, _resource: Option<&str>) -> Result<()> {
        Err(self.fail())
    }
    async fn attach(&self, _cx: &PluginContext) -> Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_tier_falls_through_and_is_counted() -> TestResult {
    let t = TestStore::memory("cache_failing_tier");
    let db = connect(&t.conn).await?;
    let failing = Arc::new(Failing::default());
    let mut events = db.subscribe();
    let cache = db
        .use_plugin(
            CachePlugin::multi([
                s3db_cache::DriverConfig::Custom(failing.clone()),
                MemoryConfig::new().into(),
            ])
            .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    assert_eq!(users.count().await?, 3);
    assert_eq!(
        requests_of(&db, users.count()).await.1,
        0,
        "the memory tier answers"
    );
    users.update("a", json!({"age": 1})).await?;
    assert_eq!(users.get("a").await?.get("age"), Some(&json!(1)));
    let stats = cache.stats();
    assert!(stats.errors >= 4, "{stats:?}");
    assert_eq!(stats.tiers[0].errors, failing.calls.load(Ordering::Relaxed));
    assert!(stats.tiers[1].hits >= 1);
    let mut failures = 0;
    while let Ok(event) = events.try_recv() {
        if let Some((_, s3db_cache::CacheEvent::TierFailed { tier, .. })) =
            s3db_cache::CacheEvent::from_plugin_event(&event)
        {
            assert_eq!(tier, "failing");
            failures += 1;
        }
    }
    assert!(failures >= 4);
    Ok(())
}

#[tokio::test]
async fn a_cache_whose_only_driver_fails_never_fails_a_read() -> TestResult {
    let t = TestStore::memory("cache_only_failing");
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::custom(Arc::new(Failing::default())).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    for _ in 0..3 {
        assert_eq!(users.count().await?, 3);
        assert_eq!(users.list().await?.len(), 3);
        assert!(matches!(users.get("zz").await, Err(Error::NotFound { .. })));
    }
    assert_eq!(cache.stats().hits, 0);
    assert!(cache.stats().errors > 0);
    Ok(())
}

#[tokio::test]
async fn a_filesystem_tier_whose_folder_breaks_falls_through() -> TestResult {
    let root = tempdir();
    let dir = root.path().join("cache");
    let t = TestStore::memory("cache_fs_broken");
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(
            CachePlugin::multi([FilesystemConfig::new(&dir).into(), S3Config::new().into()])
                .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    assert_eq!(users.count().await?, 3);
    // The folder becomes unusable (a file in its place: fails even for root).
    std::fs::remove_dir_all(&dir).map_err(|e| Error::Refused {
        operation: "test",
        reason: e.to_string(),
    })?;
    std::fs::write(&dir, b"not a folder").map_err(|e| Error::Refused {
        operation: "test",
        reason: e.to_string(),
    })?;
    // The disk tier fails; the s3 tier answers; nothing fails for the user.
    assert_eq!(users.count().await?, 3);
    assert_eq!(users.count().await?, 3);
    users
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    assert_eq!(users.count().await?, 4);
    assert_eq!(users.count().await?, 4);
    let stats = cache.stats();
    assert!(stats.tiers[0].errors >= 2, "{stats:?}");
    assert!(stats.tiers[1].hits >= 2, "{stats:?}");
    Ok(())
}

#[tokio::test]
async fn a_folder_that_cannot_be_created_fails_the_install() -> TestResult {
    let root = tempdir();
    let file = root.path().join("file");
    std::fs::write(&file, b"x").map_err(|e| Error::Refused {
        operation: "test",
        reason: e.to_string(),
    })?;
    let t = TestStore::memory("cache_fs_bad_folder");
    let db = connect(&t.conn).await?;
    let result = db
        .use_plugin(CachePlugin::filesystem(file.join("sub")).build()?)
        .await;
    assert!(matches!(result, Err(Error::Plugin { .. })), "{result:?}");
    assert!(db.plugins().is_empty());
    Ok(())
}
