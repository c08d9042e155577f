//! Two "processes" (two databases on one file:// folder), each with the shared s3 driver.
//!
//! What the design guarantees, and what this checks:
//! 1. each process reads its own writes at once, for every cached read;
//! 2. the other process sees a write once the write has returned (the writer drops the
//!    resource's shared entries before returning);
//! 3. the one exception: a load of B that raced with A's write and stored its older answer after
//!    A's clean-up. A never serves it (it refuses entries other processes loaded less than
//!    `clock_skew` after its write); B may, until the next write to the resource or the TTL.

mod common;

use std::time::Duration;

use common::*;
use s3db_cache::{CacheEntry, CacheKey, CachePlugin, CachedValue};
use s3db_core::plugin::Operation;
use s3db_core::testing::TestStore;
use s3db_core::{Database, RequestKind};
use serde_json::json;

async fn process(t: &TestStore) -> s3db_core::Result<Database> {
    let db = connect(&t.conn).await?;
    // Both "processes" share this machine's clock: no skew to allow for.
    db.use_plugin(CachePlugin::s3().clock_skew(Duration::ZERO).build()?)
        .await?;
    Ok(db)
}

#[tokio::test]
async fn each_process_reads_its_own_writes_and_sees_the_others_after_they_return() -> TestResult {
    two_processes(TestStore::file("cache_two_processes")).await
}

#[tokio::test]
async fn two_processes_on_s3() -> TestResult {
    match TestStore::s3("cache_two_processes_s3") {
        Some(t) => two_processes(t).await,
        None => Ok(()),
    }
}

async fn two_processes(t: TestStore) -> TestResult {
    let a = process(&t).await?;
    let users_a = a.create_resource(users()).await?;
    let b = process(&t).await?;
    let users_b = resource(&b, "users");
    seed_users(&users_a).await?;
    let eu = json!({"region": "eu"});

    // B loads and shares; A is served from what B stored (one GET, no LIST).
    assert_eq!(users_b.count().await?, 3);
    let before = a.store().requests();
    assert_eq!(users_a.count().await?, 3);
    let spent = a.store().requests().since(&before);
    assert_eq!(spent.count(RequestKind::List), 0, "{spent:?}");

    for round in 0..5 {
        let id = format!("x{round}");
        // Warm both.
        users_a.count().await?;
        users_b.count().await?;
        users_a.count_partition("byRegion", &eu).await?;
        users_b.list_ids().await?;
        // A writes: A sees it at once, for every cached read.
        users_a
            .insert(json!({"id": id, "name": "X", "region": "eu"}))
            .await?;
        let expected = 4 + round;
        assert_eq!(users_a.count().await?, expected);
        assert_eq!(users_a.list_ids().await?.len() as u64, expected);
        assert_eq!(
            users_a.count_partition("byRegion", &eu).await?,
            expected - 1
        );
        assert!(users_a.get(&id).await.is_ok());
        // B sees it too: the shared entries were dropped before A's insert returned.
        assert_eq!(users_b.count().await?, expected);
        assert_eq!(users_b.list_ids().await?.len() as u64, expected);
        assert_eq!(
            users_b.count_partition("byRegion", &eu).await?,
            expected - 1
        );
    }

    // B writes, A reads.
    users_b.delete("x0").await?;
    assert_eq!(users_b.count().await?, 7);
    assert_eq!(users_a.count().await?, 7);
    Ok(())
}

#[tokio::test]
async fn a_late_answer_of_the_other_process_is_refused_by_the_writer() -> TestResult {
    let t = TestStore::file("cache_two_late");
    let a = process(&t).await?;
    let users_a = a.create_resource(users()).await?;
    let b = process(&t).await?;
    let users_b = resource(&b, "users");
    seed_users(&users_a).await?;

    // B starts loading the count before A's write…
    let loaded_at = s3db_core_now_us();
    let stale = users_b.count().await?;
    assert_eq!(stale, 3);
    // … A writes (and drops the shared entries) …
    users_a
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    // … and B's answer lands after A's clean-up (as B's store would, in a race).
    let cache_b = b
        .plugin::<CachePlugin>()
        .unwrap_or_else(|| panic!("installed"));
    let key = CacheKey::of_operation(
        "users",
        &users_b.version(),
        &Operation::Count { partition: None },
    )
    .unwrap_or_else(|| panic!("count is cached"));
    let late = CacheEntry {
        value: CachedValue::Count(stale),
        loaded_at,
        writer: "process-b".into(),
    };
    cache_b.tiers()[0].put(&key, &late).await?;

    // A never serves data older than its own write.
    assert_eq!(users_a.count().await?, 4);
    // A reloaded and shared a fresh answer: B now sees the write as well.
    assert_eq!(users_b.count().await?, 4);
    Ok(())
}

#[tokio::test]
async fn without_the_writers_fresh_answer_the_other_process_may_serve_a_late_one() -> TestResult {
    // The documented limit: B's own late answer (stored after A's clean-up) is what B serves
    // until the next write to the resource, or the TTL.
    let t = TestStore::file("cache_two_limit");
    let a = process(&t).await?;
    let users_a = a.create_resource(users()).await?;
    let b = process(&t).await?;
    let users_b = resource(&b, "users");
    seed_users(&users_a).await?;
    let loaded_at = s3db_core_now_us();
    users_a
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    let cache_b = b
        .plugin::<CachePlugin>()
        .unwrap_or_else(|| panic!("installed"));
    let key = CacheKey::of_operation(
        "users",
        &users_b.version(),
        &Operation::Count { partition: None },
    )
    .unwrap_or_else(|| panic!("count is cached"));
    cache_b.tiers()[0]
        .put(
            &key,
            &CacheEntry {
                value: CachedValue::Count(3),
                loaded_at,
                // B made no write: B accepts it like one of its own loads.
                writer: "process-b".to_owned(),
            },
        )
        .await?;
    assert_eq!(
        users_b.count().await?,
        3,
        "B serves its late answer (documented)"
    );
    // The next write to the resource clears it for everyone.
    users_a.delete("d").await?;
    users_a
        .insert(json!({"id": "e", "name": "Eve", "region": "us"}))
        .await?;
    assert_eq!(users_b.count().await?, 4);
    assert_eq!(users_a.count().await?, 4);
    Ok(())
}

fn s3db_core_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
        .saturating_sub(Duration::from_millis(1).as_micros() as u64)
}

#[tokio::test]
async fn with_the_process_local_memory_driver_the_other_process_catches_up_at_the_ttl() -> TestResult
{
    let t = TestStore::file("cache_two_memory");
    let plugin = || {
        CachePlugin::memory()
            .ttl(Duration::from_millis(300))
            .build()
    };
    let a = connect(&t.conn).await?;
    a.use_plugin(plugin()?).await?;
    let users_a = a.create_resource(users()).await?;
    let b = connect(&t.conn).await?;
    b.use_plugin(plugin()?).await?;
    let users_b = resource(&b, "users");
    seed_users(&users_a).await?;
    assert_eq!(users_b.count().await?, 3);
    users_a
        .insert(json!({"id": "d", "name": "Dee", "region": "eu"}))
        .await?;
    assert_eq!(users_a.count().await?, 4, "A reads its own write");
    assert_eq!(
        users_b.count().await?,
        3,
        "B's memory is its own (documented)"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        users_b.count().await?,
        4,
        "B catches up when its entry expires"
    );
    Ok(())
}

#[tokio::test]
async fn a_resource_another_process_created_is_cached_after_reload() -> TestResult {
    let t = TestStore::file("cache_two_reload");
    let a = process(&t).await?;
    let b = connect(&t.conn).await?;
    let cache_b = b.use_plugin(common::memory_cache()).await?;
    let users_a = a.create_resource(users()).await?;
    seed_users(&users_a).await?;
    assert!(b.resource("users").is_none());
    b.reload().await?;
    assert!(cache_b.is_cached("users"));
    let users_b = resource(&b, "users");
    assert_eq!(users_b.count().await?, 3);
    assert_eq!(requests_of(&b, users_b.count()).await.1, 0);
    Ok(())
}
