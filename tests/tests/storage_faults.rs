//! The storage layer under injected faults: failures are typed as transient, a failed write
//! leaves nothing behind, a write whose answer was lost did happen, and a read-modify-write loop
//! that retries transient failures still loses nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use s3db_core::testing::conformance::{counter_race, read_counter};
use s3db_core::testing::{FaultPlan, FaultyStore, InjectedFault, TestStore};
use s3db_core::{Error, Key, Metadata, RequestKind, Store};

fn faulty_store(plan: FaultPlan) -> (Store, s3db_core::testing::FaultCounter) {
    s3db_core::testing::faulty_memory_store("faults", plan)
}

fn key(s: &str) -> Key {
    Key::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn failed_put_is_transient_and_writes_nothing() {
    let (store, faults) = faulty_store(FaultPlan::new().fail_nth(RequestKind::Put, 2));
    let k1 = key("a/1");
    let k2 = key("a/2");
    store
        .put(&k1, &Metadata::new(), Bytes::from_static(b"one"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = store
        .put(&k2, &Metadata::new(), Bytes::from_static(b"two"))
        .await
        .err()
        .unwrap_or_else(|| panic!("the 2nd PUT must fail"));
    assert!(err.is_transient(), "{err}");
    let Error::Storage {
        operation, source, ..
    } = &err
    else {
        panic!("expected a storage error, got {err:?}")
    };
    assert_eq!(*operation, "put");
    let injected = std::error::Error::source(source.as_ref())
        .and_then(|s| s.downcast_ref::<InjectedFault>())
        .unwrap_or_else(|| panic!("source should be the injected fault: {source}"));
    assert_eq!(injected.n, 2);
    assert_eq!(faults.injected(), 1);
    assert!(!store.exists(&k2).await.unwrap_or_else(|e| panic!("{e}")));
    // The 3rd PUT goes through again.
    store
        .put(&k2, &Metadata::new(), Bytes::from_static(b"two"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn lost_answer_means_the_write_happened() {
    let plan = FaultPlan::new()
        .fail_nth(RequestKind::Put, 1)
        .answer_lost(true);
    let (store, _) = faulty_store(plan);
    let k = key("lost/answer");
    let result = store.create(&k, &Metadata::new(), "v1".into()).await;
    assert!(
        result.as_ref().is_err_and(Error::is_transient),
        "{result:?}"
    );
    // The object is there although the caller saw an error; a retried create now conflicts.
    let object = store.get(&k).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(object.body, "v1");
    let retried = store.create(&k, &Metadata::new(), "v1".into()).await;
    assert!(
        matches!(retried, Err(Error::AlreadyExists { .. })),
        "{retried:?}"
    );
}

#[tokio::test]
async fn failed_list_and_get_are_reported() {
    let plan = FaultPlan::new()
        .fail_nth(RequestKind::List, 1)
        .fail_nth(RequestKind::Get, 1)
        .fail_nth(RequestKind::Delete, 1);
    let (store, faults) = faulty_store(plan);
    let k = key("x/y");
    store
        .put(&k, &Metadata::new(), "v".into())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(store.list_keys(None).await.is_err_and(|e| e.is_transient()));
    assert_eq!(
        store.list_keys(None).await.unwrap_or_default(),
        vec![k.clone()]
    );
    assert!(store.get(&k).await.is_err_and(|e| e.is_transient()));
    assert!(store.get(&k).await.is_ok());
    assert!(store.delete(&k).await.is_err_and(|e| e.is_transient()));
    assert!(store.exists(&k).await.unwrap_or_else(|e| panic!("{e}")));
    store.delete(&k).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!store.exists(&k).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(faults.injected(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counter_race_survives_transient_failures() {
    // One request in five fails before reaching the store; the CAS loop retries and loses nothing.
    let (store, faults) = faulty_store(FaultPlan::new().fail_fraction(0.2).seed(7));
    counter_race(&store, 8, 25)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        faults.injected() > 20,
        "faults were injected: {}",
        faults.injected()
    );
    assert_eq!(
        read_counter(&store, &key("counters/race"))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        200
    );
}

#[tokio::test]
async fn latency_is_added() {
    let (store, _) = faulty_store(FaultPlan::new().latency(Duration::from_millis(30)));
    let started = Instant::now();
    store
        .put(&key("slow/1"), &Metadata::new(), "v".into())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn file_store_faults_compose_too() {
    // Decorators wrap any backend: the same plan on a local folder.
    let t = TestStore::file("faults_file");
    let store = Store::builder(t.conn.clone())
        .layer(|inner| {
            Arc::new(FaultyStore::new(
                inner,
                FaultPlan::new().fail_nth(RequestKind::Head, 1),
            ))
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let k = key("f/1");
    store
        .put(&k, &Metadata::new(), "v".into())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(store.head(&k).await.is_err_and(|e| e.is_transient()));
    assert!(store.head(&k).await.is_ok());
}
