//! How writes invalidate: the O(1) stamps (a record, the collection, partition values), the
//! drivers asked only when they may hold something of the resource and dropping exactly what a
//! write affects, partition fields first read after writes, shared and restarted drivers, and no
//! reference cycle keeping a dropped database alive.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use s3db_cache::{
    CacheDriver, CacheEntry, CacheKey, CachePlugin, CachedValue, FilesystemConfig, Invalidation,
    MemoryConfig, MemoryDriver, ValueKind, bypass,
};
use s3db_core::plugin::{Operation, async_trait};
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, Filter, Page, Resource, Result};
use serde_json::{Value, json};

/// Every listing of users (partitions included) and the reads of record "new", as JSON.
async fn snapshot(users: &Resource) -> Result<Value> {
    let eu = json!({"region": "eu"});
    let us = json!({"region": "us"});
    let ids = |records: Vec<s3db_core::Record>| -> Vec<String> {
        records.iter().map(|r| r.id().to_owned()).collect()
    };
    Ok(json!({
        "list": ids(users.list().await?),
        "list_ids": users.list_ids().await?,
        "count": users.count().await?,
        "page": ids(users.page(Page::size(10)).await?.items),
        "query": ids(users.query(Filter::eq("region", "eu")).await?),
        "list eu": ids(users.list_partition("byRegion", &eu).await?),
        "count eu": users.count_partition("byRegion", &eu).await?,
        "count us": users.count_partition("byRegion", &us).await?,
        "exists new": users.exists("new").await?,
        "get new": match users.get("new").await {
            Ok(r) => r.to_json(),
            Err(Error::NotFound { .. }) => json!("not found"),
            Err(e) => return Err(e),
        },
    }))
}

async fn listings_see_an_insert(plugin: CachePlugin, t: TestStore) -> TestResult {
    let db = connect(&t.conn).await?;
    db.use_plugin(plugin).await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    let before = snapshot(&users).await?;
    let (_, n) = requests_of(&db, snapshot(&users)).await;
    assert_eq!(n, 0, "everything is cached");

    users
        .insert(json!({"id": "new", "name": "Neo", "region": "eu"}))
        .await?;
    let after = snapshot(&users).await?;
    assert_eq!(
        after,
        bypass(snapshot(&users)).await?,
        "fresh after the insert"
    );
    assert_eq!(after["count"], 4);
    assert_eq!(after["count eu"], 3);
    assert_ne!(after["get new"], before["get new"]);
    // The other partition stayed cached.
    let us = json!({"region": "us"});
    let (count, n) = requests_of(&db, users.count_partition("byRegion", &us)).await;
    assert_eq!((count?, n), (1, 0));

    // A move to the other partition: both are right.
    users.update("new", json!({"region": "us"})).await?;
    let moved = snapshot(&users).await?;
    assert_eq!(
        moved,
        bypass(snapshot(&users)).await?,
        "fresh after the update"
    );
    assert_eq!(
        (moved["count eu"].clone(), moved["count us"].clone()),
        (json!(2), json!(2))
    );
    users.delete("new").await?;
    assert_eq!(
        snapshot(&users).await?,
        before,
        "back to the start after the delete"
    );
    Ok(())
}

#[tokio::test]
async fn listings_see_an_insert_memory_driver() -> TestResult {
    listings_see_an_insert(memory_cache(), TestStore::memory("cache_inv_mem")).await
}

#[tokio::test]
async fn listings_see_an_insert_filesystem_driver() -> TestResult {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plugin = CachePlugin::filesystem(dir.path()).build()?;
    listings_see_an_insert(plugin, TestStore::memory("cache_inv_fs")).await
}

#[tokio::test]
async fn listings_see_an_insert_multi_driver() -> TestResult {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plugin = CachePlugin::multi([
        MemoryConfig::new().into(),
        FilesystemConfig::new(dir.path()).into(),
    ])
    .build()?;
    listings_see_an_insert(plugin, TestStore::memory("cache_inv_multi")).await
}

#[tokio::test]
async fn the_memory_driver_drops_exactly_what_a_write_affects() -> TestResult {
    let t = TestStore::memory("cache_inv_exact");
    let db = connect(&t.conn).await?;
    let driver = Arc::new(MemoryDriver::new(&MemoryConfig::new()));
    db.use_plugin(CachePlugin::custom(driver.clone()).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    let warm = || async {
        users.get("a").await?;
        users.get("b").await?;
        users.count().await?;
        users
            .count_partition("byRegion", json!({"region": "eu"}))
            .await?;
        users
            .count_partition("byRegion", json!({"region": "us"}))
            .await?;
        Ok::<_, Error>(())
    };
    warm().await?;
    driver.run_pending_tasks().await;
    assert_eq!(driver.entry_count(), 5);
    // a stays in eu: a's get, the count and eu's count go; b's get and us's count stay.
    users.update("a", json!({"age": 31})).await?;
    driver.run_pending_tasks().await;
    assert_eq!(driver.entry_count(), 2);
    assert_eq!(requests_of(&db, users.get("b")).await.1, 0);
    let us = json!({"region": "us"});
    assert_eq!(
        requests_of(&db, users.count_partition("byRegion", &us))
            .await
            .1,
        0
    );
    Ok(())
}

/// A memory driver that counts the invalidations it is asked for.
struct Counting {
    inner: MemoryDriver,
    invalidations: AtomicU64,
}

#[async_trait]
impl CacheDriver for Counting {
    fn describe(&self) -> String {
        "counting".into()
    }
    fn accepts(&self, kind: ValueKind) -> bool {
        self.inner.accepts(kind)
    }
    fn ttl(&self) -> Option<Duration> {
        self.inner.ttl()
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<()> {
        self.inner.put(key, entry).await
    }
    async fn remove(&self, key: &CacheKey) -> Result<()> {
        self.inner.remove(key).await
    }
    fn may_hold(&self, resource: &str) -> bool {
        self.inner.may_hold(resource)
    }
    async fn invalidate(&self, invalidation: &Invalidation) -> Result<()> {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.inner.invalidate(invalidation).await
    }
    async fn clear(&self, resource: Option<&str>) -> Result<()> {
        self.inner.clear(resource).await
    }
}

#[tokio::test]
async fn a_write_asks_only_drivers_that_may_hold_something_of_the_resource() -> TestResult {
    let t = TestStore::memory("cache_inv_may_hold");
    let db = connect(&t.conn).await?;
    let driver = Arc::new(Counting {
        inner: MemoryDriver::new(&MemoryConfig::new()),
        invalidations: AtomicU64::new(0),
    });
    let cache = db
        .use_plugin(CachePlugin::custom(driver.clone()).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    let notes = db.create_resource(notes()).await?;
    let asked = || driver.invalidations.load(Ordering::SeqCst);
    seed_users(&users).await?;
    assert_eq!(asked(), 0, "nothing cached: the driver is not asked");
    assert_eq!(cache.stats().invalidations, 3, "still counted");

    notes.insert(json!({"id": "n", "text": "x"})).await?;
    notes.count().await?;
    users
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    assert_eq!(asked(), 0, "only notes are cached");

    assert_eq!(users.count().await?, 4);
    users
        .insert(json!({"id": "e", "name": "Eve", "region": "us"}))
        .await?;
    assert_eq!(asked(), 1);
    assert_eq!(users.count().await?, 5, "dropped and reloaded");
    users.delete("e").await?;
    assert_eq!(asked(), 2);
    users.delete("d").await?;
    assert_eq!(asked(), 2, "the count was dropped by the previous write");
    assert_eq!(users.count().await?, 3);
    Ok(())
}

#[tokio::test]
async fn a_partition_first_read_after_writes_is_fresh_with_entries_of_a_previous_run() -> TestResult
{
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let t = TestStore::memory("cache_inv_restart_partition");
    let eu = json!({"region": "eu"});
    {
        let db = connect(&t.conn).await?;
        db.use_plugin(CachePlugin::filesystem(dir.path()).build()?)
            .await?;
        let users = db.create_resource(users()).await?;
        seed_users(&users).await?;
        assert_eq!(users.count_partition("byRegion", &eu).await?, 2);
        assert_eq!(users.count().await?, 3);
        db.disconnect().await?;
    }
    // A new process writes before it ever reads a partition.
    let db = connect(&t.conn).await?;
    db.use_plugin(CachePlugin::filesystem(dir.path()).build()?)
        .await?;
    let users = resource(&db, "users");
    users
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    assert_eq!(users.count_partition("byRegion", &eu).await?, 3);
    assert_eq!(users.count().await?, 4);
    let us = json!({"region": "us"});
    assert_eq!(users.count_partition("byRegion", &us).await?, 1);
    Ok(())
}

async fn s3_process(t: &TestStore) -> Result<Database> {
    let db = connect(&t.conn).await?;
    db.use_plugin(CachePlugin::s3().clock_skew(Duration::ZERO).build()?)
        .await?;
    Ok(db)
}

#[tokio::test]
async fn a_late_partition_answer_of_another_process_is_refused_by_the_writer() -> TestResult {
    // A writes before it ever reads the partition; B's answer, loaded before A's write, lands
    // in the shared driver after A's clean-up. A must not serve it.
    let t = TestStore::file("cache_inv_late_partition");
    let a = s3_process(&t).await?;
    let users_a = a.create_resource(users()).await?;
    let b = s3_process(&t).await?;
    let users_b = resource(&b, "users");
    seed_users(&users_a).await?;
    let eu = json!({"region": "eu"});
    let loaded_at = now_us().saturating_sub(1_000);
    assert_eq!(users_b.count_partition("byRegion", &eu).await?, 2);
    users_a
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    let (name, values) = (
        "byRegion".to_owned(),
        eu.as_object().cloned().unwrap_or_default(),
    );
    let key = CacheKey::of_operation(
        "users",
        &users_b.version(),
        &Operation::Count {
            partition: Some((name, values.into_iter().collect())),
        },
    )
    .unwrap_or_else(|| panic!("count_partition is cached"));
    let cache_b = b
        .plugin::<CachePlugin>()
        .unwrap_or_else(|| panic!("installed"));
    cache_b.tiers()[0]
        .put(
            &key,
            &CacheEntry {
                value: CachedValue::Count(2),
                loaded_at,
                writer: "process-b".into(),
            },
        )
        .await?;
    assert_eq!(users_a.count_partition("byRegion", &eu).await?, 3);
    // A's fresh answer is shared: B sees the write too.
    assert_eq!(users_b.count_partition("byRegion", &eu).await?, 3);
    Ok(())
}

#[tokio::test]
async fn two_databases_sharing_the_s3_driver_see_each_others_inserts() -> TestResult {
    let t = TestStore::file("cache_inv_two_lists");
    let a = s3_process(&t).await?;
    let users_a = a.create_resource(users()).await?;
    let b = s3_process(&t).await?;
    let users_b = resource(&b, "users");
    seed_users(&users_a).await?;
    let eu = json!({"region": "eu"});
    for round in 0..3u64 {
        assert_eq!(users_b.list_ids().await?.len() as u64, 3 + round);
        assert_eq!(users_b.count_partition("byRegion", &eu).await?, 2 + round);
        // Both are cached in the bucket: A is served what B stored.
        let (ids, n) = requests_of(&a, users_a.list_ids()).await;
        assert_eq!((ids?.len() as u64, n), (3 + round, 1));
        users_a
            .insert(json!({"id": format!("x{round}"), "name": "X", "region": "eu"}))
            .await?;
        assert_eq!(users_b.list_ids().await?.len() as u64, 4 + round);
        assert_eq!(users_b.count_partition("byRegion", &eu).await?, 3 + round);
        assert_eq!(users_a.list_ids().await?.len() as u64, 4 + round);
    }
    Ok(())
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[tokio::test]
async fn delete_all_invalidates_everything_of_the_resource() -> TestResult {
    let t = TestStore::memory("cache_inv_delete_all");
    let db = connect(&t.conn).await?;
    db.use_plugin(memory_cache()).await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    assert_eq!(users.count().await?, 3);
    users.get("a").await?;
    users.delete_all().await?;
    assert_eq!(users.count().await?, 0);
    assert!(matches!(users.get("a").await, Err(Error::NotFound { .. })));
    Ok(())
}

#[tokio::test]
async fn dropping_the_database_frees_the_cache() -> TestResult {
    // The plugin's context holds every resource it registered on; what it registers must not
    // hold the plugin back, or a dropped database (and its in-memory data) would live for ever.
    let t = TestStore::memory("cache_inv_drop");
    let driver = Arc::new(MemoryDriver::new(&MemoryConfig::new()));
    {
        let db = connect(&t.conn).await?;
        let plugin = db
            .use_plugin(CachePlugin::custom(driver.clone()).build()?)
            .await?;
        let users = db.create_resource(users()).await?;
        seed_users(&users).await?;
        users.count().await?;
        users.get("a").await?;
        assert!(Arc::strong_count(&driver) > 1);
        db.disconnect().await?;
        drop((users, plugin, db));
    }
    assert_eq!(
        Arc::strong_count(&driver),
        1,
        "nothing holds the plugin any more"
    );
    Ok(())
}
