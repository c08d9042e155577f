//! One process: many tasks, retries and dead letters, order, stats, lost and extended claims.

mod common;

use s3db_core::plugin::CustomEvent;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use s3db_core::testing::TestStore;
use s3db_queue::{HandlerError, Message, Order, QueueEvent, S3Queue, State};
use serde_json::json;
use tokio::sync::broadcast;

fn queue_events(rx: &mut broadcast::Receiver<s3db_core::plugin::Event>) -> Vec<QueueEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.extend(QueueEvent::from_event(&e));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_and_three_databases_handle_each_message_exactly_once() -> TestResult {
    let t = TestStore::memory("queue_many_tasks");
    // Three "processes" in one: three databases on one bucket, 4 workers each.
    let mut dbs = Vec::new();
    for i in 0..3 {
        let db = connect(&t.conn).await?;
        let q = db
            .use_plugin(
                fast()
                    .concurrency(4)
                    .on_message(recording(
                        db.store().clone(),
                        format!("db{i}"),
                        Duration::from_millis(2),
                    ))
                    .build()?,
            )
            .await?;
        dbs.push((db, q));
    }
    let producer = Arc::clone(&dbs[0].1);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let q = Arc::clone(&producer);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..10 {
                ids.push(q.enqueue(json!({"task": task, "i": i})).await?);
            }
            Ok::<_, s3db_core::Error>(ids)
        }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        ids.extend(t.await.unwrap_or_else(|e| panic!("{e}"))?);
    }
    assert_eq!(ids.len(), 80, "ids are unique");
    eventually(Duration::from_secs(60), "80 completions", || async {
        Ok(producer.stats().await?.completed == 80)
    })
    .await?;
    let effects = effects(&t.store).await?;
    assert_eq!(
        effects.keys().cloned().collect::<BTreeSet<_>>(),
        ids,
        "every message was handled"
    );
    for (id, runs) in &effects {
        assert_eq!(runs.len(), 1, "{id} was handled once: {runs:?}");
        let info = producer
            .message(id)
            .await?
            .unwrap_or_else(|| panic!("{id}"));
        assert_eq!((info.state, info.attempts), (State::Completed, 1));
        assert_eq!(info.token.as_deref(), Some(runs[0].0.as_str()));
    }
    let tags: BTreeSet<&str> = effects.values().map(|r| r[0].2.as_str()).collect();
    assert!(tags.len() >= 2, "the work was shared: {tags:?}");
    let stats = producer.stats().await?;
    assert_eq!((stats.pending, stats.processing, stats.dead), (0, 0, 0));
    for (db, _) in dbs {
        db.disconnect().await?;
    }
    Ok(())
}

#[tokio::test]
async fn failures_retry_with_jittered_backoff_then_go_to_the_dead_letter_resource() -> TestResult {
    let t = TestStore::memory("queue_dead_letter");
    let db = connect(&t.conn).await?;
    let mut events = db.subscribe();
    let q = db
        .use_plugin(
            fast()
                .max_attempts(3)
                .retry_backoff(Duration::from_millis(40))
                .max_backoff(Duration::from_millis(60))
                .on_message(|msg: Message| async move {
                    let fail_until = msg.data()["fail_until"].as_u64().unwrap_or(0);
                    if u64::from(msg.attempt()) <= fail_until {
                        return Err::<(), HandlerError>(format!("boom {}", msg.attempt()).into());
                    }
                    if msg.data()["panic"] == json!(true) {
                        panic!("handler panic");
                    }
                    Ok(())
                })
                .build()?,
        )
        .await?;
    let poison = q.enqueue(json!({"fail_until": 99})).await?;
    let flaky = q.enqueue(json!({"fail_until": 1})).await?;
    let panics = q.enqueue(json!({"panic": true})).await?;
    eventually(Duration::from_secs(20), "settled", || async {
        let s = q.stats().await?;
        Ok(s.dead == 2 && s.completed == 1)
    })
    .await?;

    let dead = q
        .message(&poison)
        .await?
        .unwrap_or_else(|| panic!("poison"));
    assert_eq!((dead.state, dead.attempts), (State::Dead, 3));
    assert_eq!(dead.last_error.as_deref(), Some("boom 3"));
    assert_eq!(dead.data, json!({"fail_until": 99}), "the payload is kept");
    let record = db
        .resource(q.dead_letter_resource())
        .unwrap_or_else(|| panic!("dead-letter resource"))
        .get(&poison)
        .await?;
    assert_eq!(record.get("attempts"), Some(&json!(3)));
    let panicked = q
        .message(&panics)
        .await?
        .unwrap_or_else(|| panic!("panics"));
    assert_eq!(panicked.state, State::Dead);
    assert!(
        panicked
            .last_error
            .unwrap_or_default()
            .contains("handler panic")
    );
    let ok = q.message(&flaky).await?.unwrap_or_else(|| panic!("flaky"));
    assert_eq!((ok.state, ok.attempts), (State::Completed, 2));

    let events = queue_events(&mut events);
    let retries: Vec<(u32, u64)> = events
        .iter()
        .filter_map(|e| match e {
            QueueEvent::Retrying {
                id,
                attempt,
                delay_ms,
                ..
            } if *id == poison => Some((*attempt, *delay_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    // 40 ms, then 80 ms capped at 60 ms; each jittered down by up to half.
    assert!((20..=40).contains(&retries[0].1), "{retries:?}");
    assert!((30..=60).contains(&retries[1].1), "{retries:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, QueueEvent::Dead { id, attempts: 3, .. } if *id == poison))
    );
    let stats = q.stats().await?;
    assert_eq!((stats.pending, stats.processing, stats.failed), (0, 0, 0));
    db.disconnect().await?;
    Ok(())
}

async fn order_of(order: Order, test: &str) -> s3db_core::Result<(Vec<String>, Vec<String>)> {
    let t = TestStore::memory(test);
    let (producer_db, producer) = open(&t.conn, fast().build()?).await?;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(producer.enqueue(json!({"i": i})).await?);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let (db, q) = open(
        &t.conn,
        fast()
            .concurrency(1)
            .order(order)
            .on_message(move |msg: Message| {
                let seen = Arc::clone(&seen2);
                async move {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(msg.id().to_owned());
                    Ok::<(), HandlerError>(())
                }
            })
            .build()?,
    )
    .await?;
    eventually(Duration::from_secs(10), "all handled", || async {
        Ok(q.stats().await?.completed == 6)
    })
    .await?;
    db.disconnect().await?;
    producer_db.disconnect().await?;
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok((ids, seen))
}

#[tokio::test]
async fn one_worker_takes_messages_in_fifo_or_lifo_order() -> TestResult {
    let (ids, seen) = order_of(Order::Fifo, "queue_fifo").await?;
    assert_eq!(seen, ids, "oldest first");
    let (mut ids, seen) = order_of(Order::Lifo, "queue_lifo").await?;
    ids.reverse();
    assert_eq!(seen, ids, "newest first");
    Ok(())
}

#[tokio::test]
async fn stats_count_every_state() -> TestResult {
    let t = TestStore::memory("queue_stats");
    let release = Arc::new(tokio::sync::Notify::new());
    let release2 = Arc::clone(&release);
    let (db, q) = open(
        &t.conn,
        fast()
            .concurrency(4)
            .max_attempts(2)
            .retry_backoff(Duration::from_secs(3600))
            .max_backoff(Duration::from_secs(3600))
            .on_message(move |msg: Message| {
                let release = Arc::clone(&release2);
                async move {
                    match msg.data()["kind"].as_str() {
                        Some("hold") => release.notified().await,
                        Some("fail") => return Err::<(), HandlerError>("no".into()),
                        _ => {}
                    }
                    Ok(())
                }
            })
            .build()?,
    )
    .await?;
    assert_eq!(q.stats().await?, s3db_queue::QueueStats::default());
    q.enqueue(json!({"kind": "ok"})).await?;
    q.enqueue(json!({"kind": "hold"})).await?;
    q.enqueue(json!({"kind": "fail"})).await?;
    q.enqueue_delayed(json!({"kind": "ok"}), Duration::from_secs(3600))
        .await?;
    eventually(Duration::from_secs(10), "states", || async {
        let s = q.stats().await?;
        Ok(s.completed == 1 && s.processing == 1 && s.pending == 2 && s.failed == 1)
    })
    .await?;
    let s = q.stats().await?;
    assert_eq!((s.dead, s.in_flight()), (0, 3));
    release.notify_one();
    eventually(
        Duration::from_secs(10),
        "the held one completes",
        || async { Ok(q.stats().await?.completed == 2) },
    )
    .await?;
    let s = q.stats().await?;
    assert_eq!((s.processing, s.pending, s.failed), (0, 2, 1));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_claim_lost_to_an_expired_deadline_writes_nothing() -> TestResult {
    let t = TestStore::memory("queue_lost_claim");
    let db = connect(&t.conn).await?;
    let mut events = db.subscribe();
    let store = db.store().clone();
    let q = db
        .use_plugin(
            fast()
                .concurrency(2)
                .visibility_timeout(Duration::from_millis(200))
                .on_message(move |msg: Message| {
                    let store = store.clone();
                    async move {
                        if msg.attempt() == 1 {
                            // Overruns its deadline: attempt 2 is claimed meanwhile.
                            tokio::time::sleep(Duration::from_millis(700)).await;
                        }
                        record_effect(&store, &msg, "x").await?;
                        Ok::<(), HandlerError>(())
                    }
                })
                .build()?,
        )
        .await?;
    let id = q.enqueue(json!({"n": 1})).await?;
    let mut lost = None;
    eventually(Duration::from_secs(10), "the late attempt", || {
        let found = queue_events(&mut events).into_iter().find_map(|e| match e {
            QueueEvent::ClaimLost { token, .. } => Some(token),
            _ => None,
        });
        if found.is_some() {
            lost = found;
        }
        let done = lost.is_some();
        async move { Ok(done) }
    })
    .await?;
    let info = q.message(&id).await?.unwrap_or_else(|| panic!("message"));
    assert_eq!((info.state, info.attempts), (State::Completed, 2));
    let runs = &effects(&t.store).await?[&id];
    assert_eq!(runs.len(), 2, "at-least-once execution: both attempts ran");
    let attempt2 = runs
        .iter()
        .find(|r| r.1 == "2")
        .unwrap_or_else(|| panic!("{runs:?}"));
    assert_eq!(
        info.token.as_deref(),
        Some(attempt2.0.as_str()),
        "attempt 2 committed"
    );
    let attempt1 = runs
        .iter()
        .find(|r| r.1 == "1")
        .unwrap_or_else(|| panic!("{runs:?}"));
    assert_eq!(
        lost.as_deref(),
        Some(attempt1.0.as_str()),
        "attempt 1's completion was refused"
    );
    assert_eq!(q.stats().await?.completed, 1);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn extending_visibility_keeps_a_long_claim() -> TestResult {
    let t = TestStore::memory("queue_extend");
    let db = connect(&t.conn).await?;
    let mut events = db.subscribe();
    let q = db
        .use_plugin(
            fast()
                .concurrency(2)
                .visibility_timeout(Duration::from_millis(200))
                .on_message(|msg: Message| async move {
                    for _ in 0..6 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        msg.extend_visibility(Duration::from_millis(200)).await?;
                    }
                    Ok::<(), HandlerError>(())
                })
                .build()?,
        )
        .await?;
    let id = q.enqueue(json!({})).await?;
    eventually(Duration::from_secs(10), "completion", || async {
        Ok(q.stats().await?.completed == 1)
    })
    .await?;
    let info = q.message(&id).await?.unwrap_or_else(|| panic!("message"));
    assert_eq!(info.attempts, 1, "never re-claimed while extended");
    let events = queue_events(&mut events);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, QueueEvent::Claimed { .. }))
            .count(),
        1
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, QueueEvent::ClaimLost { .. }))
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn an_expired_last_attempt_goes_dead() -> TestResult {
    let t = TestStore::memory("queue_expired_last");
    let (db, q) = open(
        &t.conn,
        fast()
            .concurrency(2)
            .max_attempts(1)
            .visibility_timeout(Duration::from_millis(150))
            .on_message(|_msg: Message| async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                Ok::<(), HandlerError>(())
            })
            .build()?,
    )
    .await?;
    let id = q.enqueue(json!({"slow": true})).await?;
    eventually(Duration::from_secs(10), "dead", || async {
        Ok(q.stats().await?.dead == 1)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let info = q.message(&id).await?.unwrap_or_else(|| panic!("message"));
    assert_eq!((info.state, info.attempts), (State::Dead, 1));
    assert!(
        info.last_error
            .unwrap_or_default()
            .contains("visibility timeout"),
        "the late completion did not overwrite the death"
    );
    assert_eq!(q.stats().await?.completed, 0);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_queue_without_handler_only_produces() -> TestResult {
    let t = TestStore::memory("queue_producer");
    let (db, q) = open(&t.conn, S3Queue::builder("mail").build()?).await?;
    let id = q.enqueue(json!({"to": "x"})).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!q.is_running());
    let info = q.message(&id).await?.unwrap_or_else(|| panic!("message"));
    assert_eq!((info.state, info.attempts), (State::Pending, 0));
    assert_eq!(info.data, json!({"to": "x"}));
    assert_eq!(q.message("nope").await?, None);
    assert_eq!(q.stats().await?.pending, 1);
    db.disconnect().await?;
    Ok(())
}
