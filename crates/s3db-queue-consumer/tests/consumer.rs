//! The consumer's logic against the in-memory queue: applying, acknowledging, bad messages,
//! failures and redelivery, visibility extension, concurrency, batches, stop.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{EventLog, Recording, Slow, TestResult, eventually, memory_db};
use s3db_queue_consumer::{
    Action, BadMessage, ConfigError, Consumer, MemoryQueue, QueueConsumerEvent,
    QueueConsumerPlugin, QueueMessage,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn queue(name: &str) -> MemoryQueue {
    MemoryQueue::builder(name)
        .visibility_timeout(Duration::from_secs(1))
        .wait_time(Duration::from_millis(50))
        .build()
}

fn plugin(consumer: Consumer) -> QueueConsumerPlugin {
    QueueConsumerPlugin::builder()
        .consumer(consumer)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn applies_insert_update_delete_and_acknowledges_each() -> TestResult {
    let (db, users) = memory_db("apply").await?;
    let log = EventLog::start(&db);
    let q = queue("apply");
    let p = db
        .use_plugin(plugin(Consumer::new("users", q.clone()).concurrency(1)))
        .await?;
    q.push(QueueMessage::insert("users", json!({"id": "u1", "name": "Ann", "age": 30})).to_body());
    q.push(QueueMessage::insert("users", json!({"id": "u2", "name": "Bea"})).to_body());
    q.push(QueueMessage::update("users", "u1", json!({"age": 31})).to_body());
    q.push(QueueMessage::delete("users", "u2").to_body());
    // Without an id, the resource mints one.
    q.push(r#"{"resource":"users","action":"inserted","data":{"name":"Cy"}}"#);

    eventually(WAIT, "five messages applied", || async {
        p.stats("users").is_some_and(|s| s.applied == 5)
    })
    .await;
    eventually(WAIT, "queue drained", || async { q.is_empty() }).await;
    let u1 = users.get("u1").await?;
    assert_eq!(
        (u1.get("name"), u1.get("age")),
        (Some(&json!("Ann")), Some(&json!(31)))
    );
    assert!(!users.exists("u2").await?);
    assert_eq!(users.count().await?, 2);
    let calls = q.calls();
    assert_eq!((calls.acks, calls.stale_acks, calls.nacks), (5, 0, 0));
    let stats = p.stats("users").unwrap_or_default();
    assert_eq!((stats.received, stats.bad, stats.failed), (5, 0, 0));

    eventually(WAIT, "five applied events", || async {
        log.all()
            .iter()
            .filter(|e| matches!(e, QueueConsumerEvent::Applied { .. }))
            .count()
            == 5
    })
    .await;
    let applied: Vec<(Action, String)> = log
        .all()
        .into_iter()
        .filter_map(|e| match e {
            QueueConsumerEvent::Applied {
                action, record_id, ..
            } => Some((action, record_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        applied[..4],
        [
            (Action::Insert, "u1".to_owned()),
            (Action::Insert, "u2".to_owned()),
            (Action::Update, "u1".to_owned()),
            (Action::Delete, "u2".to_owned()),
        ]
    );
    let minted = &applied[4].1;
    assert!(users.exists(minted).await?, "the minted id is reported");
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn bad_messages_are_reported_with_their_reason_and_never_acknowledged() -> TestResult {
    let (db, users) = memory_db("bad").await?;
    let log = EventLog::start(&db);
    let q = queue("bad");
    let p = db
        .use_plugin(plugin(
            Consumer::new("users", q.clone())
                .resources(["users"])
                .concurrency(1),
        ))
        .await?;
    let bad = [
        ("{not json", None),
        (
            r#"{"resource":"ghosts","action":"insert","data":{}}"#,
            Some(BadMessage::ResourceNotAllowed {
                resource: "ghosts".into(),
            }),
        ),
        (
            r#"{"resource":"orders","action":"insert","data":{"total":1}}"#,
            Some(BadMessage::ResourceNotAllowed {
                resource: "orders".into(),
            }),
        ),
        (
            r#"{"resource":"users","action":"upsert","data":{"id":"x"}}"#,
            Some(BadMessage::UnknownAction {
                action: "upsert".into(),
            }),
        ),
        (
            r#"{"resource":"users","action":"delete","data":{}}"#,
            Some(BadMessage::MissingId {
                action: Action::Delete,
            }),
        ),
        (r#"{"action":"insert"}"#, Some(BadMessage::MissingResource)),
        // Validation: the name is required.
        (
            r#"{"resource":"users","action":"insert","data":{"id":"v","age":3}}"#,
            None,
        ),
    ];
    for (body, _) in &bad {
        q.push(*body);
    }
    // A good message after the bad ones is still applied: the consumer keeps going.
    q.push(QueueMessage::insert("users", json!({"id": "ok", "name": "Fine"})).to_body());

    eventually(WAIT, "every bad message reported", || async {
        p.stats("users")
            .is_some_and(|s| s.bad >= bad.len() as u64 && s.applied == 1)
    })
    .await;
    assert!(users.exists("ok").await?);
    assert!(!users.exists("v").await?, "invalid data writes nothing");
    // None was acknowledged: all still in the queue.
    assert_eq!(q.len(), bad.len());
    assert_eq!(q.calls().acks, 1);

    let reasons: Vec<BadMessage> = log
        .all()
        .into_iter()
        .filter_map(|e| match e {
            QueueConsumerEvent::BadMessage {
                reason,
                receive_count: 1,
                consumer,
                ..
            } => {
                assert_eq!(consumer, "users");
                Some(reason)
            }
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), bad.len());
    for ((body, want), got) in bad.iter().zip(&reasons) {
        match want {
            Some(want) => assert_eq!(got, want, "{body}"),
            None => assert!(
                matches!(
                    got,
                    BadMessage::NotJson { .. } | BadMessage::InvalidData { .. }
                ),
                "{body}: {got:?}"
            ),
        }
    }
    assert!(matches!(&reasons[0], BadMessage::NotJson { .. }));
    assert!(
        matches!(&reasons[6], BadMessage::InvalidData { error } if error.contains("name")),
        "{:?}",
        reasons[6]
    );

    // After the visibility timeout they come back and are reported again.
    eventually(WAIT, "bad messages delivered again", || async {
        log.all().iter().any(|e| {
            matches!(
                e,
                QueueConsumerEvent::BadMessage {
                    receive_count: 2,
                    ..
                }
            )
        })
    })
    .await;
    assert_eq!(p.running_consumers(), 1);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn unknown_and_internal_resources_are_bad_messages_for_an_open_consumer() -> TestResult {
    let (db, _users) = memory_db("unknown").await?;
    let log = EventLog::start(&db);
    let q = queue("unknown");
    let p = db
        .use_plugin(plugin(Consumer::new("any", q.clone())))
        .await?;
    q.push(r#"{"resource":"ghosts","action":"insert","data":{}}"#);
    q.push(r#"{"resource":"plg_audits","action":"insert","data":{}}"#);
    q.push(QueueMessage::insert("orders", json!({"id": "o1", "total": 9})).to_body());
    eventually(WAIT, "reports", || async {
        p.stats("any").is_some_and(|s| s.bad == 2 && s.applied == 1)
    })
    .await;
    let reasons: Vec<BadMessage> = log
        .all()
        .into_iter()
        .filter_map(|e| match e {
            QueueConsumerEvent::BadMessage { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(reasons.contains(&BadMessage::UnknownResource {
        resource: "ghosts".into()
    }));
    assert!(reasons.contains(&BadMessage::ResourceNotAllowed {
        resource: "plg_audits".into()
    }));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_failed_message_is_left_for_redelivery_and_applied_once_it_can_be() -> TestResult {
    let (db, users) = memory_db("redeliver").await?;
    let log = EventLog::start(&db);
    let q = queue("redeliver");
    let p = db
        .use_plugin(plugin(Consumer::new("users", q.clone()).concurrency(1)))
        .await?;
    // An update that arrives before its record exists.
    q.push(QueueMessage::update("users", "late", json!({"age": 2})).to_body());
    eventually(WAIT, "the update failed", || async {
        p.stats("users").is_some_and(|s| s.failed == 1)
    })
    .await;
    let failed = log.all().into_iter().find_map(|e| match e {
        QueueConsumerEvent::Failed {
            error_kind,
            record_id,
            receive_count,
            action,
            ..
        } => Some((error_kind, record_id, receive_count, action)),
        _ => None,
    });
    assert_eq!(
        failed,
        Some((
            "not_found".to_owned(),
            Some("late".to_owned()),
            1,
            Action::Update
        ))
    );
    assert_eq!(q.len(), 1, "not acknowledged");
    assert_eq!(q.visible(), 0, "left hidden until its visibility timeout");
    users
        .insert(json!({"id": "late", "name": "L", "age": 1}))
        .await?;
    eventually(WAIT, "applied on redelivery", || async {
        p.stats("users").is_some_and(|s| s.applied == 1)
    })
    .await;
    assert_eq!(users.get("late").await?.get("age"), Some(&json!(2)));
    assert!(q.is_empty());
    assert_eq!(p.stats("users").map(|s| s.received), Some(2));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn retry_delay_gives_a_failed_message_back_early_and_the_queue_dead_letters_it() -> TestResult
{
    let (db, _users) = memory_db("retry").await?;
    let q = MemoryQueue::builder("retry")
        .visibility_timeout(Duration::from_secs(30))
        .wait_time(Duration::from_millis(50))
        .max_receives(3)
        .build();
    let p = db
        .use_plugin(plugin(
            Consumer::new("users", q.clone())
                .concurrency(1)
                .retry_delay(Duration::from_millis(20)),
        ))
        .await?;
    q.push(QueueMessage::update("users", "never", json!({"age": 1})).to_body());
    // With a 30 s visibility timeout, only the retry delay can bring it back this fast.
    eventually(WAIT, "dead-lettered after 3 receives", || async {
        q.dead_letters().len() == 1
    })
    .await;
    let stats = p.stats("users").unwrap_or_default();
    assert_eq!((stats.failed, stats.received, stats.applied), (3, 3, 0));
    assert_eq!(q.calls().nacks, 3);
    assert_eq!(q.dead_letters()[0].receive_count, 3);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_long_handler_keeps_its_message_hidden_by_extending_visibility() -> TestResult {
    let (db, users) = memory_db("extend").await?;
    let slow = Slow::new(Duration::from_millis(2_600));
    users.add_hooks(slow.clone());
    let q = queue("extend"); // visibility 1 s
    let p = db
        .use_plugin(plugin(Consumer::new("users", q.clone()).concurrency(4)))
        .await?;
    q.push(QueueMessage::insert("users", json!({"id": "s", "name": "Slow"})).to_body());
    eventually(WAIT, "applied", || async {
        p.stats("users").is_some_and(|s| s.applied == 1)
    })
    .await;
    let stats = p.stats("users").unwrap_or_default();
    // 2.6 s at one extension every 0.5 s: about five.
    assert!(stats.extensions >= 4, "{stats:?}");
    assert_eq!(
        stats.received, 1,
        "never delivered twice while handled: {stats:?}"
    );
    assert_eq!(slow.calls.load(Ordering::SeqCst), 1);
    let calls = q.calls();
    assert_eq!((calls.acks, calls.stale_acks), (1, 0));
    assert_eq!(calls.extends, stats.extensions);
    assert!(q.is_empty());
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn without_extension_a_long_handler_loses_its_message_to_redelivery() -> TestResult {
    // The control for the test above: the same slow write, no extension.
    let (db, users) = memory_db("no-extend").await?;
    let slow = Slow::new(Duration::from_millis(1_500));
    users.add_hooks(slow.clone());
    let q = MemoryQueue::builder("no-extend")
        .visibility_timeout(Duration::from_millis(300))
        .wait_time(Duration::from_millis(50))
        .build();
    let p = db
        .use_plugin(plugin(
            Consumer::new("users", q.clone())
                .concurrency(4)
                .extend_visibility(false),
        ))
        .await?;
    q.push(QueueMessage::update("users", "x", json!({"age": 1})).to_body());
    users.insert(json!({"id": "x", "name": "X"})).await?;
    eventually(
        WAIT,
        "delivered again while the first is still handled",
        || async { p.stats("users").is_some_and(|s| s.received >= 2) },
    )
    .await;
    assert!(slow.max_at_once() >= 2);
    assert_eq!(q.calls().extends, 0);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn concurrency_bounds_the_messages_handled_at_once_and_the_batch_asked_for() -> TestResult {
    for (concurrency, batch) in [(1, 10), (3, 10), (8, 4)] {
        let (db, users) = memory_db("concurrency").await?;
        let slow = Slow::new(Duration::from_millis(150));
        users.add_hooks(slow.clone());
        let q = queue("concurrency");
        let driver = Recording::new(q.clone());
        let probe = driver.probe();
        for i in 0..12 {
            q.push(
                QueueMessage::insert("users", json!({"id": format!("c{i}"), "name": "N"}))
                    .to_body(),
            );
        }
        let p = db
            .use_plugin(plugin(
                Consumer::new("users", driver)
                    .concurrency(concurrency)
                    .batch_size(batch),
            ))
            .await?;
        eventually(WAIT, "all applied", || async {
            p.stats("users").is_some_and(|s| s.applied == 12)
        })
        .await;
        assert_eq!(users.count().await?, 12);
        assert_eq!(
            slow.max_at_once(),
            concurrency.min(12),
            "concurrency {concurrency}, batch {batch}"
        );
        let asked = probe.asked();
        assert!(
            asked.iter().all(|&n| n >= 1 && n <= concurrency.min(batch)),
            "receives ask for at most the free slots and the batch size: {asked:?}"
        );
        assert!(asked.contains(&concurrency.min(batch)), "{asked:?}");
        let returned = probe.returned();
        assert_eq!(
            returned.iter().copied().max(),
            Some(concurrency.min(batch)),
            "batches as large as allowed are received: {returned:?}"
        );
        db.disconnect().await?;
    }
    Ok(())
}

#[tokio::test]
async fn receive_and_ack_failures_are_reported_and_the_consumer_keeps_going() -> TestResult {
    let (db, users) = memory_db("driver-failures").await?;
    let log = EventLog::start(&db);
    let q = queue("driver-failures");
    let driver = Recording::new(q.clone());
    driver.fail_receives.store(2, Ordering::SeqCst);
    let fail_acks = Arc::clone(&driver.fail_acks);
    fail_acks.store(true, Ordering::SeqCst);
    let p = db
        .use_plugin(plugin(Consumer::new("users", driver).concurrency(1)))
        .await?;
    q.push(QueueMessage::insert("users", json!({"id": "a", "name": "A"})).to_body());
    eventually(WAIT, "applied once despite receive failures", || async {
        p.stats("users")
            .is_some_and(|s| s.applied == 1 && s.ack_errors == 1)
    })
    .await;
    let stats = p.stats("users").unwrap_or_default();
    assert_eq!(stats.receive_errors, 2);
    assert!(users.exists("a").await?);
    assert_eq!(q.len(), 1, "the unacknowledged message stays");
    let events = log.all();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, QueueConsumerEvent::ReceiveFailed { error, .. } if error.contains("injected")))
            .count(),
        2
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, QueueConsumerEvent::AckFailed { .. }))
    );
    // Acks work again: the redelivered insert now fails (the record exists) — at least once.
    fail_acks.store(false, Ordering::SeqCst);
    eventually(
        WAIT,
        "redelivered insert fails on the existing id",
        || async { p.stats("users").is_some_and(|s| s.failed >= 1) },
    )
    .await;
    assert!(log.all().iter().any(|e| matches!(
        e,
        QueueConsumerEvent::Failed { error_kind, receive_count: 2, .. } if error_kind == "already_exists"
    )));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn attributes_route_a_message_without_routing_fields() -> TestResult {
    let (db, users) = memory_db("attributes").await?;
    let q = queue("attributes");
    let p = db
        .use_plugin(plugin(Consumer::new("users", q.clone())))
        .await?;
    let attrs: BTreeMap<String, String> = [
        ("resource".to_owned(), "users".to_owned()),
        ("action".to_owned(), "insert".to_owned()),
    ]
    .into();
    q.push_with_attributes(r#"{"data":{"id":"at","name":"Attr"}}"#, attrs);
    eventually(WAIT, "applied", || async {
        p.stats("users").is_some_and(|s| s.applied == 1)
    })
    .await;
    assert_eq!(users.get("at").await?.get("name"), Some(&json!("Attr")));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn publish_sends_to_the_consumers_queue() -> TestResult {
    let (db, users) = memory_db("publish").await?;
    let q = queue("publish");
    let p = db
        .use_plugin(plugin(Consumer::new("users", q.clone())))
        .await?;
    let id = p
        .publish(
            "users",
            &QueueMessage::insert("users", json!({"id": "p", "name": "P"})),
        )
        .await?;
    assert!(!id.is_empty());
    eventually(WAIT, "applied", || async {
        users.exists("p").await.unwrap_or(false)
    })
    .await;
    let err = p
        .publish("nope", &QueueMessage::delete("users", "p"))
        .await
        .err();
    assert!(
        matches!(&err, Some(s3db_core::Error::Refused { reason, .. }) if reason.contains("nope")),
        "{err:?}"
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn stop_finishes_messages_in_hand_and_uninstall_leaves_nothing_running() -> TestResult {
    let (db, users) = memory_db("stop").await?;
    let slow = Slow::new(Duration::from_millis(600));
    users.add_hooks(slow.clone());
    let q = queue("stop");
    let p = db
        .use_plugin(plugin(Consumer::new("users", q.clone()).concurrency(2)))
        .await?;
    let cx = db
        .plugin_context("queue-consumer")
        .unwrap_or_else(|| panic!("installed"));
    assert_eq!((p.running_consumers(), cx.running_tasks()), (1, 1));
    q.push(QueueMessage::insert("users", json!({"id": "inflight", "name": "I"})).to_body());
    eventually(WAIT, "message in hand", || async {
        p.stats("users").is_some_and(|s| s.in_flight == 1)
    })
    .await;
    db.uninstall_plugin("queue-consumer", false).await?;
    // The message in hand was finished and acknowledged before uninstall returned.
    assert!(users.exists("inflight").await?);
    assert!(q.is_empty());
    assert_eq!(
        p.stats("users").map(|s| (s.applied, s.in_flight)),
        Some((1, 0))
    );
    assert_eq!(p.running_consumers(), 0);
    assert_eq!(cx.running_tasks(), 0);
    // Nothing receives any more.
    let receives = q.calls().receives;
    q.push(QueueMessage::insert("users", json!({"id": "after", "name": "A"})).to_body());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.calls().receives, receives);
    assert_eq!(q.len(), 1);
    assert!(!users.exists("after").await?);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn a_stop_timeout_abandons_a_stuck_handler_and_its_message_comes_back() -> TestResult {
    let (db, users) = memory_db("stop-timeout").await?;
    users.add_hooks(Slow::new(Duration::from_secs(30)));
    let q = MemoryQueue::builder("stop-timeout")
        .visibility_timeout(Duration::from_secs(1))
        .wait_time(Duration::from_millis(50))
        .build();
    let p = db
        .use_plugin(
            QueueConsumerPlugin::builder()
                .consumer(Consumer::new("users", q.clone()))
                .stop_timeout(Duration::from_millis(200))
                .build()?,
        )
        .await?;
    q.push(QueueMessage::insert("users", json!({"id": "stuck", "name": "S"})).to_body());
    eventually(WAIT, "in hand", || async {
        p.stats("users").is_some_and(|s| s.in_flight == 1)
    })
    .await;
    let started = tokio::time::Instant::now();
    db.disconnect().await?;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(p.running_consumers(), 0);
    eventually(WAIT, "the handler was aborted", || async {
        p.stats("users").is_some_and(|s| s.in_flight == 0)
    })
    .await;
    eventually(WAIT, "visible again", || async { q.visible() == 1 }).await;
    Ok(())
}

#[test]
fn bad_configurations_are_refused_with_what_to_fix() {
    let q = || MemoryQueue::new("q");
    let build = |c: Consumer| QueueConsumerPlugin::builder().consumer(c).build().err();
    assert_eq!(
        QueueConsumerPlugin::builder().build().err(),
        Some(ConfigError::NoConsumers)
    );
    assert!(matches!(
        build(Consumer::new(" ", q())),
        Some(ConfigError::BadConsumerName { .. })
    ));
    assert!(matches!(
        build(Consumer::new("c", q()).concurrency(0)),
        Some(ConfigError::ZeroConcurrency { .. })
    ));
    for size in [0, 11] {
        assert!(matches!(
            build(Consumer::new("c", q()).batch_size(size)),
            Some(ConfigError::BadBatchSize { batch_size, .. }) if batch_size == size
        ));
    }
    assert!(matches!(
        build(Consumer::new("c", q()).resources(["plg_audits"])),
        Some(ConfigError::BadResource { .. })
    ));
    assert!(matches!(
        build(Consumer::new("c", q()).resources([""])),
        Some(ConfigError::BadResource { .. })
    ));
    let short = MemoryQueue::builder("s")
        .visibility_timeout(Duration::from_millis(100))
        .build();
    assert!(matches!(
        build(Consumer::new("c", short.clone())),
        Some(ConfigError::VisibilityTooShort { .. })
    ));
    assert!(build(Consumer::new("c", short).extend_visibility(false)).is_none());
    let dup = QueueConsumerPlugin::builder()
        .consumer(Consumer::new("c", q()))
        .consumer(Consumer::new("c", q()))
        .build()
        .err();
    assert!(
        matches!(dup, Some(ConfigError::BadConsumerName { reason, .. }) if reason.contains("same name"))
    );
    let err: s3db_core::Error = ConfigError::NoConsumers.into();
    assert!(err.to_string().contains("add one"));
}
