//! Cron, date and event triggers; once per tick / once per stay across databases sharing a
//! bucket; max-trigger counts; and nothing left running after stop.

mod common;

use s3db_core::plugin::CustomEvent;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::*;
use s3db_core::ResourceConfig;
use s3db_core::testing::{TestStore, TestWorker};
use s3db_statemachine::{Machine, MachineBuilder, State, StateMachineEvent, Trigger};
use serde_json::json;

const EVERY_SECOND: &str = "* * * * * *";

fn waiting_machine(trigger: Trigger) -> MachineBuilder {
    Machine::builder("order", "orders")
        .initial("waiting")
        .state(
            State::new("waiting")
                .on("EXPIRE", "expired")
                .on("GIVE_UP", "gave_up")
                .on("PAY", "paid")
                .trigger(trigger),
        )
        .state(State::final_state("expired"))
        .state(State::final_state("gave_up"))
        .state(State::final_state("paid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_trigger_sends_its_event_to_entities_in_its_state() -> TestResult {
    let t = TestStore::memory("sm_cron_send");
    let (db, _p, _orders, m) = open(
        &t.conn,
        plugin_with(waiting_machine(Trigger::cron(EVERY_SECOND).send("EXPIRE"))),
    )
    .await?;
    m.initialize("a", json!({})).await?;
    m.initialize("b", json!({})).await?;
    m.send("c", "PAY", json!({})).await?; // not in "waiting": untouched
    let expired = eventually(Duration::from_secs(4), || async {
        m.state("a").await.ok().as_deref() == Some("expired")
            && m.state("b").await.ok().as_deref() == Some("expired")
    })
    .await;
    assert!(expired, "the cron trigger expired both waiting entities");
    assert_eq!(m.state("c").await?, "paid");
    let h = m.history("a").await?;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].event, "EXPIRE");
    assert_eq!(h[0].context["trigger"], json!("waiting~0"));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_max_triggers_then_on_max_reached() -> TestResult {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let trigger = Trigger::cron(EVERY_SECOND)
        .max_triggers(2)
        .on_max_reached("GIVE_UP")
        .action(move |_| {
            let r = Arc::clone(&r);
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
    let t = TestStore::memory("sm_cron_max");
    let (db, _p, _orders, m) = open(&t.conn, plugin_with(waiting_machine(trigger))).await?;
    m.initialize("a", json!({})).await?;
    let gave_up = eventually(Duration::from_secs(6), || async {
        m.state("a").await.ok().as_deref() == Some("gave_up")
    })
    .await;
    assert!(gave_up, "after two runs the third tick sends GIVE_UP");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the action ran max_triggers times"
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_tick_fires_once_across_two_databases() -> TestResult {
    let t = TestStore::file("sm_cron_two_dbs");
    let seen: Arc<Mutex<Vec<(usize, i64)>>> = Arc::default();
    let mut dbs = Vec::new();
    for tag in 0..2 {
        let s = Arc::clone(&seen);
        let trigger = Trigger::cron(EVERY_SECOND).action(move |t| {
            let s = Arc::clone(&s);
            async move {
                s.lock()
                    .map_err(|e| e.to_string())?
                    .push((tag, t.now.timestamp()));
                Ok(())
            }
        });
        let (db, _p, _orders, m) = open(&t.conn, plugin_with(waiting_machine(trigger))).await?;
        if tag == 0 {
            m.initialize("a", json!({})).await?;
        }
        dbs.push(db);
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for db in &dbs {
        db.disconnect().await?;
    }
    let seen = seen.lock().map_err(|e| e.to_string())?.clone();
    let mut ticks: Vec<i64> = seen.iter().map(|s| s.1).collect();
    ticks.sort_unstable();
    let before = ticks.len();
    ticks.dedup();
    assert!(before >= 2, "ticks fired: {seen:?}");
    assert_eq!(
        before,
        ticks.len(),
        "each tick handled by exactly one database: {seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_triggers_fire_once_when_due_across_two_databases() -> TestResult {
    let t = TestStore::file("sm_date");
    let runs = Arc::new(AtomicUsize::new(0));
    let mut open_dbs = Vec::new();
    for tag in 0..2 {
        let r = Arc::clone(&runs);
        let machine = Machine::builder("order", "orders")
            .initial("waiting")
            .state(
                State::new("waiting")
                    .on("EXPIRE", "expired")
                    .trigger(Trigger::date_field("deadline").send("EXPIRE")),
            )
            .state(
                State::new("expired")
                    .on("ARCHIVE", "archived")
                    // Fires once per stay, whichever database sees it first.
                    .trigger(
                        Trigger::at(Utc::now() - chrono::Duration::seconds(1)).action(move |_| {
                            let r = Arc::clone(&r);
                            async move {
                                r.fetch_add(1, Ordering::SeqCst);
                                Ok(())
                            }
                        }),
                    ),
            )
            .state(State::final_state("archived"));
        let (db, _p, orders, m) = open(&t.conn, plugin_with(machine)).await?;
        if tag == 0 {
            let past = (Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
            let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
            orders
                .insert_with_id("due", json!({"deadline": past}))
                .await?;
            orders
                .insert_with_id("later", json!({"deadline": future}))
                .await?;
            orders.insert_with_id("no-date", json!({})).await?;
            for e in ["due", "later", "no-date"] {
                m.initialize(e, json!({})).await?;
            }
        }
        open_dbs.push((db, m));
    }
    let m = open_dbs[0].1.clone();
    let expired = eventually(Duration::from_secs(5), || async {
        m.state("due").await.ok().as_deref() == Some("expired")
    })
    .await;
    assert!(expired);
    // Both databases keep checking every 50 ms: nothing more happens.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(m.history("due").await?.len(), 1);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the date action ran once across both databases"
    );
    assert_eq!(m.state("later").await?, "waiting");
    assert_eq!(m.state("no-date").await?, "waiting");
    for (db, _) in &open_dbs {
        db.disconnect().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_triggers_follow_writes_of_matching_records() -> TestResult {
    let machine = Machine::builder("order", "orders")
        .initial("pending")
        .state(
            State::new("pending").on("PAY", "paid").trigger(
                Trigger::on_insert()
                    .from_resource("payments")
                    .entity_field("order_id")
                    .condition(|t| async move {
                        Ok(t.record
                            .as_ref()
                            .and_then(|r| r.get("amount"))
                            .and_then(serde_json::Value::as_f64)
                            > Some(0.0))
                    })
                    .send("PAY"),
            ),
        )
        .state(
            State::new("paid").on("SHIP", "shipped").trigger(
                Trigger::on_update()
                    .condition(|t| async move {
                        Ok(t.record.as_ref().and_then(|r| r.get("packed")) == Some(&json!(true)))
                    })
                    .send("SHIP"),
            ),
        )
        .state(State::final_state("shipped"));
    let t = TestStore::memory("sm_event_triggers");
    let (db, _p, orders, m) = open(&t.conn, plugin_with(machine)).await?;
    let mut events = db.subscribe();
    let payments = db
        .create_resource(
            ResourceConfig::new("payments")
                .attribute("order_id", "string")
                .attribute("amount", "number"),
        )
        .await?;
    orders
        .insert_with_id("o-1", json!({"packed": false}))
        .await?;
    orders
        .insert_with_id("o-2", json!({"packed": false}))
        .await?;
    payments
        .insert(json!({"order_id": "o-1", "amount": 0}))
        .await?; // condition says no
    payments
        .insert(json!({"order_id": "o-2", "amount": 10}))
        .await?;
    assert!(
        eventually(Duration::from_secs(3), || async {
            m.state("o-2").await.ok().as_deref() == Some("paid")
        })
        .await
    );
    assert_eq!(m.state("o-1").await?, "pending");
    orders.update("o-1", json!({"packed": true})).await?; // o-1 is not paid: no SHIP
    orders.update("o-2", json!({"packed": true})).await?;
    assert!(
        eventually(Duration::from_secs(3), || async {
            m.state("o-2").await.ok().as_deref() == Some("shipped")
        })
        .await
    );
    assert_eq!(m.state("o-1").await?, "pending");
    // TriggerFired is emitted once the entity's lock is released: wait for both.
    let mut fired = Vec::new();
    while fired.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(3), events.recv()).await??;
        if let Some(StateMachineEvent::TriggerFired {
            trigger,
            entity,
            sent,
            ..
        }) = StateMachineEvent::from_event(&e)
        {
            fired.push((trigger, entity, sent));
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(e) = events.try_recv() {
        if let Some(StateMachineEvent::TriggerFired { entity, .. }) =
            StateMachineEvent::from_event(&e)
        {
            panic!("unexpected firing for {entity}");
        }
    }
    assert_eq!(
        fired,
        [
            (
                "pending~0".to_owned(),
                "o-2".to_owned(),
                Some("PAY".to_owned())
            ),
            (
                "paid~0".to_owned(),
                "o-2".to_owned(),
                Some("SHIP".to_owned())
            ),
        ]
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_leaves_nothing_running() -> TestResult {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let machine = Machine::builder("order", "orders")
        .initial("waiting")
        .state(
            State::new("waiting")
                .on("EXPIRE", "expired")
                .trigger(Trigger::cron(EVERY_SECOND).action(move |_| {
                    let r = Arc::clone(&r);
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                }))
                .trigger(Trigger::date_field("deadline").send("EXPIRE"))
                .trigger(
                    Trigger::on_update()
                        .condition(|t| async move {
                            Ok(t.record.as_ref().and_then(|r| r.get("packed"))
                                == Some(&json!(true)))
                        })
                        .send("EXPIRE"),
                ),
        )
        .state(State::final_state("expired"));
    let t = TestStore::memory("sm_stop");
    let (db, _p, orders, m) = open(&t.conn, plugin_with(machine)).await?;
    let cx = db
        .plugin_context(s3db_statemachine::PLUGIN_NAME)
        .ok_or("context")?;
    assert_eq!(
        cx.running_tasks(),
        3,
        "one cron task, one date task, one event task"
    );
    orders.insert_with_id("a", json!({})).await?;
    m.initialize("a", json!({})).await?;
    assert!(
        eventually(Duration::from_secs(3), || async {
            runs.load(Ordering::SeqCst) >= 1
        })
        .await
    );
    db.uninstall_plugin(s3db_statemachine::PLUGIN_NAME, false)
        .await?;
    assert_eq!(cx.running_tasks(), 0);
    let after = runs.load(Ordering::SeqCst);
    orders
        .update(
            "a",
            json!({"deadline": "2000-01-01T00:00:00Z", "packed": true}),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        after,
        "no tick after uninstall"
    );
    // Neither the event nor the date trigger moved the entity (read with a machine without
    // triggers, over the same stored state).
    let (db2, _p2, _o2, m2) = open(&t.conn, plugin_with(order_machine())).await?;
    assert_eq!(m2.state("a").await?, "waiting");
    db2.disconnect().await?;
    db.disconnect().await?;
    Ok(())
}

const CONN: &str = "S3DB_SM_CRON_WORKER_CONN";
const RUN_FOR_MS: &str = "S3DB_SM_CRON_WORKER_RUN_FOR_MS";

/// A machine whose cron trigger records each firing as a record `<tick ms>~<pid>` of `ticks`.
fn ticking_machine() -> MachineBuilder {
    waiting_machine(Trigger::cron(EVERY_SECOND).action(|t| async move {
        let ticks = t.database.resource("ticks").ok_or("no ticks resource")?;
        // Whole seconds: a tick claimed twice would show up as two ids with one second.
        let id = format!("{}~{}", t.now.timestamp(), std::process::id());
        ticks
            .insert_with_id(&id, json!({"tick": t.now.timestamp_millis()}))
            .await?;
        Ok(())
    }))
}

/// The worker "test": runs the plugin for a while; does nothing unless started by a parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_worker_process() -> TestResult {
    let Ok(conn) = std::env::var(CONN) else {
        return Ok(());
    };
    let conn = s3db_core::ConnectionString::parse(&conn)?;
    let run_for: u64 = std::env::var(RUN_FOR_MS)?.parse()?;
    let (db, _p, _orders, _m) = open(&conn, plugin_with(ticking_machine())).await?;
    db.create_resource(ResourceConfig::new("ticks").attribute("tick", "number"))
        .await?;
    tokio::time::sleep(Duration::from_millis(run_for)).await;
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_tick_fires_once_across_processes() -> TestResult {
    let t = TestStore::file("sm_cron_procs");
    // This process competes too.
    let (db, _p, _orders, m) = open(&t.conn, plugin_with(ticking_machine())).await?;
    let ticks = db
        .create_resource(ResourceConfig::new("ticks").attribute("tick", "number"))
        .await?;
    m.initialize("a", json!({})).await?;

    let children: Vec<TestWorker> = (0..2)
        .map(|_| {
            TestWorker::spawn(
                "cron_worker_process",
                [(CONN, t.conn.to_string()), (RUN_FOR_MS, "4000".to_owned())],
            )
        })
        .collect::<std::io::Result<_>>()?;
    for child in children {
        child.finish(Duration::from_secs(120)).await?;
    }
    let ids = ticks.list_ids().await?;
    let mut per_tick: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for id in &ids {
        let (tick, pid) = id.split_once('~').ok_or("id")?;
        per_tick
            .entry(tick.to_owned())
            .or_default()
            .push(pid.to_owned());
    }
    assert!(per_tick.len() >= 2, "ticks fired: {ids:?}");
    for (tick, pids) in &per_tick {
        assert_eq!(pids.len(), 1, "tick {tick} fired in {pids:?}");
    }
    db.disconnect().await?;
    Ok(())
}
