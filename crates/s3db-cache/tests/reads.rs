//! Every cached read: repeated = zero store requests; after any write, the next read sees the
//! new data; a write invalidates exactly what it can change. On memory and file backends, with
//! and without partitions.

mod common;

use common::*;
use s3db_cache::{CachePlugin, FilesystemConfig, MemoryConfig, Strategy, bypass};
use s3db_core::testing::TestStore;
use s3db_core::{Database, Resource};
use serde_json::json;

async fn seed(r: &Resource, partitions: bool) -> TestResult {
    if partitions {
        seed_users(r).await
    } else {
        for (id, text) in [("a", "alpha"), ("b", "beta"), ("c", "gamma")] {
            r.insert(json!({"id": id, "text": text})).await?;
        }
        Ok(())
    }
}

/// Reads every read twice: the second makes no store request and answers the same.
async fn all_cached(db: &Database, r: &Resource, reads: &[Read], when: &str) {
    for (name, read) in reads {
        let first = read(r.clone()).await;
        let (second, n) = requests_of(db, read(r.clone())).await;
        assert_eq!(
            n, 0,
            "{name} ({when}): a repeated read made {n} store requests"
        );
        assert_eq!(first, second, "{name} ({when}): a repeated read changed");
    }
}

/// Every read answers what the store has.
async fn all_fresh(r: &Resource, reads: &[Read], after: &str) {
    for (name, read) in reads {
        let cached = read(r.clone()).await;
        let truth = bypass(read(r.clone())).await;
        assert_eq!(cached, truth, "{name}: stale after {after}");
    }
}

async fn reads_and_writes(t: TestStore, partitions: bool) -> TestResult {
    reads_and_writes_with(t, partitions, memory_cache()).await
}

async fn reads_and_writes_with(t: TestStore, partitions: bool, plugin: CachePlugin) -> TestResult {
    let db = connect(&t.conn).await?;
    let cache = db.use_plugin(plugin).await?;
    let (config, reads) = if partitions {
        (users(), user_reads())
    } else {
        (notes(), plain_reads())
    };
    let r = db.create_resource(config).await?;
    seed(&r, partitions).await?;
    all_cached(&db, &r, &reads, "seeded").await;

    let doc = |text: &str, region: &str, age: i64| {
        if partitions {
            json!({"name": text, "region": region, "age": age})
        } else {
            json!({"text": text})
        }
    };
    // Inserts, updates of every kind, a move between partitions, deletes.
    r.insert_with_id("new", doc("Neo", "eu", 20)).await?;
    all_fresh(&r, &reads, "insert").await;
    all_cached(&db, &r, &reads, "after insert").await;

    r.update("a", doc("Ann 2", "us", 31)).await?;
    all_fresh(&r, &reads, "update moving a to another partition").await;
    all_cached(&db, &r, &reads, "after update").await;

    r.patch(
        "new",
        if partitions {
            json!({"age": 99})
        } else {
            json!({"text": "patched"})
        },
    )
    .await?;
    all_fresh(&r, &reads, "patch").await;
    all_cached(&db, &r, &reads, "after patch").await;

    r.replace("b", doc("Bob 2", "asia", 6)).await?;
    all_fresh(&r, &reads, "replace").await;

    r.upsert("z", doc("Zed", "asia", 70)).await?;
    all_fresh(&r, &reads, "upsert (insert)").await;

    let etag = r.get("z").await?.etag().clone();
    r.update_if_match(
        "z",
        json!(if partitions {
            json!({"age": 71})
        } else {
            json!({"text": "if-match"})
        }),
        &etag,
    )
    .await?;
    all_fresh(&r, &reads, "update_if_match with the cached etag").await;

    r.delete("new").await?;
    all_fresh(&r, &reads, "delete").await;
    all_cached(&db, &r, &reads, "after delete").await;

    for result in r
        .insert_many([doc("m1", "eu", 1), doc("m2", "us", 2)])
        .await
    {
        result?;
    }
    all_fresh(&r, &reads, "insert_many").await;
    for result in r.delete_many(&["a", "z"]).await {
        result?;
    }
    all_fresh(&r, &reads, "delete_many").await;

    let stats = cache.stats();
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    assert_eq!(stats.errors, 0);
    Ok(())
}

#[tokio::test]
async fn memory_backend_with_partitions() -> TestResult {
    reads_and_writes(TestStore::memory("cache_reads_mp"), true).await
}

#[tokio::test]
async fn memory_backend_without_partitions() -> TestResult {
    reads_and_writes(TestStore::memory("cache_reads_m"), false).await
}

#[tokio::test]
async fn file_backend_with_partitions() -> TestResult {
    reads_and_writes(TestStore::file("cache_reads_fp"), true).await
}

#[tokio::test]
async fn file_backend_without_partitions() -> TestResult {
    reads_and_writes(TestStore::file("cache_reads_f"), false).await
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn filesystem_cache(dir: &tempfile::TempDir) -> CachePlugin {
    CachePlugin::filesystem(dir.path())
        .build()
        .unwrap_or_else(|e| panic!("filesystem cache: {e}"))
}

#[tokio::test]
async fn filesystem_driver_with_partitions() -> TestResult {
    let dir = tempdir();
    let t = TestStore::memory("cache_reads_fs_mp");
    reads_and_writes_with(t, true, filesystem_cache(&dir)).await
}

#[tokio::test]
async fn filesystem_driver_without_partitions() -> TestResult {
    let dir = tempdir();
    let t = TestStore::memory("cache_reads_fs_m");
    reads_and_writes_with(t, false, filesystem_cache(&dir)).await
}

#[tokio::test]
async fn multi_driver_memory_over_filesystem() -> TestResult {
    for strategy in [Strategy::WriteThrough, Strategy::PromoteOnHit] {
        // A folder per database: entries are keyed by resource, not by bucket.
        let dir = tempdir();
        let plugin = CachePlugin::multi([
            MemoryConfig::new().into(),
            FilesystemConfig::new(dir.path()).into(),
        ])
        .strategy(strategy)
        .build()?;
        let t = TestStore::memory(&format!("cache_reads_multi_{strategy:?}"));
        reads_and_writes_with(t, true, plugin).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_write_invalidates_exactly_what_it_can_change() -> TestResult {
    let t = TestStore::memory("cache_precise");
    let db = connect(&t.conn).await?;
    db.use_plugin(memory_cache()).await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    let other = db.create_resource(notes()).await?;
    other.insert(json!({"id": "n", "text": "x"})).await?;

    let warm = || async {
        users.get("a").await?;
        users.get("c").await?;
        users.count().await?;
        users
            .count_partition("byRegion", json!({"region": "eu"}))
            .await?;
        users
            .count_partition("byRegion", json!({"region": "us"}))
            .await?;
        users
            .list_partition("byRegion", json!({"region": "us"}))
            .await?;
        other.count().await?;
        other.get("n").await?;
        Ok::<(), s3db_core::Error>(())
    };
    warm().await?;

    // b stays in eu: a, c, the us partition and the other resource stay cached.
    users
        .update("b", json!({"name": "Bobby", "region": "eu", "age": 6}))
        .await?;
    for (what, n) in [
        ("get a", requests_of(&db, users.get("a")).await.1),
        ("get c", requests_of(&db, users.get("c")).await.1),
        (
            "count us",
            requests_of(
                &db,
                users.count_partition("byRegion", json!({"region": "us"})),
            )
            .await
            .1,
        ),
        (
            "list us",
            requests_of(
                &db,
                users.list_partition("byRegion", json!({"region": "us"})),
            )
            .await
            .1,
        ),
        ("other count", requests_of(&db, other.count()).await.1),
        ("other get", requests_of(&db, other.get("n")).await.1),
    ] {
        assert_eq!(
            n, 0,
            "{what} was invalidated by a write that cannot change it"
        );
    }
    // What it can change was reloaded.
    for (what, n) in [
        ("count", requests_of(&db, users.count()).await.1),
        (
            "count eu",
            requests_of(
                &db,
                users.count_partition("byRegion", json!({"region": "eu"})),
            )
            .await
            .1,
        ),
        ("get b", requests_of(&db, users.get("b")).await.1),
    ] {
        assert!(n > 0, "{what} was not invalidated");
    }

    // a moves from eu to us: both partitions reload and are right.
    warm().await?;
    users
        .update("a", json!({"name": "Ann", "region": "us", "age": 30}))
        .await?;
    let (us, n) = requests_of(
        &db,
        users.count_partition("byRegion", json!({"region": "us"})),
    )
    .await;
    assert!(n > 0);
    assert_eq!(us?, 2);
    assert_eq!(
        users
            .count_partition("byRegion", json!({"region": "eu"}))
            .await?,
        1
    );
    assert_eq!(requests_of(&db, users.get("c")).await.1, 0, "c untouched");

    // A delete: the record's get answers "not found" at once, its partition reloads.
    users.delete("c").await?;
    assert!(matches!(
        users.get("c").await,
        Err(s3db_core::Error::NotFound { .. })
    ));
    assert_eq!(
        users
            .count_partition("byRegion", json!({"region": "us"}))
            .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_new_schema_version_does_not_see_old_entries() -> TestResult {
    let t = TestStore::memory("cache_versions");
    let db = connect(&t.conn).await?;
    db.use_plugin(memory_cache()).await?;
    let notes = db.create_resource(notes()).await?;
    notes.insert(json!({"id": "a", "text": "x"})).await?;
    assert_eq!(notes.count().await?, 1);
    db.create_resource(common::notes().attribute("extra", "string"))
        .await?;
    assert_eq!(notes.version(), "v2");
    let (count, n) = requests_of(&db, notes.count()).await;
    assert_eq!(count?, 1);
    assert!(n > 0, "v1 entries are not answers for v2");
    Ok(())
}

#[tokio::test]
async fn s3_backend_with_partitions() -> TestResult {
    match TestStore::s3("cache_reads_s3") {
        Some(t) => reads_and_writes(t, true).await,
        None => Ok(()),
    }
}
