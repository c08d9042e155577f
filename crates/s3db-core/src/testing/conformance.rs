//! The storage conformance suite: one set of checks that every backend must pass.
//!
//! Each check takes a [`Store`] under a fresh prefix and panics (it is a test) on a wrong answer.
//! [`storage_conformance_tests!`](crate::storage_conformance_tests) turns them into `#[tokio::test]`s
//! for one backend.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::store::RequestKind;
use crate::{ETag, Error, Key, Metadata, Result, Store};

fn key(s: &str) -> Key {
    Key::parse(s).unwrap_or_else(|e| panic!("test key {s}: {e}"))
}

/// Put with metadata and body, get and head return them with the same ETag; an overwrite changes
/// the ETag; metadata at exactly the 2 KB limit round-trips.
pub async fn round_trip_with_metadata(store: &Store) -> Result<()> {
    let k = key("resource=users/data/id=u1");
    let meta = Metadata::new()
        .with("name", "Alice")
        .with("_v", "1")
        .with("tags", "a,b;c=d e%20f");
    let body = Bytes::from_static(b"{\"bio\":\"hello\"}");
    let etag = store.put(&k, &meta, body.clone()).await?;

    let object = store.get(&k).await?;
    assert_eq!(object.body, body);
    assert_eq!(object.head.metadata, meta);
    assert_eq!(object.head.etag, etag);
    assert_eq!(object.head.size, body.len() as u64);
    assert_eq!(object.head.key, k);

    let head = store.head(&k).await?;
    assert_eq!(head.metadata, meta);
    assert_eq!(head.etag, etag);
    assert!(store.exists(&k).await?);
    assert!(!store.exists(&key("resource=users/data/id=nobody")).await?);

    let etag2 = store
        .put(&k, &Metadata::new(), Bytes::from_static(b"2"))
        .await?;
    assert_ne!(
        etag, etag2,
        "an overwrite with a new body must change the ETag"
    );
    let object = store.get(&k).await?;
    assert!(
        object.head.metadata.is_empty(),
        "an overwrite replaces metadata"
    );
    assert_eq!(object.body, "2");

    let full = Metadata::new().with("m", "x".repeat(crate::store::METADATA_LIMIT - 1));
    let big = key("resource=users/data/id=full");
    store.put(&big, &full, Bytes::new()).await?;
    assert_eq!(store.get(&big).await?.head.metadata, full);

    assert!(matches!(
        store.get(&key("resource=users/data/id=missing")).await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

/// A conditional create succeeds once; the second is `AlreadyExists` and changes nothing.
pub async fn conditional_create(store: &Store) -> Result<()> {
    let k = key("locks/create-once");
    let etag = store
        .create(&k, &Metadata::new().with("owner", "first"), "first".into())
        .await?;
    let second = store
        .create(
            &k,
            &Metadata::new().with("owner", "second"),
            "second".into(),
        )
        .await;
    assert!(
        matches!(second, Err(Error::AlreadyExists { .. })),
        "{second:?}"
    );
    let object = store.get(&k).await?;
    assert_eq!(object.body, "first");
    assert_eq!(object.head.metadata.get("owner"), Some("first"));
    assert_eq!(object.head.etag, etag);
    Ok(())
}

/// An update with the current ETag succeeds; with a stale one it is `PreconditionFailed` and
/// changes nothing.
pub async fn conditional_update(store: &Store) -> Result<()> {
    let k = key("docs/cas");
    let v1 = store.create(&k, &Metadata::new(), "v1".into()).await?;
    let v2 = store
        .update(&k, &Metadata::new().with("rev", "2"), "v2".into(), &v1)
        .await?;
    assert_ne!(v1, v2);
    let stale = store.update(&k, &Metadata::new(), "v3".into(), &v1).await;
    assert!(
        matches!(stale, Err(Error::PreconditionFailed { .. })),
        "{stale:?}"
    );
    let object = store.get(&k).await?;
    assert_eq!(object.body, "v2");
    assert_eq!(object.head.metadata.get("rev"), Some("2"));
    let v3 = store.update(&k, &Metadata::new(), "v3".into(), &v2).await?;
    assert_eq!(store.head(&k).await?.etag, v3);
    let made_up = store
        .update(
            &k,
            &Metadata::new(),
            "v4".into(),
            &ETag::new("\"not-an-etag\""),
        )
        .await;
    assert!(
        matches!(made_up, Err(Error::PreconditionFailed { .. })),
        "{made_up:?}"
    );
    Ok(())
}

/// An update of a key that does not exist is `PreconditionFailed` on every backend, and creates
/// nothing.
pub async fn update_missing_key(store: &Store) -> Result<()> {
    let k = key("docs/never-written");
    let etag = store
        .create(&key("docs/other"), &Metadata::new(), "x".into())
        .await?;
    let result = store.update(&k, &Metadata::new(), "v".into(), &etag).await;
    assert!(
        matches!(result, Err(Error::PreconditionFailed { .. })),
        "{result:?}"
    );
    assert!(!store.exists(&k).await?);
    Ok(())
}

/// Listing by prefix returns exactly the keys below it (whole parts), in order, with sizes; pages
/// of a listing cover every key once; LIST requests are counted per 1000 keys.
pub async fn list_prefix_and_pagination(store: &Store, n: usize) -> Result<()> {
    let data = key("resource=items/data");
    let keys: Vec<Key> = (0..n)
        .map(|i| data.join(&format!("id={i:05}")))
        .collect::<Result<_>>()?;
    let empty = Metadata::new();
    let written: Vec<Result<ETag>> = futures::stream::iter(&keys)
        .map(|k| store.put(k, &empty, Bytes::from_static(b"x")))
        .buffer_unordered(32)
        .collect()
        .await;
    for w in written {
        w?;
    }
    // Neighbours that a string prefix would catch but a whole-part prefix must not.
    store
        .put(
            &key("resource=items/database"),
            &Metadata::new(),
            "n".into(),
        )
        .await?;
    store
        .put(
            &key("resource=items/data-extra/x"),
            &Metadata::new(),
            "n".into(),
        )
        .await?;
    store
        .put(
            &key("resource=other/data/id=1"),
            &Metadata::new(),
            "n".into(),
        )
        .await?;

    let before = store.requests();
    let listed = store.list_keys(Some(&data)).await?;
    let lists = store.requests().since(&before).count(RequestKind::List);
    assert_eq!(
        listed, keys,
        "listing returns exactly the keys below the prefix, in order"
    );
    assert_eq!(lists, (n as u64).div_ceil(1000), "one LIST per 1000 keys");

    let entries: Vec<_> = store.list(Some(&data)).take(3).collect().await;
    for entry in entries {
        let entry = entry?;
        assert_eq!(entry.size, 1);
    }

    let mut paged = Vec::new();
    let mut start_after: Option<Key> = None;
    let page_size = n / 3 + 1;
    loop {
        let page = store
            .list_page(Some(&data), start_after.as_ref(), page_size)
            .await?;
        assert!(page.entries.len() <= page_size);
        paged.extend(page.entries.into_iter().map(|e| e.key));
        match page.next_start_after {
            Some(next) => start_after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, keys, "pages cover every key exactly once");

    let all = store.list_keys(None).await?;
    assert_eq!(all.len(), n + 3);
    let empty = store.list_keys(Some(&key("resource=nothing-here"))).await?;
    assert!(empty.is_empty());
    Ok(())
}

/// A copy carries body and metadata; copying a missing key is `NotFound`.
pub async fn copy(store: &Store) -> Result<()> {
    let from = key("a/source");
    let to = key("b/target");
    let meta = Metadata::new().with("kind", "original");
    store.put(&from, &meta, "payload".into()).await?;
    store.copy(&from, &to).await?;
    let copied = store.get(&to).await?;
    assert_eq!(copied.body, "payload");
    assert_eq!(copied.head.metadata, meta);
    assert_eq!(store.get(&from).await?.body, "payload", "the source stays");
    let missing = store.copy(&key("a/missing"), &key("b/never")).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    assert!(!store.exists(&key("b/never")).await?);
    Ok(())
}

/// Delete removes the object; deleting a missing key succeeds; a key and keys below it coexist.
pub async fn delete(store: &Store) -> Result<()> {
    let parent = key("tree/node");
    let child = key("tree/node/leaf");
    store.put(&parent, &Metadata::new(), "p".into()).await?;
    store.put(&child, &Metadata::new(), "c".into()).await?;
    assert_eq!(store.get(&parent).await?.body, "p");
    assert_eq!(store.list_keys(Some(&parent)).await?, vec![child.clone()]);

    store.delete(&parent).await?;
    assert!(!store.exists(&parent).await?);
    assert!(
        store.exists(&child).await?,
        "deleting a key leaves keys below it"
    );
    store.delete(&parent).await?; // missing: still Ok
    store.delete(&key("tree/never-was")).await?;

    // A deleted key can be created again.
    store
        .create(&parent, &Metadata::new(), "again".into())
        .await?;
    assert_eq!(store.get(&parent).await?.body, "again");
    assert_eq!(store.delete_prefix(&key("tree")).await?, 2);
    assert!(store.list_keys(Some(&key("tree"))).await?.is_empty());
    Ok(())
}

/// Bad keys and metadata are refused before any request is made.
pub async fn rejects_bad_input(store: &Store) -> Result<()> {
    let before = store.requests();
    for bad in ["a/../b", "a//b", "../x", "a/./b", "tab\there", "nul\0", ""] {
        assert!(
            matches!(Key::parse(bad), Err(Error::BadKey { .. })),
            "{bad:?}"
        );
    }
    let base = key("resource=users/data");
    assert!(matches!(base.join("id=a/b"), Err(Error::BadKey { .. })));
    // Too long once the database prefix is added.
    let prefix_len = if store.prefix().is_empty() {
        0
    } else {
        store.prefix().len() + 1
    };
    let room = crate::key::MAX_KEY_BYTES - prefix_len;
    let long = Key::parse(&"k".repeat(room))?;
    store.put(&long, &Metadata::new(), Bytes::new()).await?;
    let after_ok = store.requests();
    match Key::parse(&"k".repeat(room + 1)) {
        // Without a database prefix the key alone is already too long.
        Err(Error::BadKey { .. }) => assert_eq!(room, crate::key::MAX_KEY_BYTES),
        Err(e) => return Err(e),
        Ok(too_long) => {
            let refused = store.put(&too_long, &Metadata::new(), Bytes::new()).await;
            assert!(matches!(refused, Err(Error::BadKey { .. })), "{refused:?}");
            let refused = store.get(&too_long).await;
            assert!(matches!(refused, Err(Error::BadKey { .. })), "{refused:?}");
        }
    }

    let k = key("ok/key");
    let bad_meta = Metadata::new().with("Name", "x");
    assert!(matches!(
        store.put(&k, &bad_meta, Bytes::new()).await,
        Err(Error::BadMetadata { .. })
    ));
    let too_big = Metadata::new().with("big", "x".repeat(2048));
    assert!(matches!(
        store.put(&k, &too_big, Bytes::new()).await,
        Err(Error::MetadataLimit { .. })
    ));
    assert_eq!(
        store.requests().since(&after_ok).total(),
        0,
        "refused input makes no request"
    );
    assert_eq!(store.requests().since(&before).count(RequestKind::Put), 1);
    assert!(!store.exists(&k).await?, "nothing was written");
    Ok(())
}

/// Increments the counter at `key` by one: read, add one, conditional write (create when it does
/// not exist yet), retried with jittered backoff on conflicts and transient failures. Returns the
/// number of attempts it took.
///
/// # Errors
/// A permanent storage error.
pub async fn increment_counter(store: &Store, key: &Key) -> Result<u32> {
    let mut attempts = 0;
    let mut backoff = Duration::from_millis(1);
    loop {
        attempts += 1;
        let result = match store.get(key).await {
            Ok(object) => {
                let value: u64 = std::str::from_utf8(&object.body)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("counter {key} holds {:?}", object.body));
                store
                    .update(
                        key,
                        &Metadata::new(),
                        (value + 1).to_string().into(),
                        &object.head.etag,
                    )
                    .await
            }
            Err(Error::NotFound { .. }) => store.create(key, &Metadata::new(), "1".into()).await,
            Err(e) if e.is_transient() => Err(e),
            Err(e) => return Err(e),
        };
        match result {
            Ok(_) => return Ok(attempts),
            Err(e) if e.is_conflict() || e.is_transient() => {
                let jitter = rand::random_range(0..=backoff.as_micros() as u64);
                tokio::time::sleep(Duration::from_micros(jitter)).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads the counter at `key` (0 when absent), retrying transient failures a few times.
///
/// # Errors
/// A permanent storage error, or a transient one that persisted.
pub async fn read_counter(store: &Store, key: &Key) -> Result<u64> {
    let mut tries = 0;
    loop {
        tries += 1;
        match store.get(key).await {
            Ok(object) => {
                return Ok(std::str::from_utf8(&object.body)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("counter {key} holds {:?}", object.body)));
            }
            Err(Error::NotFound { .. }) => return Ok(0),
            Err(e) if e.is_transient() && tries < 10 => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `tasks` tasks each increment one counter `rounds` times with read-increment-conditional-write;
/// the counter must end at exactly `tasks × rounds` (no lost update).
pub async fn counter_race(store: &Store, tasks: usize, rounds: usize) -> Result<()> {
    let k = key("counters/race");
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move {
                for _ in 0..rounds {
                    increment_counter(&store, &k).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .await
            .unwrap_or_else(|e| panic!("race task panicked: {e}"))?;
    }
    assert_eq!(read_counter(store, &k).await?, (tasks * rounds) as u64);
    Ok(())
}

/// Defines the storage conformance tests for one backend, in the module where it is invoked.
///
/// `$make` is an expression `Fn(&str) -> Option<TestStore>` (return `None` to skip, e.g. when no
/// server is configured). The invoking crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
///
/// ```no_run
/// mod memory {
///     s3db_core::storage_conformance_tests!(|name: &str| Some(
///         s3db_core::testing::TestStore::memory(name)
///     ));
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! storage_conformance_tests {
    ($make:expr) => {
        $crate::storage_conformance_tests!(@test $make, round_trip_with_metadata);
        $crate::storage_conformance_tests!(@test $make, conditional_create);
        $crate::storage_conformance_tests!(@test $make, conditional_update);
        $crate::storage_conformance_tests!(@test $make, update_missing_key);
        $crate::storage_conformance_tests!(@test $make, copy);
        $crate::storage_conformance_tests!(@test $make, delete);
        $crate::storage_conformance_tests!(@test $make, rejects_bad_input);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn list_prefix_and_pagination() {
            let make = $make;
            let Some(t) = make("list_prefix_and_pagination") else { return };
            let result = $crate::testing::conformance::list_prefix_and_pagination(&t.store, t.big_list).await;
            if let Err(e) = result {
                panic!("list_prefix_and_pagination on {}: {e}", t.conn);
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn counter_race_16_tasks() {
            let make = $make;
            let Some(t) = make("counter_race") else { return };
            let result = $crate::testing::conformance::counter_race(&t.store, 16, t.race_rounds).await;
            if let Err(e) = result {
                panic!("counter_race on {}: {e}", t.conn);
            }
        }
    };
    (@test $make:expr, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let make = $make;
            let Some(t) = make(stringify!($name)) else { return };
            if let Err(e) = $crate::testing::conformance::$name(&t.store).await {
                panic!("{} on {}: {e}", stringify!($name), t.conn);
            }
        }
    };
}
