//! `PluginStorage` on memory, file and the S3 test server: keys and namespaces, values under every
//! behavior, batches, listing, deleting only its own prefixes, TTLs, exact counters (tasks and OS
//! processes, lost answers) and locks that never have two holders (tasks and OS processes, expired
//! lease takeover, release, drop).

use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use s3db_core::RequestKind::{Get, Put};
use s3db_core::plugin::{
    Entry, LockGuard, LockOptions, MAX_TRANSIENT_RETRIES, PluginStorage, SetOptions,
};
use s3db_core::testing::{FaultPlan, TestStore};
use s3db_core::{Behavior, ConnectionString, Error, Key, Metadata, Result, Store};
use s3db_tests::{Workers, check_exclusive_log};
use serde_json::{Map, Value, json};

/// Workload sizes per backend (the S3 test server answers a few hundred requests per second).
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Concurrent tasks × increments each.
    counter: (usize, usize),
    /// Concurrent tasks × acquisitions each.
    lock: (usize, usize),
    /// Tasks in each of the [`PROCESSES`] worker processes, and rounds of each task, for counters.
    process_counter: (usize, usize),
    /// Rounds of each of the [`PROCESSES`] worker processes, for locks.
    process_lock: usize,
    /// Longest pause of a waiting lock contender.
    max_backoff: Duration,
}

const LOCAL: Scale = Scale {
    counter: (16, 50),
    lock: (16, 50),
    process_counter: (16, 50),
    process_lock: 50,
    max_backoff: Duration::from_millis(20),
};

const S3: Scale = Scale {
    counter: (8, 10),
    lock: (4, 10),
    process_counter: (4, 10),
    process_lock: 10,
    max_backoff: Duration::from_millis(50),
};

const PROCESSES: usize = 4;

/// One test per backend: `memory`, `file` and `s3` (skipped without a server).
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() -> Result<()> {
                super::$name(TestStore::memory(stringify!($name)), LOCAL).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn file() -> Result<()> {
                super::$name(TestStore::file(stringify!($name)), LOCAL).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn s3() -> Result<()> {
                let Some(t) = TestStore::s3(stringify!($name)) else {
                    return Ok(());
                };
                super::$name(t, S3).await
            }
        }
    )*};
}

on_every_backend!(
    values_under_every_behavior,
    compare_and_swap,
    batches,
    listing,
    deleting,
    ttl,
    counters,
    locks_exclude_tasks,
    expired_lease_takeover,
    released_and_dropped_locks,
    lock_requests,
);

fn doc(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn storage(t: &TestStore, slug: &str) -> PluginStorage {
    PluginStorage::new(t.store.clone(), slug).unwrap_or_else(|e| panic!("{e}"))
}

fn key(s: &str) -> Key {
    Key::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

async fn all_keys(store: &Store) -> Result<Vec<String>> {
    Ok(store
        .list_keys(None)
        .await?
        .into_iter()
        .map(|k| k.to_string())
        .collect())
}

// ----- keys -----

#[test]
fn keys_and_namespaces() -> Result<()> {
    let store = Store::open(ConnectionString::memory("plugin-keys", "p")?)?;
    for bad in ["", "Cache", "my_plugin", "a/b", "a.b"] {
        assert!(
            matches!(
                PluginStorage::new(store.clone(), bad),
                Err(Error::BadKey { .. })
            ),
            "slug {bad:?} accepted"
        );
    }
    let s = PluginStorage::new(store, "my-plugin")?;
    assert_eq!(s.slug(), "my-plugin");
    assert_eq!(
        s.key(None, &["config"])?.as_str(),
        "plugin=my-plugin/config"
    );
    assert_eq!(
        s.key(None, &["state", "current"])?.as_str(),
        "plugin=my-plugin/state/current"
    );
    assert_eq!(
        s.key(Some("users"), &["cache", "user-123"])?.as_str(),
        "resource=users/plugin=my-plugin/cache/user-123"
    );
    for (resource, path) in [
        (None, &[][..]),
        (None, &["a/b"][..]),
        (None, &[".."][..]),
        (None, &["ok", ""][..]),
        (None, &["tab\there"][..]),
        (Some("a/b"), &["x"][..]),
        (Some(""), &["x"][..]),
        (Some(".."), &["x"][..]),
    ] {
        assert!(
            matches!(s.key(resource, path), Err(Error::BadKey { .. })),
            "{resource:?} {path:?} accepted"
        );
    }
    Ok(())
}

// ----- values -----

async fn values_under_every_behavior(t: TestStore, _: Scale) -> Result<()> {
    let s = storage(&t, "values");
    let small = doc(json!({
        "name": "Alice",
        "n": 42,
        "f": 1.5,
        "ok": true,
        "none": null,
        "tags": ["a", "b"],
        "nested": {"x": {"y": [1, 2]}},
        "_e": "a user field named like a system entry",
        "Weird Name/é": "ünïcødé ✓",
    }));
    let big_text = "x".repeat(3_000);
    let big = doc(json!({"id": 7, "blob": big_text, "more": "y".repeat(500)}));
    for behavior in Behavior::ALL {
        let opts = SetOptions::new().behavior(behavior);
        let k = s.key(Some("users"), &["small", behavior.as_str()])?;
        s.set(&k, &small, opts).await?;
        assert_eq!(s.get(&k).await?.as_ref(), Some(&small), "{behavior}");

        let k = s.key(None, &["big", behavior.as_str()])?;
        let written = s.set(&k, &big, opts).await;
        match behavior {
            Behavior::EnforceLimits => {
                assert!(
                    matches!(written, Err(Error::MetadataLimit { .. })),
                    "{written:?}"
                );
                assert_eq!(s.get(&k).await?, None, "nothing written");
            }
            Behavior::TruncateData => {
                written?;
                let got = s.get(&k).await?.unwrap_or_default();
                assert_eq!(got.get("id"), Some(&json!(7)));
                let blob = got.get("blob").and_then(Value::as_str).unwrap_or_default();
                assert!(
                    blob.len() < big_text.len() && big_text.starts_with(blob),
                    "truncated to a prefix"
                );
            }
            _ => {
                written?;
                assert_eq!(s.get(&k).await?.as_ref(), Some(&big), "{behavior}");
            }
        }
    }
    // Missing keys and keys outside the namespace.
    assert_eq!(s.get(&s.key(None, &["missing"])?).await?, None);
    assert!(!s.has(&s.key(None, &["missing"])?).await?);
    for foreign in [
        "plugin=other/x",
        "plugin=values",
        "resource=users/data/id=1",
        "values/x",
    ] {
        let foreign = key(foreign);
        assert!(matches!(
            s.set(&foreign, &small, SetOptions::new()).await,
            Err(Error::BadKey { .. })
        ));
        assert!(matches!(s.get(&foreign).await, Err(Error::BadKey { .. })));
        assert!(matches!(
            s.delete(&foreign).await,
            Err(Error::BadKey { .. })
        ));
        assert!(matches!(
            s.increment(&foreign, 1).await,
            Err(Error::BadKey { .. })
        ));
    }
    Ok(())
}

async fn compare_and_swap(t: TestStore, _: Scale) -> Result<()> {
    let s = storage(&t, "cas");
    let k = s.key(None, &["config"])?;
    assert_eq!(s.get_entry(&k).await?, None);
    let first = s
        .create(&k, &doc(json!({"v": 1})), SetOptions::new())
        .await?;
    assert!(matches!(
        s.create(&k, &doc(json!({"v": 9})), SetOptions::new()).await,
        Err(Error::AlreadyExists { .. })
    ));
    let Some(Entry {
        data,
        etag,
        expires_at,
        ..
    }) = s.get_entry(&k).await?
    else {
        panic!("entry missing");
    };
    assert_eq!(
        (data, &etag, expires_at),
        (doc(json!({"v": 1})), &first, None)
    );
    let second = s
        .update_entry(&k, &doc(json!({"v": 2})), SetOptions::new(), &etag)
        .await?;
    assert_ne!(second, first);
    assert!(matches!(
        s.update_entry(&k, &doc(json!({"v": 3})), SetOptions::new(), &first)
            .await,
        Err(Error::PreconditionFailed { .. })
    ));
    assert_eq!(s.get(&k).await?, Some(doc(json!({"v": 2}))));
    // The same value rewritten with a TTL is a new version (the metadata hash is in the body).
    let third = s
        .update_entry(
            &k,
            &doc(json!({"v": 2})),
            SetOptions::new().ttl(Duration::from_secs(60)),
            &second,
        )
        .await?;
    assert_ne!(third, second);
    let entry = s.get_entry(&k).await?;
    assert!(entry.is_some_and(|e| e.expires_at.is_some() && e.etag == third));
    Ok(())
}

async fn batches(t: TestStore, _: Scale) -> Result<()> {
    let s = storage(&t, "batch");
    let keys: Vec<Key> = (0..20)
        .map(|i| s.key(Some("items"), &[&format!("item-{i:02}")]))
        .collect::<Result<_>>()?;
    let mut items: Vec<(Key, Map<String, Value>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), doc(json!({"i": i}))))
        .collect();
    // A key of another plugin, and a value too big for enforce-limits: each fails in place.
    items[5].0 = key("plugin=other/item");
    items[11].1 = doc(json!({"i": 11, "big": "z".repeat(2_100)}));
    let results = s
        .batch_set(items, SetOptions::new().behavior(Behavior::EnforceLimits))
        .await;
    assert_eq!(results.len(), 20);
    for (i, result) in results.iter().enumerate() {
        match i {
            5 => assert!(matches!(result, Err(Error::BadKey { .. })), "{result:?}"),
            11 => assert!(
                matches!(result, Err(Error::MetadataLimit { .. })),
                "{result:?}"
            ),
            _ => assert!(result.is_ok(), "item {i}: {result:?}"),
        }
    }
    let mut wanted = keys.clone();
    wanted.push(s.key(None, &["never-written"])?);
    wanted.push(key("resource=items/data/id=1"));
    let got = s.batch_get(&wanted).await;
    assert_eq!(got.len(), 22);
    for (i, result) in got.iter().enumerate() {
        match i {
            5 | 11 | 20 => assert!(matches!(result, Ok(None)), "{i}: {result:?}"),
            21 => assert!(matches!(result, Err(Error::BadKey { .. })), "{result:?}"),
            _ => assert_eq!(result.as_ref().ok(), Some(&Some(doc(json!({"i": i}))))),
        }
    }
    Ok(())
}

async fn listing(t: TestStore, _: Scale) -> Result<()> {
    let a = storage(&t, "a");
    let ab = storage(&t, "a-b");
    let empty = Map::new();
    for path in [
        &["config"][..],
        &["cache", "1"],
        &["cache", "2"],
        &["cache", "3"],
        &["cached"],
    ] {
        a.set(&a.key(None, path)?, &empty, SetOptions::new())
            .await?;
        ab.set(&ab.key(None, path)?, &empty, SetOptions::new())
            .await?;
    }
    for (resource, id) in [("users", "u1"), ("users", "u2"), ("orders", "o1")] {
        a.set(
            &a.key(Some(resource), &["cache", id])?,
            &empty,
            SetOptions::new(),
        )
        .await?;
    }
    ab.set(
        &ab.key(Some("users"), &["cache", "x"])?,
        &empty,
        SetOptions::new(),
    )
    .await?;
    let names = |keys: Vec<Key>| keys.into_iter().map(|k| k.to_string()).collect::<Vec<_>>();

    assert_eq!(
        names(a.list(None, None).await?),
        [
            "plugin=a/cache/1",
            "plugin=a/cache/2",
            "plugin=a/cache/3",
            "plugin=a/cached",
            "plugin=a/config"
        ]
    );
    assert_eq!(
        names(a.list(Some("cache"), None).await?),
        ["plugin=a/cache/1", "plugin=a/cache/2", "plugin=a/cache/3"]
    );
    assert_eq!(a.list(Some("/cache/"), None).await?.len(), 3);
    assert_eq!(
        names(a.list(Some("cache"), Some(2)).await?),
        ["plugin=a/cache/1", "plugin=a/cache/2"]
    );
    assert_eq!(a.list(None, Some(0)).await?.len(), 0);
    assert_eq!(a.list(Some("nothing"), None).await?.len(), 0);
    assert!(matches!(
        a.list(Some("a/../b"), None).await,
        Err(Error::BadKey { .. })
    ));
    assert_eq!(ab.list(None, None).await?.len(), 5);
    assert_eq!(
        names(a.list_for_resource("users", None, None).await?),
        [
            "resource=users/plugin=a/cache/u1",
            "resource=users/plugin=a/cache/u2"
        ]
    );
    assert_eq!(
        names(a.list_for_resource("users", Some("cache"), Some(1)).await?),
        ["resource=users/plugin=a/cache/u1"]
    );
    assert_eq!(
        names(ab.list_for_resource("users", None, None).await?),
        ["resource=users/plugin=a-b/cache/x"]
    );
    assert_eq!(a.list_for_resource("orders", None, None).await?.len(), 1);
    assert_eq!(ab.list_for_resource("orders", None, None).await?.len(), 0);
    Ok(())
}

async fn deleting(t: TestStore, _: Scale) -> Result<()> {
    let a = storage(&t, "a");
    let ab = storage(&t, "a-b");
    let empty = Map::new();
    // Someone else's data: resource records and another plugin (whose slug extends ours).
    let foreign = [
        "resource=users/data/id=1",
        "resource=users/plugin=a-b/x",
        "resource=orders/data/id=2",
        "plugin=a-b/config",
        "plugins/a",
        "s3db.json",
    ];
    for k in foreign {
        t.store
            .put(&key(k), &Metadata::new(), bytes::Bytes::from_static(b"{}"))
            .await?;
    }
    let k = a.key(None, &["one"])?;
    a.set(&k, &empty, SetOptions::new()).await?;
    a.delete(&k).await?;
    a.delete(&k).await?; // deleting a missing key succeeds
    assert!(!a.has(&k).await?);

    for path in [&["config"][..], &["x", "y"], &["locks", "l"]] {
        a.set(&a.key(None, path)?, &empty, SetOptions::new())
            .await?;
    }
    for resource in ["users", "orders", "gone"] {
        a.set(
            &a.key(Some(resource), &["c", "1"])?,
            &empty,
            SetOptions::new(),
        )
        .await?;
    }
    a.increment(&a.key(Some("users"), &["hits"])?, 1).await?;
    // A held lock: its lease goes too (the guard is forgotten, so nothing releases it later).
    let lock = a.acquire_lock("job", LockOptions::new()).await?;
    assert!(lock.is_some());
    std::mem::forget(lock);

    assert_eq!(a.delete_for_resource("orders").await?, 1);
    assert_eq!(a.delete_for_resource("orders").await?, 0);
    assert!(matches!(
        a.delete_all(&["bad/name".to_owned()]).await,
        Err(Error::BadKey { .. })
    ));
    // "gone" is not passed: the caller names the resources, nothing else is scanned.
    let deleted = a
        .delete_all(&["users".to_owned(), "orders".to_owned(), "never".to_owned()])
        .await?;
    assert_eq!(deleted, 3 + 1 + 2, "global 3 + lock 1 + users 2");
    let mut left = all_keys(&t.store).await?;
    left.sort();
    let mut expected: Vec<String> = foreign.iter().map(|k| (*k).to_owned()).collect();
    expected.push("resource=gone/plugin=a/c/1".to_owned());
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(a.delete_all(&["gone".to_owned()]).await?, 1);
    drop(ab);
    Ok(())
}

// ----- TTL -----

async fn ttl(t: TestStore, _: Scale) -> Result<()> {
    let s = storage(&t, "ttl");
    let value = doc(json!({"token": "xyz"}));
    let short = s.key(Some("sessions"), &["short"])?;
    let touched = s.key(Some("sessions"), &["touched"])?;
    let forever = s.key(Some("sessions"), &["forever"])?;
    let window = s.key(None, &["rate", "window"])?;
    let written = Instant::now();
    // Long enough that a slow (loaded) server cannot expire keys before they are checked.
    let ttl = Duration::from_secs(3);
    let short_ttl = SetOptions::new().ttl(ttl);
    s.set(&short, &value, short_ttl).await?;
    s.set(&touched, &value, short_ttl.behavior(Behavior::BodyOnly))
        .await?;
    s.set(&forever, &value, SetOptions::new()).await?;
    assert_eq!(s.increment_with_ttl(&window, 1, ttl).await?, 1);
    assert_eq!(s.increment_with_ttl(&window, 1, ttl).await?, 2);

    assert!(s.has(&short).await?);
    assert!(!s.is_expired(&short).await?);
    let left = s.ttl(&short).await?.unwrap_or_default();
    let lower = ttl.saturating_sub(written.elapsed() + Duration::from_millis(100));
    assert!(
        left > lower && left <= ttl,
        "ttl {left:?}, expected above {lower:?}"
    );
    assert_eq!(s.ttl(&forever).await?, None);
    assert_eq!(s.ttl(&s.key(None, &["missing"])?).await?, None);
    assert!(
        !s.is_expired(&s.key(None, &["missing"])?).await?,
        "missing is not expired"
    );
    assert!(s.touch(&forever, Duration::from_secs(5)).await?);
    assert_eq!(s.ttl(&forever).await?, None, "no TTL stays none");
    assert!(s.touch(&touched, Duration::from_secs(2)).await?);
    let left = s.ttl(&touched).await?.unwrap_or_default();
    let lower = (ttl + Duration::from_secs(2))
        .saturating_sub(written.elapsed() + Duration::from_millis(100));
    assert!(
        left > lower,
        "touched ttl {left:?}, expected above {lower:?}"
    );
    assert!(
        !s.touch(&s.key(None, &["missing"])?, Duration::from_secs(1))
            .await?
    );

    tokio::time::sleep((ttl + Duration::from_millis(200)).saturating_sub(written.elapsed())).await;
    assert_eq!(s.get(&short).await?, None);
    assert_eq!(s.get_entry(&short).await?, None);
    assert!(!s.has(&short).await?);
    assert!(s.is_expired(&short).await?);
    assert_eq!(s.ttl(&short).await?, None);
    assert!(
        !s.touch(&short, Duration::from_secs(10)).await?,
        "expired stays expired"
    );
    assert!(!s.has(&short).await?);
    let got = s.batch_get(&[short.clone(), touched.clone()]).await;
    assert!(matches!(got.first(), Some(Ok(None))));
    assert_eq!(
        got.get(1).and_then(|r| r.as_ref().ok()),
        Some(&Some(value.clone()))
    );
    assert!(s.has(&touched).await?);
    // Expired keys are still listed (listing reads no object).
    assert_eq!(s.list_for_resource("sessions", None, None).await?.len(), 3);
    // An expired counter starts again, with a new window.
    assert_eq!(s.counter(&window).await?, 0);
    assert_eq!(
        s.increment_with_ttl(&window, 5, Duration::from_secs(60))
            .await?,
        5
    );
    assert!(
        s.ttl(&window)
            .await?
            .is_some_and(|l| l > Duration::from_secs(50))
    );
    // A write replaces an expired entry; a conditional create too.
    s.create(&short, &value, SetOptions::new()).await?;
    assert!(s.has(&short).await?);
    assert!(!s.is_expired(&short).await?);
    Ok(())
}

// ----- counters -----

async fn counters(t: TestStore, scale: Scale) -> Result<()> {
    let s = storage(&t, "counters");
    let k = s.key(Some("api"), &["calls"])?;
    assert_eq!(s.counter(&k).await?, 0);
    let (tasks, rounds) = scale.counter;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (s, k) = (s.clone(), k.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..rounds {
                s.increment(&k, 1).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for handle in handles {
        handle.await.unwrap_or_else(|e| panic!("{e}"))?;
    }
    let total = i64::try_from(tasks * rounds).unwrap_or(i64::MAX);
    assert_eq!(s.counter(&k).await?, total, "{tasks} × {rounds} increments");
    eprintln!(
        "{}: {tasks} tasks × {rounds} increments in {:?}",
        t.conn,
        started.elapsed()
    );
    assert_eq!(s.get(&k).await?, Some(doc(json!({"value": total}))));
    assert_eq!(s.decrement(&k, 3).await?, total - 3);
    assert_eq!(s.increment(&k, -2).await?, total - 5);
    assert_eq!(s.counter(&k).await?, total - 5);

    let other = s.key(None, &["other"])?;
    assert_eq!(s.decrement(&other, 7).await?, -7);
    s.set(&other, &doc(json!({"value": i64::MAX})), SetOptions::new())
        .await?;
    assert!(matches!(
        s.increment(&other, 1).await,
        Err(Error::Refused { .. })
    ));
    assert!(matches!(
        s.decrement(&other, i64::MIN).await,
        Err(Error::Refused { .. })
    ));
    s.set(&other, &doc(json!({"value": "seven"})), SetOptions::new())
        .await?;
    assert!(matches!(
        s.increment(&other, 1).await,
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        s.counter(&other).await,
        Err(Error::Corrupt { .. })
    ));
    Ok(())
}

fn faulty_storage(
    test: &str,
    plan: FaultPlan,
) -> Result<(PluginStorage, s3db_core::testing::FaultCounter)> {
    let (store, counter) = s3db_core::testing::faulty_memory_store(test, plan);
    Ok((PluginStorage::new(store, "faults")?, counter))
}

/// Writes that happened but whose answer was lost are recognised: retrying never counts twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_survive_lost_answers() -> Result<()> {
    // One task, many faults.
    let plan = FaultPlan::new()
        .fail_fraction(0.1)
        .answer_lost(true)
        .seed(7);
    let (s, faults) = faulty_storage("counter-lost-1", plan)?;
    let k = s.key(None, &["n"])?;
    for _ in 0..100 {
        s.increment(&k, 1).await?;
    }
    assert!(faults.injected() >= 5, "only {} faults", faults.injected());
    assert_eq!(s.counter(&k).await?, 100);

    // Several tasks, fewer faults (each increment may retry only a few transient failures).
    let plan = FaultPlan::new()
        .fail_fraction(0.02)
        .answer_lost(true)
        .seed(8);
    let (s, faults) = faulty_storage("counter-lost-4", plan)?;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (s, k) = (s.clone(), k.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..25 {
                s.increment(&k, 1).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for handle in handles {
        handle.await.unwrap_or_else(|e| panic!("{e}"))?;
    }
    assert!(faults.injected() > 0);
    assert_eq!(s.counter(&k).await?, 100);
    Ok(())
}

/// Lock acquisitions and releases whose answers were lost never leave a lease behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_survive_lost_answers() -> Result<()> {
    let plan = FaultPlan::new()
        .fail_fraction(0.1)
        .answer_lost(true)
        .seed(9);
    let (s, faults) = faulty_storage("lock-lost", plan)?;
    let opts = LockOptions::new()
        .ttl(Duration::from_secs(60))
        .timeout(Duration::from_secs(5));
    let mut failures = 0;
    for _ in 0..100 {
        let guard = s.acquire_lock("job", opts.clone()).await?;
        let Some(guard) = guard else {
            panic!("a lease was left behind ({} faults)", faults.injected());
        };
        match guard.release().await {
            Ok(()) => {}
            // Retries exhausted: the lease stays until its TTL, the next acquire would time out.
            Err(e) if e.is_transient() => failures += 1,
            Err(e) => return Err(e),
        }
    }
    assert_eq!(
        failures, 0,
        "releases gave up after {MAX_TRANSIENT_RETRIES} retries"
    );
    assert!(faults.injected() >= 10, "only {} faults", faults.injected());
    assert!(!s.is_locked("job").await?);
    Ok(())
}

// ----- locks -----

async fn locks_exclude_tasks(t: TestStore, scale: Scale) -> Result<()> {
    let s = storage(&t, "locks");
    let (tasks, rounds) = scale.lock;
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let s = s.clone();
        let (inside, overlaps) = (Arc::clone(&inside), Arc::clone(&overlaps));
        handles.push(tokio::spawn(async move {
            let mut acquired = 0;
            let mut released = Vec::new();
            for _ in 0..rounds {
                let opts = LockOptions::new()
                    .ttl(Duration::from_secs(60))
                    .timeout(Duration::from_secs(120))
                    .owner(format!("task-{task}"))
                    .max_backoff(scale.max_backoff);
                let Some(guard) = s.acquire_lock("shared", opts).await? else {
                    continue;
                };
                if inside.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                inside.store(false, Ordering::SeqCst);
                // Checked after the overlaps (a holder that lost its lease fails to release).
                released.push(guard.release().await);
                acquired += 1;
            }
            Ok::<_, Error>((acquired, released))
        }));
    }
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap_or_else(|e| panic!("{e}"))?);
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders at once");
    for (acquired, released) in results {
        assert_eq!(acquired, rounds, "every task got all its acquisitions");
        released.into_iter().collect::<Result<Vec<()>>>()?;
    }
    eprintln!(
        "{}: {tasks} tasks × {rounds} acquisitions in {:?}",
        t.conn,
        started.elapsed()
    );
    assert!(!s.is_locked("shared").await?);
    Ok(())
}

async fn expired_lease_takeover(t: TestStore, _: Scale) -> Result<()> {
    let s = storage(&t, "takeover");
    let short = LockOptions::new()
        .ttl(Duration::from_millis(200))
        .owner("first");
    let Some(mut first) = s.acquire_lock("job", short).await? else {
        panic!("a free lock was not acquired");
    };
    assert_eq!(first.owner(), "first");
    assert!(s.is_locked("job").await?);
    assert!(!first.is_expired());
    let busy = s
        .acquire_lock("job", LockOptions::new().owner("second"))
        .await?;
    assert!(busy.is_none(), "one try on a held lock fails");

    let waited = Instant::now();
    let second = s
        .acquire_lock(
            "job",
            LockOptions::new()
                .owner("second")
                .timeout(Duration::from_secs(2)),
        )
        .await?;
    let Some(mut second) = second else {
        panic!("the expired lease was not taken over");
    };
    assert!(waited.elapsed() < Duration::from_secs(2));
    assert_ne!(second.token(), first.token());
    assert!(first.is_expired());

    // The first holder lost its lease: it cannot renew or release, and does not disturb the second.
    let renewed = first.renew(Duration::from_secs(30)).await;
    assert!(
        matches!(
            renewed,
            Err(Error::Refused {
                operation: "renew",
                ..
            })
        ),
        "{renewed:?}"
    );
    let released = first.release().await;
    assert!(
        matches!(
            released,
            Err(Error::Refused {
                operation: "release",
                ..
            })
        ),
        "{released:?}"
    );
    assert!(
        s.is_locked("job").await?,
        "the second holder still holds it"
    );
    let before = second.expires_at();
    second.renew(Duration::from_secs(60)).await?;
    assert!(second.expires_at() > before);
    assert!(s.is_locked("job").await?);
    second.release().await?;
    assert!(!s.is_locked("job").await?);

    // A guard that expired but was not taken over may still renew.
    let Some(mut third) = s
        .acquire_lock("job", LockOptions::new().ttl(Duration::from_millis(50)))
        .await?
    else {
        panic!("a released lock was not acquirable");
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.is_locked("job").await?);
    third.renew(Duration::from_secs(30)).await?;
    assert!(s.is_locked("job").await?);
    third.release().await?;
    assert!(matches!(
        s.acquire_lock("bad/name", LockOptions::new()).await,
        Err(Error::BadKey { .. })
    ));
    Ok(())
}

async fn released_and_dropped_locks(t: TestStore, _: Scale) -> Result<()> {
    let s = storage(&t, "release");
    let other = storage(&t, "release-2");
    let opts = LockOptions::new().ttl(Duration::from_secs(60));
    for _ in 0..3 {
        let Some(guard) = s.acquire_lock("job", opts.clone()).await? else {
            panic!("a released lock was not immediately acquirable");
        };
        // Locks of different names and of other plugins are independent.
        let independent = other.acquire_lock("job", opts.clone()).await?;
        let named = s.acquire_lock("other-job", opts.clone()).await?;
        assert!(independent.is_some() && named.is_some());
        for g in [independent, named].into_iter().flatten() {
            g.release().await?;
        }
        guard.release().await?;
    }
    // A dropped guard is released in the background.
    let guard: Option<LockGuard> = s.acquire_lock("job", opts.clone()).await?;
    assert!(guard.is_some());
    drop(guard);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.is_locked("job").await? {
        assert!(
            Instant::now() < deadline,
            "the dropped guard was not released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.acquire_lock("job", opts).await?.is_some());
    Ok(())
}

/// Acquires the uncontended lock `job`, with the requests it took.
async fn acquire_counted(
    store: &Store,
    s: &PluginStorage,
    opts: &LockOptions,
) -> Result<(LockGuard, s3db_core::RequestStats)> {
    let before = store.requests();
    let guard = s.acquire_lock("job", opts.clone()).await?;
    let used = store.requests().since(&before);
    let Some(guard) = guard else {
        panic!("an uncontended lock was not acquired")
    };
    Ok((guard, used))
}

/// Requests of an uncontended lock: the first acquisition creates the lease (1 PUT); later ones
/// read the released lease and take it over (1 GET + 1 conditional PUT); a release is 1 PUT. A
/// lease deleted meanwhile is created again.
async fn lock_requests(t: TestStore, _: Scale) -> Result<()> {
    let s = storage(&t, "lock-requests");
    let opts = LockOptions::new().ttl(Duration::from_secs(60));
    let (guard, used) = acquire_counted(&t.store, &s, &opts).await?;
    assert_eq!((used.count(Get), used.count(Put)), (0, 1), "first: create");
    let before = t.store.requests();
    guard.release().await?;
    assert_eq!(t.store.requests().since(&before).total(), 1, "release");
    for round in 0..3 {
        let (guard, used) = acquire_counted(&t.store, &s, &opts).await?;
        assert_eq!(
            (used.count(Get), used.count(Put)),
            (1, 1),
            "round {round}: read the tombstone, take it over"
        );
        guard.release().await?;
    }
    // Another handle of the same plugin storage shares what is known.
    let (guard, used) = acquire_counted(&t.store, &s, &opts).await?;
    assert_eq!(used.total(), 2);
    guard.release().await?;
    // Deleted behind its back (delete_all): found missing, created again.
    assert!(s.delete_all(&[]).await? >= 1);
    let (guard, _) = acquire_counted(&t.store, &s, &opts).await?;
    assert!(s.is_locked("job").await?);
    guard.release().await?;
    Ok(())
}

// ----- OS processes -----

fn spawn_workers(args: impl Fn(usize) -> Vec<String>) -> Workers {
    let mut workers = Workers::new();
    for i in 0..PROCESSES {
        let args = args(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        workers.spawn(
            &format!("worker-{i}"),
            env!("CARGO_BIN_EXE_race_worker"),
            &args,
        );
    }
    workers
}

async fn wait(workers: Workers, timeout: Duration) -> Vec<(String, ExitStatus)> {
    tokio::task::spawn_blocking(move || workers.wait_all(timeout))
        .await
        .unwrap_or_else(|e| panic!("waiting for workers: {e}"))
}

fn assert_succeeded(statuses: &[(String, ExitStatus)]) {
    for (name, status) in statuses {
        assert!(status.success(), "{name} failed: {status}");
    }
}

async fn process_counter(t: TestStore, (tasks, rounds): (usize, usize)) -> Result<()> {
    let conn = t.conn.to_string_with_secrets();
    let started = Instant::now();
    let workers = spawn_workers(|_| {
        [
            "plugin-counter",
            &conn,
            "procs",
            "counters/total",
            &rounds.to_string(),
            &tasks.to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    });
    assert_succeeded(&wait(workers, Duration::from_secs(300)).await);
    let s = storage(&t, "procs");
    let total = s.counter(&s.key(None, &["counters", "total"])?).await?;
    assert_eq!(
        total,
        i64::try_from(PROCESSES * tasks * rounds).unwrap_or(i64::MAX)
    );
    eprintln!(
        "{}: {PROCESSES} processes × {tasks} tasks × {rounds} increments in {:?}",
        t.conn,
        started.elapsed()
    );
    Ok(())
}

async fn process_lock(t: TestStore, rounds: usize) -> Result<()> {
    let conn = t.conn.to_string_with_secrets();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("critical.log");
    let log_arg = log.display().to_string();
    let started = Instant::now();
    let workers = spawn_workers(|i| {
        [
            "plugin-lock",
            &conn,
            "procs",
            "shared",
            &rounds.to_string(),
            &log_arg,
            &format!("w{i}"),
        ]
        .map(str::to_owned)
        .to_vec()
    });
    let statuses = wait(workers, Duration::from_secs(300)).await;
    // The log first: an overlap is the failure to report (a worker that lost its lease fails too).
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = check_exclusive_log(&text) {
        panic!("two holders at once: {e}");
    }
    assert_succeeded(&statuses);
    assert_eq!(check_exclusive_log(&text), Ok(PROCESSES * rounds));
    eprintln!(
        "{}: {PROCESSES} processes × {rounds} acquisitions in {:?}",
        t.conn,
        started.elapsed()
    );
    assert!(!storage(&t, "procs").is_locked("shared").await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_counter_between_processes() -> Result<()> {
    process_counter(
        TestStore::file("plugin_proc_counter"),
        LOCAL.process_counter,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_counter_between_processes() -> Result<()> {
    let Some(t) = TestStore::s3("plugin_proc_counter") else {
        return Ok(());
    };
    process_counter(t, S3.process_counter).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_lock_between_processes() -> Result<()> {
    process_lock(TestStore::file("plugin_proc_lock"), LOCAL.process_lock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lock_between_processes() -> Result<()> {
    let Some(t) = TestStore::s3("plugin_proc_lock") else {
        return Ok(());
    };
    process_lock(t, S3.process_lock).await
}

#[test]
fn exclusive_log_checker() {
    assert_eq!(
        check_exclusive_log("start a 0\nend a 0\nstart b 0\nend b 0\n"),
        Ok(2)
    );
    assert_eq!(check_exclusive_log(""), Ok(0));
    for bad in [
        "start a 0\nstart b 0\nend a 0\nend b 0\n",
        "start a 0\nend b 0\n",
        "start a 0\nend a 1\n",
        "end a 0\n",
        "start a 0\n",
        "start a\n",
    ] {
        assert!(check_exclusive_log(bad).is_err(), "{bad:?} passed");
    }
}

/// The batch futures are `Send` wherever they are awaited, a spawned task of a generic plugin
/// included (a compile-time check: this function is never called).
#[allow(dead_code)]
fn batch_futures_are_send(
    storage: PluginStorage,
    keys: Vec<Key>,
    items: Vec<(Key, Map<String, Value>)>,
) {
    drop(tokio::spawn(async move {
        let _ = storage.batch_get(&keys).await;
        let _ = storage.batch_set(items, SetOptions::new()).await;
    }));
}
