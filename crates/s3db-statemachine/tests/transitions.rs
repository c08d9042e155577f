//! `send`, guards, actions, the log, initialisation, events, and the conformance suite.

mod common;

use s3db_core::plugin::CustomEvent;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use s3db_core::testing::TestStore;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_statemachine::{Machine, State, StateMachineError, StateMachineEvent, StateMachinePlugin};
use serde_json::json;

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(|| plugin_with(order_machine())),
        resource: orders(),
        exercise: Arc::new(|db, orders| {
            Box::pin(async move {
                orders.insert_with_id("o-1", json!({})).await?;
                let plugin =
                    db.plugin::<StateMachinePlugin>()
                        .ok_or_else(|| s3db_core::Error::Refused {
                            operation: "test",
                            reason: "not installed".into(),
                        })?;
                let m = plugin.machine("order")?;
                m.send("o-1", "PAY", json!({})).await?;
                assert_eq!(m.history("o-1").await?.len(), 1);
                Ok(())
            })
        }),
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn send_moves_the_entity_logs_and_updates_the_record() -> TestResult {
    let t = TestStore::memory("sm_send");
    let (db, _plugin, orders, m) = open(&t.conn, plugin_with(order_machine())).await?;
    let mut events = db.subscribe();
    orders.insert_with_id("o-1", json!({})).await?;
    assert_eq!(m.state("o-1").await?, "pending");
    assert_eq!(m.valid_events("o-1").await?, ["CANCEL", "PAY"]);

    let t1 = m.send("o-1", "PAY", json!({"by": "alice"})).await?;
    assert_eq!(
        (t1.from.as_str(), t1.to.as_str(), t1.event.as_str(), t1.seq),
        ("pending", "paid", "PAY", 1)
    );
    assert_eq!(m.state("o-1").await?, "paid");
    assert_eq!(m.valid_events("o-1").await?, ["SHIP"]);
    assert_eq!(orders.get("o-1").await?.get("status"), Some(&json!("paid")));

    // Invalid events are typed errors listing the valid ones; nothing changes.
    match m.send("o-1", "CANCEL", json!({})).await {
        Err(StateMachineError::InvalidEvent {
            state,
            event,
            valid,
            ..
        }) => {
            assert_eq!((state.as_str(), event.as_str()), ("paid", "CANCEL"));
            assert_eq!(valid, ["SHIP"]);
        }
        other => panic!("expected InvalidEvent, got {other:?}"),
    }
    let t2 = m.send("o-1", "SHIP", json!({})).await?;
    assert_eq!(t2.seq, 2);
    match m.send("o-1", "SHIP", json!({})).await {
        Err(StateMachineError::InvalidEvent { state, valid, .. }) => {
            assert_eq!(state, "shipped");
            assert!(valid.is_empty(), "a final state accepts nothing");
        }
        other => panic!("expected InvalidEvent, got {other:?}"),
    }

    let history = m.history("o-1").await?;
    assert_eq!(history, vec![t1.clone(), t2.clone()]);
    assert_eq!(history[0].context, json!({"by": "alice"}));
    let log = db
        .resource(s3db_statemachine::TRANSITIONS_RESOURCE)
        .ok_or("log resource")?;
    assert_eq!(log.count().await?, 2);

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Some(StateMachineEvent::Transitioned { transition }) =
            StateMachineEvent::from_event(&e)
        {
            seen.push(transition);
        }
    }
    assert_eq!(seen, vec![t1, t2]);

    // An entity without a record still has a state (the record update is skipped).
    m.send("ghost", "CANCEL", json!({})).await?;
    assert_eq!(m.state("ghost").await?, "cancelled");
    assert!(matches!(
        m.send("a/b", "PAY", json!({})).await,
        Err(StateMachineError::BadEntity { .. })
    ));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn guards_and_actions() -> TestResult {
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let (c1, c2, c3) = (Arc::clone(&calls), Arc::clone(&calls), Arc::clone(&calls));
    let machine = Machine::builder("order", "orders")
        .initial("pending")
        .state(
            State::new("pending")
                .on("PAY", "paid")
                .on("FAIL", "paid")
                .on("BOOM", "paid")
                .guard("PAY", |t| async move {
                    Ok(t.context.get("amount").and_then(serde_json::Value::as_i64) > Some(0))
                })
                .guard("FAIL", |_| async { Err("payment service down".into()) })
                .exit(move |t| {
                    let calls = Arc::clone(&c1);
                    async move {
                        if t.event == "BOOM" {
                            return Err("exit refused".into());
                        }
                        calls
                            .lock()
                            .map_err(|e| e.to_string())?
                            .push(format!("exit {} {}", t.from, t.event));
                        Ok(())
                    }
                }),
        )
        .state(State::new("paid").on("SHIP", "shipped").entry(move |t| {
            let calls = Arc::clone(&c2);
            async move {
                calls
                    .lock()
                    .map_err(|e| e.to_string())?
                    .push(format!("entry {} {}", t.to, t.context));
                Ok(())
            }
        }))
        .state(State::final_state("shipped").entry(move |_| {
            let calls = Arc::clone(&c3);
            async move {
                calls
                    .lock()
                    .map_err(|e| e.to_string())?
                    .push("entry shipped".into());
                Err("the mailer is down".into())
            }
        }));
    let t = TestStore::memory("sm_guards");
    let (db, _p, _orders, m) = open(&t.conn, plugin_with(machine)).await?;
    let mut events = db.subscribe();

    assert!(matches!(
        m.send("o", "PAY", json!({"amount": 0})).await,
        Err(StateMachineError::GuardRejected { ref event, .. }) if event == "PAY"
    ));
    match m.send("o", "FAIL", json!({})).await {
        Err(StateMachineError::GuardFailed { reason, .. }) => {
            assert!(reason.contains("payment service down"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.send("o", "BOOM", json!({})).await,
        Err(StateMachineError::ExitActionFailed { ref state, .. }) if state == "pending"
    ));
    assert_eq!(m.state("o").await?, "pending", "nothing was written");
    assert!(m.history("o").await?.is_empty());
    assert!(calls.lock().map_err(|e| e.to_string())?.is_empty());

    m.send("o", "PAY", json!({"amount": 5})).await?;
    assert_eq!(
        *calls.lock().map_err(|e| e.to_string())?,
        ["exit pending PAY", "entry paid {\"amount\":5}"]
    );
    // A failing entry action is reported; the transition stays.
    let shipped = m.send("o", "SHIP", json!({})).await?;
    assert_eq!(shipped.to, "shipped");
    assert_eq!(m.state("o").await?, "shipped");
    let mut failed = 0;
    while let Ok(e) = events.try_recv() {
        if let Some(StateMachineEvent::EntryActionFailed { state, error, .. }) =
            StateMachineEvent::from_event(&e)
        {
            assert_eq!(state, "shipped");
            assert!(error.contains("mailer"));
            failed += 1;
        }
    }
    assert_eq!(failed, 1);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn initialize_stores_the_initial_state_once() -> TestResult {
    let entered = Arc::new(AtomicUsize::new(0));
    let e2 = Arc::clone(&entered);
    let machine = Machine::builder("order", "orders")
        .initial("pending")
        .state(State::new("pending").on("PAY", "paid").entry(move |t| {
            let e2 = Arc::clone(&e2);
            async move {
                assert_eq!((t.from.as_str(), t.event.as_str()), ("", ""));
                e2.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }))
        .state(State::final_state("paid"));
    let t = TestStore::file("sm_init");
    let (db, _p, orders, m) = open(&t.conn, plugin_with(machine)).await?;
    orders.insert_with_id("o-1", json!({})).await?;
    m.initialize("o-1", json!({})).await?;
    assert_eq!(entered.load(Ordering::SeqCst), 1);
    assert_eq!(
        orders.get("o-1").await?.get("status"),
        Some(&json!("pending"))
    );
    assert_eq!(m.entities_in("pending").await?, ["o-1"]);
    match m.initialize("o-1", json!({})).await {
        Err(StateMachineError::AlreadyInitialized { state, .. }) => assert_eq!(state, "pending"),
        other => panic!("{other:?}"),
    }
    assert_eq!(entered.load(Ordering::SeqCst), 1);
    m.send("o-1", "PAY", json!({})).await?;
    assert!(
        m.entities_in("pending").await?.is_empty(),
        "the old index marker is removed"
    );
    assert_eq!(m.entities_in("paid").await?, ["o-1"]);
    assert!(matches!(
        m.entities_in("nope").await,
        Err(StateMachineError::UnknownState { .. })
    ));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn plugin_level_api_and_uninstall() -> TestResult {
    let t = TestStore::memory("sm_plugin_api");
    let (db, plugin, _orders, m) = open(&t.conn, plugin_with(order_machine())).await?;
    let tr = plugin.send("order", "o", "PAY", json!({})).await?;
    assert_eq!(plugin.state("order", "o").await?, tr.to);
    assert_eq!(plugin.valid_events("order", "o").await?, ["SHIP"]);
    assert_eq!(plugin.history("order", "o").await?, vec![tr]);
    assert!(plugin.visualize("order")?.contains("digraph"));
    assert!(matches!(
        plugin.machine("nope"),
        Err(StateMachineError::UnknownMachine { ref defined, .. }) if defined == &["order".to_owned()]
    ));
    db.uninstall_plugin(s3db_statemachine::PLUGIN_NAME, false)
        .await?;
    assert!(matches!(
        m.send("o", "SHIP", json!({})).await,
        Err(StateMachineError::NotInstalled)
    ));
    assert!(matches!(
        plugin.machine("order"),
        Err(StateMachineError::NotInstalled)
    ));
    Ok(())
}

#[tokio::test]
async fn a_lost_log_entry_is_written_again() -> TestResult {
    let t = TestStore::memory("sm_log_repair");
    let (db, _p, _orders, m) = open(&t.conn, plugin_with(order_machine())).await?;
    let first = m.send("o", "PAY", json!({})).await?;
    // Simulate a crash between the commit and the log write.
    let log = db
        .resource(s3db_statemachine::TRANSITIONS_RESOURCE)
        .ok_or("log")?;
    let ids = log.list_ids().await?;
    assert_eq!(ids.len(), 1);
    log.delete(&ids[0]).await?;
    // Another process (no memory of having logged it) reads the history.
    let (db2, _p2, _o2, m2) = open(&t.conn, plugin_with(order_machine())).await?;
    assert_eq!(m2.history("o").await?, vec![first]);
    assert_eq!(log.count().await?, 1);
    db2.disconnect().await?;
    db.disconnect().await?;
    Ok(())
}
