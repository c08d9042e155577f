//! Conformance, and workers that stop with the plugin.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use s3db_core::ResourceConfig;
use s3db_core::testing::TestStore;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_queue::{HandlerError, Message, S3Queue, State};
use serde_json::json;

fn counting(handled: &Arc<AtomicUsize>) -> S3Queue {
    let handled = Arc::clone(handled);
    fast()
        .on_message(move |_msg: Message| {
            let handled = Arc::clone(&handled);
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> TestResult {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&handled);
    check_plugin(&PluginCase {
        make: Box::new(move || counting(&h)),
        resource: ResourceConfig::new("notes").attribute("text", "string"),
        exercise: Arc::new(|db, _notes| {
            Box::pin(async move {
                let q = db
                    .plugin::<S3Queue>()
                    .unwrap_or_else(|| panic!("installed"));
                let done = q.enqueue(json!({"n": 1})).await?;
                q.enqueue_delayed(json!({"n": 2}), Duration::from_secs(3600))
                    .await?;
                eventually(Duration::from_secs(10), "completion", || async {
                    Ok(q.message(&done).await?.map(|m| m.state) == Some(State::Completed))
                })
                .await
            })
        }),
    })
    .await?;
    assert!(
        handled.load(Ordering::SeqCst) >= 2,
        "the exercise ran the workers"
    );
    Ok(())
}

#[tokio::test]
async fn uninstall_stops_the_workers_and_leaves_nothing_running() -> TestResult {
    let t = TestStore::file("queue_uninstall");
    let handled = Arc::new(AtomicUsize::new(0));
    let (db, q) = open(&t.conn, counting(&handled)).await?;
    q.enqueue(json!({})).await?;
    eventually(Duration::from_secs(10), "handled", || async {
        Ok(q.stats().await?.completed == 1)
    })
    .await?;
    let cx = db
        .plugin_context("s3-queue:jobs")
        .unwrap_or_else(|| panic!("context"));
    assert_eq!(cx.running_tasks(), 1, "the poller");
    assert!(q.is_running());

    db.uninstall_plugin("s3-queue:jobs", false).await?;
    assert_eq!(cx.running_tasks(), 0, "nothing left running");
    assert!(!q.is_running());
    assert!(
        q.enqueue(json!({})).await.is_err(),
        "refuses once uninstalled"
    );

    // Another database enqueues: nobody here handles it any more.
    let (other, producer) = open(&t.conn, S3Queue::builder(common::QUEUE).build()?).await?;
    let id = producer.enqueue(json!({"late": true})).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(
        producer.message(&id).await?.map(|m| m.state),
        Some(State::Pending)
    );
    other.disconnect().await?;
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn stopping_aborts_a_hanging_handler_and_its_message_comes_back() -> TestResult {
    let t = TestStore::memory("queue_stop_hanging");
    let (db, q) = open(
        &t.conn,
        fast()
            .visibility_timeout(Duration::from_millis(300))
            .stop_timeout(Duration::from_millis(200))
            .on_message(|_msg: Message| async move {
                std::future::pending::<()>().await;
                Ok::<(), HandlerError>(())
            })
            .build()?,
    )
    .await?;
    let id = q.enqueue(json!({})).await?;
    eventually(Duration::from_secs(10), "claimed", || async {
        Ok(q.stats().await?.processing == 1)
    })
    .await?;
    let cx = db
        .plugin_context("s3-queue:jobs")
        .unwrap_or_else(|| panic!("context"));
    let started = Instant::now();
    db.disconnect().await?;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop waited {:?}",
        started.elapsed()
    );
    assert_eq!(cx.running_tasks(), 0, "the hanging handler was aborted");

    // The message is claimable again after its deadline, by another worker.
    let handled = Arc::new(AtomicUsize::new(0));
    let (db2, q2) = open(&t.conn, counting(&handled)).await?;
    eventually(Duration::from_secs(10), "re-handled", || async {
        Ok(q2.message(&id).await?.map(|m| (m.state, m.attempts)) == Some((State::Completed, 2)))
    })
    .await?;
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    db2.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_bad_configuration_is_a_typed_error_naming_the_setting() {
    let e = S3Queue::builder("jobs")
        .visibility_timeout(Duration::from_millis(1))
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("visibility timeout"), "{e}");
    assert!(matches!(
        S3Queue::builder("Jobs!").build(),
        Err(s3db_queue::ConfigError::BadName { .. })
    ));
    let q = S3Queue::builder("jobs")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(q.enqueue(json!({})).await.is_err(), "not installed");
}
