//! Bypass, include/exclude, internal resources, stats, clear / invalidate / warm, the resource
//! handle, typed access, events, configuration errors and uninstall.

mod common;

use common::*;
use s3db_cache::{
    CacheConfigError, CacheEvent, CacheExt, CachePlugin, FilesystemConfig, MemoryConfig, bypass,
    is_bypassed,
};
use s3db_core::ResourceConfig;
use s3db_core::plugin::CustomEvent;
use s3db_core::testing::TestStore;
use serde_json::json;

#[tokio::test]
async fn bypass_reads_the_store_and_stores_nothing() -> TestResult {
    let t = TestStore::memory("cache_bypass");
    let db = connect(&t.conn).await?;
    let cache = db.use_plugin(memory_cache()).await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    assert!(!is_bypassed());
    let (n, spent) = requests_of(
        &db,
        bypass(async {
            assert!(is_bypassed());
            users.count().await
        }),
    )
    .await;
    assert_eq!((n?, spent), (3, 1));
    // Nothing was stored: the next read is a miss.
    assert!(requests_of(&db, users.count()).await.1 > 0);
    assert_eq!(requests_of(&db, users.count()).await.1, 0);
    // A bypassed read of a cached answer goes to the store anyway.
    assert_eq!(requests_of(&db, bypass(users.count())).await.1, 1);
    // Writes inside a bypass still invalidate.
    bypass(users.insert(json!({"id": "d", "name": "Dee", "region": "eu"}))).await?;
    assert_eq!(users.count().await?, 4);
    assert_eq!(cache.stats().bypassed, 2);
    Ok(())
}

#[tokio::test]
async fn include_exclude_and_internal_resources() -> TestResult {
    let t = TestStore::memory("cache_select");
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::memory().include(["users", "notes"]).build()?)
        .await?;
    let users = db.create_resource(users()).await?;
    let notes = db.create_resource(notes()).await?;
    let other = db
        .create_resource(ResourceConfig::new("other").attribute("x", "string"))
        .await?;
    let internal = db
        .create_resource(ResourceConfig::new("plg_internal").attribute("x", "string"))
        .await?;
    assert!(cache.is_cached("users") && cache.is_cached("notes"));
    assert!(!cache.is_cached("other"), "not included");
    assert!(
        !cache.is_cached("plg_internal"),
        "internal resources are never cached"
    );
    assert!(users.cache().is_some() && other.cache().is_none() && internal.cache().is_none());
    other.count().await?;
    assert!(requests_of(&db, other.count()).await.1 > 0);
    notes.count().await?;
    assert_eq!(requests_of(&db, notes.count()).await.1, 0);

    // Exclusion, and the default (every user resource).
    let t = TestStore::memory("cache_exclude");
    let db = connect(&t.conn).await?;
    let cache = db
        .use_plugin(CachePlugin::memory().exclude(["notes"]).build()?)
        .await?;
    let notes = db.create_resource(common::notes()).await?;
    db.create_resource(common::users()).await?;
    let internal = db
        .create_resource(ResourceConfig::new("plg_x").attribute("x", "string"))
        .await?;
    assert!(cache.is_cached("users") && !cache.is_cached("notes") && !cache.is_cached("plg_x"));
    notes.count().await?;
    assert!(requests_of(&db, notes.count()).await.1 > 0);
    internal.count().await?;
    assert!(requests_of(&db, internal.count()).await.1 > 0);
    Ok(())
}

#[tokio::test]
async fn stats_per_plugin_and_per_resource() -> TestResult {
    let t = TestStore::memory("cache_stats");
    let db = connect(&t.conn).await?;
    db.use_plugin(memory_cache()).await?;
    let users = db.create_resource(users()).await?;
    let notes = db.create_resource(notes()).await?;
    seed_users(&users).await?;
    for _ in 0..4 {
        users.get("a").await?;
    }
    notes.count().await?;
    let cache = db
        .plugin::<CachePlugin>()
        .unwrap_or_else(|| panic!("typed access"));
    let all = cache.stats();
    assert_eq!((all.hits, all.misses), (3, 2));
    assert!((all.hit_ratio() - 0.6).abs() < 1e-9);
    let u = users.cache().unwrap_or_else(|| panic!("handle")).stats();
    assert_eq!((u.hits, u.misses), (3, 1));
    assert_eq!(u.invalidations, 3, "three inserts");
    assert_eq!(cache.stats_for("notes").misses, 1);
    assert_eq!(all.tiers.len(), 1);
    assert_eq!(all.tiers[0].driver, "memory");
    assert_eq!(all.tiers[0].hits, 3);
    Ok(())
}

#[tokio::test]
async fn clear_invalidate_and_warm() -> TestResult {
    let t = TestStore::memory("cache_controls");
    let db = connect(&t.conn).await?;
    let mut events = db.subscribe();
    let cache = db.use_plugin(memory_cache()).await?;
    let users = db.create_resource(users()).await?;
    let notes = db.create_resource(notes()).await?;
    seed_users(&users).await?;
    notes.insert(json!({"id": "n", "text": "x"})).await?;

    // warm: the listing and every record, then all of it without a request.
    assert_eq!(cache.warm("users").await?, 3);
    let (_, n) = requests_of(&db, async {
        users.list().await?;
        for id in ["a", "b", "c"] {
            users.get(id).await?;
        }
        Ok::<_, s3db_core::Error>(())
    })
    .await;
    assert_eq!(n, 0);

    // invalidate one record: its answers and the listings go, other records stay.
    let handle = users.cache().unwrap_or_else(|| panic!("handle"));
    handle.invalidate("a").await?;
    assert!(requests_of(&db, users.get("a")).await.1 > 0);
    assert_eq!(requests_of(&db, users.get("b")).await.1, 0);
    assert!(requests_of(&db, users.list()).await.1 > 0);

    // invalidate a resource; clear one resource through the handle; clear everything.
    notes.count().await?;
    cache.invalidate("users", None).await?;
    assert!(requests_of(&db, users.get("b")).await.1 > 0);
    assert_eq!(
        requests_of(&db, notes.count()).await.1,
        0,
        "other resources stay"
    );
    handle.clear().await?;
    assert!(requests_of(&db, users.get("b")).await.1 > 0);
    assert_eq!(handle.warm().await?, 3);
    cache.clear().await?;
    assert!(requests_of(&db, notes.count()).await.1 > 0);
    assert!(requests_of(&db, users.get("c")).await.1 > 0);

    // warm refuses a resource it does not cache.
    assert!(cache.warm("plg_nothing").await.is_err());

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Some((plugin, event)) = CacheEvent::from_plugin_event(&event) {
            assert_eq!(plugin, "cache");
            seen.push(event.name());
        }
    }
    for name in ["cache.warmed", "cache.invalidated", "cache.cleared"] {
        assert!(seen.contains(&name), "{name} in {seen:?}");
    }
    Ok(())
}

#[tokio::test]
async fn uninstall_removes_everything_and_reads_go_to_the_store() -> TestResult {
    let t = TestStore::memory("cache_uninstall");
    let db = connect(&t.conn).await?;
    let cache = db.use_plugin(memory_cache()).await?;
    let users = db.create_resource(users()).await?;
    seed_users(&users).await?;
    users.count().await?;
    assert_eq!(users.interceptor_count(), (1, 1));
    db.uninstall_plugin("cache", false).await?;
    assert_eq!(users.interceptor_count(), (0, 0));
    assert!(users.cache().is_none());
    assert!(requests_of(&db, users.count()).await.1 > 0);
    assert!(db.plugin::<CachePlugin>().is_none());
    assert_eq!(cache.stats(), s3db_cache::CacheStats::default());
    assert!(cache.clear().await.is_err(), "not installed");
    Ok(())
}

#[tokio::test]
async fn resources_created_later_and_reopened_are_set_up_once() -> TestResult {
    let t = TestStore::memory("cache_later");
    let db = connect(&t.conn).await?;
    db.use_plugin(memory_cache()).await?;
    let users = db.create_resource(users()).await?;
    db.create_resource(common::users()).await?; // opened again: same definition
    assert_eq!(users.interceptor_count(), (1, 1));
    seed_users(&users).await?;
    users.count().await?;
    assert_eq!(requests_of(&db, users.count()).await.1, 0);
    Ok(())
}

#[test]
fn bad_configurations_are_typed_errors() {
    let err = |r: Result<CachePlugin, CacheConfigError>| r.err();
    assert_eq!(
        err(CachePlugin::memory().max_entries(0).build()),
        Some(CacheConfigError::ZeroCapacity {
            driver: "memory",
            what: "max_entries"
        })
    );
    assert_eq!(
        err(CachePlugin::memory().max_entries(5).max_weight(5).build()),
        Some(CacheConfigError::ConflictingLimits)
    );
    assert_eq!(
        err(CachePlugin::memory().ttl(std::time::Duration::ZERO).build()),
        Some(CacheConfigError::ZeroTtl { driver: "memory" })
    );
    assert_eq!(
        err(CachePlugin::filesystem("/tmp/x").max_bytes(0).build()),
        Some(CacheConfigError::ZeroCapacity {
            driver: "filesystem",
            what: "max_bytes"
        })
    );
    assert_eq!(
        err(CachePlugin::filesystem("").build()),
        Some(CacheConfigError::EmptyPath)
    );
    assert_eq!(
        err(CachePlugin::multi([]).build()),
        Some(CacheConfigError::EmptyMulti)
    );
    assert!(matches!(
        err(CachePlugin::multi([
            FilesystemConfig::new("/tmp/same").into(),
            FilesystemConfig::new("/tmp/same").into()
        ])
        .build()),
        Some(CacheConfigError::SharedFolder { .. })
    ));
    assert_eq!(
        err(CachePlugin::memory().name("--").build()),
        Some(CacheConfigError::BadName { name: "--".into() })
    );
    assert_eq!(
        err(CachePlugin::memory().include(["plg_audits"]).build()),
        Some(CacheConfigError::InternalResource {
            resource: "plg_audits".into()
        })
    );
    assert_eq!(
        err(CachePlugin::memory().include(["a"]).exclude(["a"]).build()),
        Some(CacheConfigError::IncludedAndExcluded {
            resource: "a".into()
        })
    );
    assert!(CachePlugin::new(MemoryConfig::new().max_entries(10)).is_ok());
    // Converts into the core error for `?` in functions returning s3db_core::Result.
    let core: s3db_core::Error = CacheConfigError::EmptyMulti.into();
    assert!(core.to_string().contains("multi"));
}
