//! Many tasks and several OS processes (this test binary re-executed) send an event valid only
//! once to the same entities: exactly one success per entity, the others a typed error, one log
//! entry. Also: a transition whose state changed under it (an expired lease taken over) writes
//! nothing.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use s3db_core::ConnectionString;
use s3db_core::plugin::SetOptions;
use s3db_core::testing::{TestStore, TestWorker, worker_var};
use s3db_statemachine::{Machine, MachineHandle, State, StateMachineError};
use serde_json::json;

const CONN: &str = "S3DB_SM_WORKER_CONN";
const ENTITIES: &str = "S3DB_SM_WORKER_ENTITIES";
const START_AT: &str = "S3DB_SM_WORKER_START_AT";
const TASKS: usize = 4;

/// Every task sends PAY to every entity; returns (successes, invalid-event refusals) per entity.
async fn race(m: &MachineHandle, entities: &[String], tasks: usize) -> Vec<(String, u32, u32)> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (m, entities) = (m.clone(), entities.to_vec());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..entities.len() {
                // Different orders per task, so tasks collide on different entities.
                let entity = &entities[(i + task) % entities.len()];
                let r = m.send(entity, "PAY", json!({"task": task})).await;
                let (ok, invalid) = match r {
                    Ok(_) => (1, 0),
                    Err(StateMachineError::InvalidEvent { ref state, .. }) if state == "paid" => {
                        (0, 1)
                    }
                    Err(e) => panic!("unexpected error for {entity}: {e}"),
                };
                out.push((entity.clone(), ok, invalid));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap_or_else(|e| panic!("task: {e}")));
    }
    all
}

async fn assert_exactly_once(
    m: &MachineHandle,
    entities: &[String],
    results: &[(String, u32, u32)],
    senders: u32,
) -> TestResult {
    for entity in entities {
        let ok: u32 = results.iter().filter(|r| &r.0 == entity).map(|r| r.1).sum();
        let invalid: u32 = results.iter().filter(|r| &r.0 == entity).map(|r| r.2).sum();
        assert_eq!(ok, 1, "{entity}: exactly one PAY succeeds");
        assert_eq!(
            ok + invalid,
            senders,
            "{entity}: every other send is InvalidEvent"
        );
        assert_eq!(m.state(entity).await?, "paid");
        let history = m.history(entity).await?;
        assert_eq!(history.len(), 1, "{entity}: one log entry");
        assert_eq!(history[0].seq, 1);
    }
    Ok(())
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("e{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_exactly_one_success_on_memory_and_file() -> TestResult {
    for t in [
        TestStore::memory("sm_race_tasks"),
        TestStore::file("sm_race_tasks"),
    ] {
        let (db, _p, orders, m) = open(&t.conn, plugin_with(order_machine())).await?;
        let entities = names(6);
        for e in &entities {
            orders.insert_with_id(e, json!({})).await?;
        }
        let results = race(&m, &entities, 12).await;
        assert_exactly_once(&m, &entities, &results, 12).await?;
        for e in &entities {
            assert_eq!(orders.get(e).await?.get("status"), Some(&json!("paid")));
        }
        db.disconnect().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_changed_under_the_transition_writes_nothing() -> TestResult {
    let machine = Machine::builder("order", "orders")
        .initial("pending")
        .state(
            State::new("pending")
                .on("PAY", "paid")
                .on("CANCEL", "cancelled")
                .guard("PAY", |_| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(true)
                }),
        )
        .state(State::final_state("paid"))
        .state(State::final_state("cancelled"));
    let t = TestStore::memory("sm_conflict");
    let (db, _p, _orders, m) = open(&t.conn, plugin_with(machine)).await?;
    m.initialize("o", json!({})).await?;
    let sender = {
        let m = m.clone();
        tokio::spawn(async move { m.send("o", "PAY", json!({})).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Another writer (as a process that took over an expired lease would) changes the state
    // while the guard runs.
    let cx = db
        .plugin_context(s3db_statemachine::PLUGIN_NAME)
        .ok_or("context")?;
    let key = cx
        .storage()
        .key(Some("orders"), &["entities", "order", "o"])?;
    let mut data = cx.storage().get(&key).await?.ok_or("state")?;
    data.insert("state".into(), json!("cancelled"));
    data.insert("seq".into(), json!(1));
    cx.storage().set(&key, &data, SetOptions::new()).await?;
    match sender.await? {
        Err(StateMachineError::Conflict { entity, .. }) => assert_eq!(entity, "o"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(m.state("o").await?, "cancelled");
    assert!(m.history("o").await?.is_empty(), "the loser logged nothing");
    db.disconnect().await?;
    Ok(())
}

/// The worker "test": does nothing unless started by a parent test with its env vars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() -> TestResult {
    let Ok(conn) = std::env::var(CONN) else {
        return Ok(());
    };
    let conn = ConnectionString::parse(&conn)?;
    let entities: Vec<String> = std::env::var(ENTITIES)
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    let (db, _p, _orders, m) = open(&conn, plugin_with(order_machine())).await?;
    // Start together with the others.
    if let Some(at) = worker_var::<i64>(START_AT) {
        let wait = at - chrono::Utc::now().timestamp_millis();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
    let results = race(&m, &entities, TASKS).await;
    let mut out = std::io::stdout().lock();
    for (entity, ok, invalid) in results {
        let _ = writeln!(out, "RESULT {entity} {ok} {invalid}");
    }
    let _ = out.flush();
    db.disconnect().await?;
    Ok(())
}

fn spawn_worker(conn: &ConnectionString, entities: &[String], start_at: i64) -> TestWorker {
    TestWorker::spawn(
        "worker_process",
        [
            (CONN, conn.to_string()),
            (ENTITIES, entities.join(",")),
            (START_AT, start_at.to_string()),
        ],
    )
    .unwrap_or_else(|e| panic!("spawning a worker: {e}"))
}

/// Waits for a worker (killing it after `limit`) and returns its results.
async fn finish(worker: TestWorker, limit: Duration) -> Vec<(String, u32, u32)> {
    let output = worker.finish(limit).await.unwrap_or_else(|e| panic!("{e}"));
    output
        .reports("RESULT ")
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((
                p.next()?.to_owned(),
                p.next()?.parse().ok()?,
                p.next()?.parse().ok()?,
            ))
        })
        .collect()
}

async fn processes_race(t: TestStore, workers: usize, entities: usize) -> TestResult {
    let (db, _p, orders, m) = open(&t.conn, plugin_with(order_machine())).await?;
    let entities = names(entities);
    for e in &entities {
        orders.insert_with_id(e, json!({})).await?;
    }
    // Processes take a while to start: all begin at the same wall-clock instant.
    let start_at = chrono::Utc::now().timestamp_millis() + 1500;
    let children: Vec<TestWorker> = (0..workers)
        .map(|_| spawn_worker(&t.conn, &entities, start_at))
        .collect();
    let wait = start_at - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let mut results = race(&m, &entities, TASKS).await;
    for child in children {
        let r = finish(child, Duration::from_secs(180)).await;
        assert_eq!(
            r.len(),
            TASKS * entities.len(),
            "a worker reported every send"
        );
        results.extend(r);
    }
    let senders = u32::try_from((workers + 1) * TASKS)?;
    assert_exactly_once(&m, &entities, &results, senders).await?;
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_exactly_one_success_on_file() -> TestResult {
    processes_race(TestStore::file("sm_race_procs"), 3, 4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_exactly_one_success_on_the_s3_server() -> TestResult {
    match TestStore::s3("sm_race_s3") {
        Some(t) => processes_race(t, 2, 1).await,
        None => Ok(()),
    }
}
