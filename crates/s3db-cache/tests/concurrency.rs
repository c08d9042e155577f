//! Concurrent misses of one key make a single load; a load racing with a write never leaves
//! the writer reading old data.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use s3db_cache::CachePlugin;
use s3db_core::RequestKind;
use s3db_core::testing::TestStore;
use serde_json::json;
use tokio::sync::Barrier;

async fn single_load(t: TestStore, cache: CachePlugin) -> TestResult {
    // Every request takes 30 ms, so the 20 gets really overlap.
    let db = slow_db(&t, Duration::from_millis(30)).await?;
    db.use_plugin(cache).await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;

    let before = db.store().requests();
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let users = users.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            users.get("a").await
        }));
    }
    for task in tasks {
        let record = task.await.unwrap_or_else(|e| panic!("task: {e}"))?;
        assert_eq!(record.get("name"), Some(&json!("Ann")));
    }
    let spent = db.store().requests().since(&before);
    assert_eq!(spent.count(RequestKind::Get), 1, "{spent:?}");
    assert_eq!(spent.total(), 1, "{spent:?}");

    // Same for a listing, and for a record that does not exist.
    let before = db.store().requests();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let users = users.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                users.count().await.map(|_| ())
            } else {
                match users.get("ghost").await {
                    Err(s3db_core::Error::NotFound { .. }) => Ok(()),
                    other => other.map(|_| ()),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("task: {e}"))?;
    }
    let spent = db.store().requests().since(&before);
    assert_eq!(spent.count(RequestKind::List), 1, "{spent:?}");
    assert_eq!(spent.count(RequestKind::Get), 1, "{spent:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_misses_make_one_get_memory_driver() -> TestResult {
    single_load(TestStore::memory("cache_single_mem"), memory_cache()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_misses_make_one_get_on_file() -> TestResult {
    single_load(TestStore::file("cache_single_file"), memory_cache()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_misses_make_one_load_filesystem_driver() -> TestResult {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let t = TestStore::memory("cache_single_fs");
    let db = slow_db(&t, Duration::from_millis(30)).await?;
    db.use_plugin(CachePlugin::filesystem(dir.path()).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    let before = db.store().requests();
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let users = users.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            users.count().await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap_or_else(|e| panic!("task: {e}"))?, 3);
    }
    let spent = db.store().requests().since(&before);
    assert_eq!(spent.total(), 1, "{spent:?}");
    Ok(())
}

/// A slow load started before a write stores what it read; the writer's next read must not
/// get it, and neither must any read that starts after the write returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_racing_a_write_never_hides_the_write() -> TestResult {
    let t = TestStore::memory("cache_race");
    let db = slow_db(&t, Duration::from_millis(20)).await?;
    let cache = db.use_plugin(memory_cache()).await?;
    let notes = db.create_resource(notes()).await?;
    for round in 0..15u64 {
        let id = format!("n{round}");
        // Readers keep loading the count while the write happens.
        let mut readers = Vec::new();
        for delay in [0u64, 5, 15, 30] {
            let notes = notes.clone();
            readers.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                notes.count().await
            }));
        }
        tokio::time::sleep(Duration::from_millis(round % 4 * 7)).await;
        notes.insert(json!({"id": id, "text": "x"})).await?;
        // Read-your-writes, right after the write returned, while readers are in flight.
        assert_eq!(notes.count().await?, round + 1, "round {round}");
        assert_eq!(notes.list_ids().await?.len() as u64, round + 1);
        assert!(notes.exists(&id).await?);
        for r in readers {
            let n = r.await.unwrap_or_else(|e| panic!("task: {e}"))?;
            assert!(n == round || n == round + 1);
        }
        // And after every racing load finished.
        assert_eq!(notes.count().await?, round + 1, "round {round}, settled");
    }
    assert_eq!(cache.stats().errors, 0);
    Ok(())
}

/// A memory driver whose stores take a while: a load that read the store before a write can
/// store its answer after the write's clean-up.
struct SlowPuts {
    inner: s3db_cache::MemoryDriver,
    delay: Duration,
}

#[s3db_core::plugin::async_trait]
impl s3db_cache::CacheDriver for SlowPuts {
    fn describe(&self) -> String {
        "slow-puts".into()
    }
    fn accepts(&self, kind: s3db_cache::ValueKind) -> bool {
        self.inner.accepts(kind)
    }
    fn ttl(&self) -> Option<Duration> {
        self.inner.ttl()
    }
    async fn get(
        &self,
        key: &s3db_cache::CacheKey,
    ) -> s3db_core::Result<Option<s3db_cache::CacheEntry>> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &s3db_cache::CacheKey,
        entry: &s3db_cache::CacheEntry,
    ) -> s3db_core::Result<()> {
        tokio::time::sleep(self.delay).await;
        self.inner.put(key, entry).await
    }
    async fn remove(&self, key: &s3db_cache::CacheKey) -> s3db_core::Result<()> {
        self.inner.remove(key).await
    }
    async fn invalidate(&self, invalidation: &s3db_cache::Invalidation) -> s3db_core::Result<()> {
        self.inner.invalidate(invalidation).await
    }
    async fn clear(&self, resource: Option<&str>) -> s3db_core::Result<()> {
        self.inner.clear(resource).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_stored_after_the_writes_clean_up_is_never_served() -> TestResult {
    let t = TestStore::memory("cache_late_store");
    let db = connect(&t.conn).await?;
    let driver = Arc::new(SlowPuts {
        inner: s3db_cache::MemoryDriver::new(&s3db_cache::MemoryConfig::new()),
        delay: Duration::from_millis(150),
    });
    let cache = db.use_plugin(CachePlugin::custom(driver).build()?).await?;
    let notes = db.create_resource(notes()).await?;
    // A load reads 0 notes, then takes 150 ms to store it.
    let reader = {
        let notes = notes.clone();
        tokio::spawn(async move { notes.count().await })
    };
    tokio::time::sleep(Duration::from_millis(40)).await;
    notes.insert(json!({"id": "a", "text": "x"})).await?;
    // The write returned: this read waits for the slow load (one load per key), finds its
    // late answer in the cache, and must refuse it.
    assert_eq!(notes.count().await?, 1);
    assert_eq!(reader.await.unwrap_or_else(|e| panic!("task: {e}"))?, 0);
    assert_eq!(notes.count().await?, 1);
    assert!(
        cache.stats().stale + cache.stats().misses >= 2,
        "{:?}",
        cache.stats()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_misses_make_one_get_on_s3() -> TestResult {
    match TestStore::s3("cache_single_s3") {
        Some(t) => single_load(t, memory_cache()).await,
        None => Ok(()),
    }
}
