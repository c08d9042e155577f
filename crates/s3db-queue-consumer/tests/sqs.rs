//! The `sqs` driver against the SQS test server: applying and deleting, redelivery after the
//! visibility timeout, the dead-letter queue, bad messages, visibility extension, batches and
//! concurrency, stop, and several processes consuming one queue.
#![cfg(feature = "sqs")]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::sqs::{KEY, SECRET, TestQueue};
use common::{EventLog, Recording, Slow, TestResult, eventually, memory_db, users};
use s3db_core::testing::{TestStore, TestWorker};
use s3db_core::{ConnectionString, Database};
use s3db_queue_consumer::{
    Action, BadMessage, Consumer, QueueConsumerEvent, QueueConsumerPlugin, QueueDriver,
    QueueMessage, SqsDriver,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const SECOND: Duration = Duration::from_secs(1);

fn plugin(consumer: Consumer) -> QueueConsumerPlugin {
    QueueConsumerPlugin::builder()
        .consumer(consumer)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn sqs_messages_are_applied_and_deleted_from_the_queue() -> TestResult {
    let Some(q) = TestQueue::new("sqs-apply", Duration::from_secs(5)).await else {
        return Ok(());
    };
    let (db, users) = memory_db("sqs-apply").await?;
    let log = EventLog::start(&db);
    let driver = q.driver(Duration::from_secs(5));
    let p = db
        .use_plugin(plugin(Consumer::new("users", driver).concurrency(1)))
        .await?;
    p.publish(
        "users",
        &QueueMessage::insert("users", json!({"id": "u1", "name": "Ann"})),
    )
    .await?;
    eventually(WAIT, "insert applied", || async {
        users.exists("u1").await.unwrap_or(false)
    })
    .await;
    p.publish(
        "users",
        &QueueMessage::update("users", "u1", json!({"age": 7})),
    )
    .await?;
    // Routing from SQS message attributes.
    let attrs: BTreeMap<String, String> = [
        ("resource".to_owned(), "users".to_owned()),
        ("action".to_owned(), "insert".to_owned()),
    ]
    .into();
    q.driver(SECOND)
        .send(r#"{"data":{"id":"u2","name":"Bea"}}"#, &attrs)
        .await?;
    eventually(
        WAIT,
        "update and attribute-routed insert applied",
        || async { p.stats("users").is_some_and(|s| s.applied == 3) },
    )
    .await;
    p.publish("users", &QueueMessage::delete("users", "u2"))
        .await?;
    eventually(WAIT, "delete applied", || async {
        p.stats("users").is_some_and(|s| s.applied == 4)
    })
    .await;
    assert_eq!(users.get("u1").await?.get("age"), Some(&json!(7)));
    assert!(!users.exists("u2").await?);
    eventually(WAIT, "every message deleted from the queue", || async {
        q.counts().await == (0, 0)
    })
    .await;
    let stats = p.stats("users").unwrap_or_default();
    assert_eq!(
        (stats.received, stats.bad, stats.failed, stats.ack_errors),
        (4, 0, 0, 0)
    );
    let actions: Vec<Action> = log
        .all()
        .into_iter()
        .filter_map(|e| match e {
            QueueConsumerEvent::Applied { action, .. } => Some(action),
            _ => None,
        })
        .collect();
    assert_eq!(
        actions,
        [
            Action::Insert,
            Action::Update,
            Action::Insert,
            Action::Delete
        ]
    );
    db.disconnect().await?;
    q.delete().await;
    Ok(())
}

#[tokio::test]
async fn sqs_a_failed_message_comes_back_after_its_visibility_timeout() -> TestResult {
    let Some(q) = TestQueue::new("sqs-redeliver", SECOND).await else {
        return Ok(());
    };
    let (db, users) = memory_db("sqs-redeliver").await?;
    let log = EventLog::start(&db);
    let p = db
        .use_plugin(plugin(
            Consumer::new("users", q.driver(SECOND)).concurrency(1),
        ))
        .await?;
    q.send(&QueueMessage::update("users", "late", json!({"age": 3})).to_body())
        .await;
    eventually(WAIT, "the update failed", || async {
        p.stats("users").is_some_and(|s| s.failed >= 1)
    })
    .await;
    // Not deleted: still in the queue (hidden, or visible again).
    let (visible, hidden) = q.counts().await;
    assert_eq!(visible + hidden, 1);
    users.insert(json!({"id": "late", "name": "L"})).await?;
    eventually(WAIT, "applied on a later delivery", || async {
        p.stats("users").is_some_and(|s| s.applied == 1)
    })
    .await;
    assert_eq!(users.get("late").await?.get("age"), Some(&json!(3)));
    eventually(WAIT, "deleted once applied", || async {
        q.counts().await == (0, 0)
    })
    .await;
    let events = log.all();
    let first_failure = events.iter().find_map(|e| match e {
        QueueConsumerEvent::Failed {
            error_kind,
            receive_count,
            ..
        } => Some((error_kind.clone(), *receive_count)),
        _ => None,
    });
    assert_eq!(first_failure, Some(("not_found".to_owned(), 1)));
    let stats = p.stats("users").unwrap_or_default();
    assert!(stats.received >= 2, "{stats:?}");
    db.disconnect().await?;
    q.delete().await;
    Ok(())
}

#[tokio::test]
async fn sqs_bad_and_failing_messages_are_never_deleted_and_end_in_the_dead_letter_queue()
-> TestResult {
    let Some(q) = TestQueue::with_dlq("sqs-dlq", SECOND, 2).await else {
        return Ok(());
    };
    let (db, _users) = memory_db("sqs-dlq").await?;
    let log = EventLog::start(&db);
    let p = db
        .use_plugin(plugin(
            Consumer::new("users", q.driver(SECOND)).concurrency(2),
        ))
        .await?;
    let bad = r#"{"resource":"users","action":"explode","data":{}}"#;
    let failing = QueueMessage::update("users", "ghost", json!({"age": 1})).to_body();
    q.send(bad).await;
    q.send(&failing).await;
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dead.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both messages should reach the dead-letter queue: {dead:?}"
        );
        dead.extend(q.dead_letters().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dead.sort();
    let mut want = vec![bad.to_owned(), failing.clone()];
    want.sort();
    assert_eq!(dead, want, "the bodies reach the DLQ intact");
    let stats = p.stats("users").unwrap_or_default();
    assert_eq!(
        (stats.bad, stats.failed, stats.applied),
        (2, 2, 0),
        "{stats:?}"
    );
    let mut bad_counts: Vec<u32> = log
        .all()
        .into_iter()
        .filter_map(|e| match e {
            QueueConsumerEvent::BadMessage {
                reason: BadMessage::UnknownAction { action },
                receive_count,
                ..
            } if action == "explode" => Some(receive_count),
            _ => None,
        })
        .collect();
    bad_counts.sort_unstable();
    assert_eq!(
        bad_counts,
        [1, 2],
        "reported on each delivery, with the receive count"
    );
    assert_eq!(q.counts().await, (0, 0));
    db.disconnect().await?;
    q.delete().await;
    Ok(())
}

#[tokio::test]
async fn sqs_a_long_handler_extends_visibility_and_is_not_delivered_twice() -> TestResult {
    let Some(q) = TestQueue::new("sqs-extend", SECOND).await else {
        return Ok(());
    };
    let (db, users) = memory_db("sqs-extend").await?;
    let slow = Slow::new(Duration::from_millis(3_200));
    users.add_hooks(slow.clone());
    // Two slots: one handles the slow message, the other keeps receiving meanwhile.
    let p = db
        .use_plugin(plugin(
            Consumer::new("users", q.driver(SECOND)).concurrency(2),
        ))
        .await?;
    q.send(&QueueMessage::insert("users", json!({"id": "slow", "name": "S"})).to_body())
        .await;
    eventually(WAIT, "applied", || async {
        p.stats("users").is_some_and(|s| s.applied == 1)
    })
    .await;
    let stats = p.stats("users").unwrap_or_default();
    assert!(stats.extensions >= 4, "{stats:?}");
    assert_eq!(stats.extension_errors, 0, "{stats:?}");
    assert_eq!(
        stats.received, 1,
        "not redelivered while handled: {stats:?}"
    );
    assert_eq!(slow.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    eventually(WAIT, "deleted", || async { q.counts().await == (0, 0) }).await;
    db.disconnect().await?;
    q.delete().await;
    Ok(())
}

#[tokio::test]
async fn sqs_batch_receive_and_concurrency() -> TestResult {
    for (concurrency, batch, messages) in [(10, 10, 10), (3, 10, 6)] {
        let Some(q) = TestQueue::new("sqs-batch", Duration::from_secs(10)).await else {
            return Ok(());
        };
        for i in 0..messages {
            q.send(
                &QueueMessage::insert("users", json!({"id": format!("b{i}"), "name": "B"}))
                    .to_body(),
            )
            .await;
        }
        let (db, users) = memory_db("sqs-batch").await?;
        let slow = Slow::new(Duration::from_millis(400));
        users.add_hooks(slow.clone());
        let driver = Recording::new(q.driver(Duration::from_secs(10)));
        let probe = driver.probe();
        let p = db
            .use_plugin(plugin(
                Consumer::new("users", driver)
                    .concurrency(concurrency)
                    .batch_size(batch),
            ))
            .await?;
        eventually(WAIT, "all applied", || async {
            p.stats("users").is_some_and(|s| s.applied == messages)
        })
        .await;
        assert_eq!(users.count().await?, messages);
        let returned = probe.returned();
        let largest = returned.iter().copied().max().unwrap_or(0);
        assert!(
            largest <= concurrency.min(batch),
            "never more than the free slots: {returned:?}"
        );
        assert!(largest >= 2, "several messages per receive: {returned:?}");
        assert!(
            slow.max_at_once() <= concurrency && slow.max_at_once() >= 2,
            "concurrency {concurrency}: {} at once",
            slow.max_at_once()
        );
        if concurrency == 3 {
            assert_eq!(slow.max_at_once(), 3);
        }
        eventually(WAIT, "deleted", || async { q.counts().await == (0, 0) }).await;
        db.disconnect().await?;
        q.delete().await;
    }
    Ok(())
}

#[tokio::test]
async fn sqs_uninstall_leaves_nothing_running_and_nothing_receiving() -> TestResult {
    let Some(q) = TestQueue::new("sqs-stop", Duration::from_secs(5)).await else {
        return Ok(());
    };
    let (db, users) = memory_db("sqs-stop").await?;
    let p = db
        .use_plugin(plugin(Consumer::new("users", q.driver(SECOND))))
        .await?;
    let cx = db
        .plugin_context("queue-consumer")
        .unwrap_or_else(|| panic!("installed"));
    q.send(&QueueMessage::insert("users", json!({"id": "before", "name": "B"})).to_body())
        .await;
    eventually(WAIT, "consuming", || async {
        users.exists("before").await.unwrap_or(false)
    })
    .await;
    db.uninstall_plugin("queue-consumer", true).await?;
    assert_eq!((p.running_consumers(), cx.running_tasks()), (0, 0));
    let received = p.stats("users").unwrap_or_default().received;
    q.send(&QueueMessage::insert("users", json!({"id": "after", "name": "A"})).to_body())
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        q.counts().await,
        (1, 0),
        "nobody received the later message"
    );
    assert_eq!(p.stats("users").unwrap_or_default().received, received);
    assert!(!users.exists("after").await?);
    db.disconnect().await?;
    q.delete().await;
    Ok(())
}

#[tokio::test]
async fn sqs_an_unreachable_server_is_reported_and_retried_without_crashing() -> TestResult {
    // A port nobody listens on: receives fail, are reported and backed off.
    let (db, _users) = memory_db("sqs-unreachable").await?;
    let log = EventLog::start(&db);
    let driver = SqsDriver::builder("http://127.0.0.1:9/000000000000/none")
        .endpoint_url("http://127.0.0.1:9")
        .region("us-east-1")
        .credentials(KEY, "a-secret-that-must-not-leak")
        .wait_time(SECOND)
        .build()?;
    let p = db
        .use_plugin(plugin(Consumer::new("users", driver)))
        .await?;
    eventually(WAIT, "two failed receives", || async {
        p.stats("users").is_some_and(|s| s.receive_errors >= 2)
    })
    .await;
    assert_eq!(p.running_consumers(), 1);
    let events = log.all();
    let errors: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            QueueConsumerEvent::ReceiveFailed { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert!(!errors.is_empty());
    for error in errors {
        assert!(error.contains("sqs receive failed"), "{error}");
        assert!(!error.contains("a-secret-that-must-not-leak"), "{error}");
    }
    assert!(!format!("{p:?}").contains("a-secret-that-must-not-leak"));
    db.disconnect().await?;
    assert_eq!(p.running_consumers(), 0);
    Ok(())
}

// ---- several processes consuming one queue into one bucket ----

const WORKER_CONN: &str = "QC_WORKER_CONN";
const WORKER_QUEUE: &str = "QC_WORKER_QUEUE";
const WORKER_ENDPOINT: &str = "QC_WORKER_ENDPOINT";
const WORKER_EXPECT: &str = "QC_WORKER_EXPECT";

/// Not a test on its own: the body of a worker process (does nothing unless started by
/// `consume_in_processes`).
#[tokio::test]
async fn worker_process() -> TestResult {
    let Ok(conn) = std::env::var(WORKER_CONN) else {
        return Ok(());
    };
    let queue = std::env::var(WORKER_QUEUE)?;
    let endpoint = std::env::var(WORKER_ENDPOINT)?;
    let expect: u64 = std::env::var(WORKER_EXPECT)?.parse()?;
    let db = Database::builder()
        .connection(ConnectionString::parse(&conn)?)
        .connect()
        .await?;
    let users = db.create_resource(users()).await?;
    let driver = SqsDriver::builder(queue)
        .endpoint_url(endpoint)
        .region("us-east-1")
        .credentials(KEY, SECRET)
        .wait_time(SECOND)
        .visibility_timeout(Duration::from_secs(20))
        .build()?;
    let p = db
        .use_plugin(plugin(Consumer::new("users", driver).concurrency(3)))
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while users.count().await? < expect && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.disconnect().await?;
    let s = p.stats("users").unwrap_or_default();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "STATS applied={} failed={} bad={}",
        s.applied, s.failed, s.bad
    )?;
    out.flush()?;
    Ok(())
}

fn spawn_worker(conn: &ConnectionString, q: &TestQueue, expect: u64) -> TestWorker {
    TestWorker::spawn(
        "worker_process",
        [
            (WORKER_CONN, conn.to_string()),
            (WORKER_QUEUE, q.url.clone()),
            (WORKER_ENDPOINT, q.endpoint.clone()),
            (WORKER_EXPECT, expect.to_string()),
        ],
    )
    .unwrap_or_else(|e| panic!("spawning a worker: {e}"))
}

/// Waits for a worker (killing it after `limit`) and returns its (applied, failed, bad).
async fn finish(worker: TestWorker, limit: Duration) -> (u64, u64, u64) {
    let output = worker.finish(limit).await.unwrap_or_else(|e| panic!("{e}"));
    let line = output
        .reports("STATS ")
        .next()
        .unwrap_or_else(|| panic!("worker {} printed no stats: {}", output.pid, output.stdout));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("applied"), field("failed"), field("bad"))
}

async fn consume_in_processes(store: TestStore, test: &str, messages: u64) -> TestResult {
    let Some(q) = TestQueue::new(test, Duration::from_secs(20)).await else {
        return Ok(());
    };
    for i in 0..messages {
        q.send(
            &QueueMessage::insert("users", json!({"id": format!("p{i:03}"), "name": "P"}))
                .to_body(),
        )
        .await;
    }
    let workers = [
        spawn_worker(&store.conn, &q, messages),
        spawn_worker(&store.conn, &q, messages),
    ];
    let mut applied = Vec::new();
    for w in workers {
        let (a, failed, bad) = finish(w, Duration::from_secs(120)).await;
        assert_eq!((failed, bad), (0, 0));
        applied.push(a);
    }
    // Every message applied exactly once overall (no visibility timeout ran out), all deleted.
    assert_eq!(applied.iter().sum::<u64>(), messages, "{applied:?}");
    let db = Database::builder()
        .connection(store.conn.clone())
        .connect()
        .await?;
    let users = db.create_resource(users()).await?;
    assert_eq!(users.count().await?, messages);
    assert_eq!(q.counts().await, (0, 0));
    db.disconnect().await?;
    q.delete().await;
    Ok(())
}

#[tokio::test]
async fn sqs_two_processes_share_a_queue_into_one_folder() -> TestResult {
    consume_in_processes(TestStore::file("qc-procs"), "sqs-procs-file", 30).await
}

#[tokio::test]
async fn sqs_two_processes_share_a_queue_into_one_s3_bucket() -> TestResult {
    let Some(store) = TestStore::s3("qc-procs") else {
        return Ok(());
    };
    consume_in_processes(store, "sqs-procs-s3", 16).await
}
