//! A flaky store (failed requests, and requests that land but lose their answer): nothing is
//! lost, nothing dies, each message's handler effect is recorded once.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::*;
use s3db_core::testing::{FaultCounter, FaultPlan, FaultyStore, TestStore};
use s3db_core::{Database, Store};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_store_loses_nothing_and_completes_each_message_once() -> TestResult {
    let t = TestStore::memory("queue_faults");
    // Effects and checks go through a clean store on the same bucket.
    let clean = Store::open(t.conn.clone())?;
    let (clean_db, observer) = open(&t.conn, fast().build()?).await?;
    let mut ids = BTreeSet::new();
    for i in 0..20 {
        ids.insert(observer.enqueue(json!({"i": i})).await?);
    }
    // Connecting and installing go through the flaky store too: retry them.
    let mut attempt = 0;
    let counter: Arc<Mutex<Option<FaultCounter>>> = Arc::default();
    let (flaky, q) = loop {
        attempt += 1;
        let plan = FaultPlan::new()
            .fail_fraction(0.15)
            .answer_lost(true)
            .seed(attempt);
        let slot = Arc::clone(&counter);
        let installed = async {
            let db = Database::builder()
                .connection(t.conn.clone())
                .store_layer(move |inner| {
                    let faulty = FaultyStore::new(inner, plan);
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(faulty.counter());
                    Arc::new(faulty)
                })
                .connect()
                .await?;
            let q = db
                .use_plugin(
                    fast()
                        .concurrency(4)
                        .max_attempts(10)
                        .visibility_timeout(Duration::from_millis(400))
                        .on_message(recording(clean.clone(), "flaky".into(), Duration::ZERO))
                        .build()?,
                )
                .await?;
            Ok::<_, s3db_core::Error>((db, q))
        };
        match installed.await {
            Ok(pair) => break pair,
            Err(e) if attempt < 50 => eprintln!("retrying the flaky install: {e}"),
            Err(e) => return Err(e),
        }
    };
    eventually(Duration::from_secs(60), "all completed", || async {
        Ok(observer.stats().await?.completed == 20)
    })
    .await?;
    let injected = counter
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(0, FaultCounter::injected);
    assert!(
        injected >= 10,
        "faults were injected into the queue's work: {injected}"
    );
    let effects = effects(&clean).await?;
    assert_eq!(effects.keys().cloned().collect::<BTreeSet<_>>(), ids);
    for (id, runs) in &effects {
        assert_eq!(runs.len(), 1, "{id}: {runs:?}");
        let info = observer
            .message(id)
            .await?
            .unwrap_or_else(|| panic!("{id}"));
        assert_eq!(info.token.as_deref(), Some(runs[0].0.as_str()));
    }
    let stats = observer.stats().await?;
    assert_eq!((stats.pending, stats.processing, stats.dead), (0, 0, 0));
    drop(q);
    let _ = flaky.disconnect().await;
    clean_db.disconnect().await?;
    Ok(())
}
