//! Several OS processes (this test binary re-executed) and many tasks adding and consolidating
//! concurrently on one bucket: the final value is exactly the sum, every transaction applied
//! exactly once — also when a process is killed mid-way.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::*;
use s3db_core::testing::{TestStore, TestWorker, WorkerOutput, worker_var};
use s3db_core::{ConnectionString, Result};
use s3db_eventual::{EventualConsistencyPlugin, EventualHandle, Mode};

const CONN: &str = "S3DB_EVENTUAL_WORKER_CONN";
const MODE: &str = "S3DB_EVENTUAL_WORKER_MODE";
const ADDS: &str = "S3DB_EVENTUAL_WORKER_ADDS";
const TAG: &str = "S3DB_EVENTUAL_WORKER_TAG";
const IDS: &str = "S3DB_EVENTUAL_WORKER_IDS";
const FOREVER: &str = "S3DB_EVENTUAL_WORKER_FOREVER";
const TASKS: u32 = 3;

fn plugin_for(mode: Mode) -> EventualConsistencyPlugin {
    EventualConsistencyPlugin::builder()
        .field("wallets", "balance")
        .mode(mode)
        .consolidation_interval(Duration::from_secs(3600))
        .lock_ttl(Duration::from_secs(1))
        .lock_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The amount of add number `i` of task `task` of worker `tag`: unique, so sums identify them.
fn amount(tag: u32, task: u32, i: u32) -> u32 {
    tag * 10_000 + task * 100 + i + 1
}

/// Adds `adds` amounts per task over `ids` (round robin), consolidating concurrently; returns
/// the sum acknowledged per id.
async fn work(
    h: &EventualHandle,
    mode: Mode,
    tag: u32,
    adds: u32,
    ids: &[String],
    forever: bool,
) -> Result<BTreeMap<String, f64>> {
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (h, ids) = (h.clone(), ids.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            let mut i = 0;
            while forever || i < adds {
                let id = &ids[(i as usize + task as usize) % ids.len()];
                let v = amount(tag, task, i % 100);
                let receipt = h.add(id, v).await?;
                if forever {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ACK {} {id} {v}", receipt.transaction_id);
                    let _ = out.flush();
                }
                if mode == Mode::Async && i % 4 == 3 {
                    h.consolidate(id).await?;
                }
                *sums.entry(id.clone()).or_default() += f64::from(v);
                i += 1;
            }
            Ok::<_, s3db_core::Error>(sums)
        }));
    }
    // A concurrent sweeper, as the background task would do.
    let sweeper = {
        let h = h.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                let _ = h.consolidate_pending().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    for t in tasks {
        let sums = t.await.unwrap_or_else(|e| panic!("task: {e}"))?;
        for (id, s) in sums {
            *total.entry(id).or_default() += s;
        }
    }
    let _ = sweeper.await;
    Ok(total)
}

/// The worker "test": does nothing unless started by a parent test with its env vars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() -> TestResult {
    let Ok(conn) = std::env::var(CONN) else {
        return Ok(());
    };
    let conn = ConnectionString::parse(&conn)?;
    let mode = if std::env::var(MODE).as_deref() == Ok("sync") {
        Mode::Sync
    } else {
        Mode::Async
    };
    let adds: u32 = worker_var(ADDS).unwrap_or(0);
    let tag: u32 = worker_var(TAG).unwrap_or(0);
    let ids: Vec<String> = std::env::var(IDS)
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    let forever = std::env::var(FOREVER).is_ok();
    let (db, h) = open(&conn, plugin_for(mode)).await?;
    let sums = work(&h, mode, tag, adds, &ids, forever).await?;
    let mut out = std::io::stdout().lock();
    for (id, s) in sums {
        let _ = writeln!(out, "SUM {id} {s}");
    }
    let _ = out.flush();
    db.disconnect().await?;
    Ok(())
}

fn spawn_worker(
    conn: &ConnectionString,
    mode: Mode,
    tag: u32,
    adds: u32,
    ids: &[&str],
    forever: bool,
) -> TestWorker {
    let mut env = vec![
        (CONN, conn.to_string()),
        (
            MODE,
            if mode == Mode::Sync { "sync" } else { "async" }.to_owned(),
        ),
        (ADDS, adds.to_string()),
        (TAG, tag.to_string()),
        (IDS, ids.join(",")),
    ];
    if forever {
        env.push((FOREVER, "1".to_owned()));
    }
    TestWorker::spawn("worker_process", env).unwrap_or_else(|e| panic!("spawning a worker: {e}"))
}

/// Waits for a worker (killing it after `limit`) and returns its output.
async fn finish(worker: TestWorker, limit: Duration) -> WorkerOutput {
    worker.finish(limit).await.unwrap_or_else(|e| panic!("{e}"))
}

fn sums_of(output: &WorkerOutput) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in output.reports("SUM ") {
        let mut parts = line.split_whitespace();
        if let (Some(id), Some(s)) = (
            parts.next(),
            parts.next().and_then(|s| s.parse::<f64>().ok()),
        ) {
            *sums.entry(id.to_owned()).or_default() += s;
        }
    }
    sums
}

async fn processes_and_tasks(
    t: TestStore,
    mode: Mode,
    workers: u32,
    adds: u32,
    ids: &[&str],
) -> TestResult {
    let (db, h) = open(&t.conn, plugin_for(mode)).await?;
    let children: Vec<TestWorker> = (1..=workers)
        .map(|tag| spawn_worker(&t.conn, mode, tag, adds, ids, false))
        .collect();
    let own: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    let mine = work(&h, mode, 0, adds, &own, false).await?;
    let mut expected = mine;
    for child in children {
        for (id, s) in sums_of(&finish(child, Duration::from_secs(240)).await) {
            *expected.entry(id).or_default() += s;
        }
    }
    let adds_total = (workers + 1) * TASKS * adds;
    let mut txs_total = 0;
    for id in ids {
        let value = h.consolidate(id).await?;
        let sum = expected.get(*id).copied().unwrap_or_default();
        assert_eq!(
            value, sum,
            "{id}: the value is exactly the sum of every process's adds"
        );
        let txs = assert_all_applied(&h, id).await?;
        let logged: f64 = txs.iter().map(|t| t.value).sum();
        assert_eq!(
            logged, sum,
            "{id}: each acknowledged add is in the log once"
        );
        txs_total += txs.len();
        assert_eq!(h.recalculate(id).await?, value);
    }
    assert_eq!(txs_total as u32, adds_total);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_and_tasks_on_file_sync_mode() -> TestResult {
    processes_and_tasks(
        TestStore::file("eventual_procs_sync"),
        Mode::Sync,
        3,
        8,
        &["a", "b"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_and_tasks_on_file_async_mode() -> TestResult {
    processes_and_tasks(
        TestStore::file("eventual_procs_async"),
        Mode::Async,
        3,
        10,
        &["a", "b", "c"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_on_the_s3_server() -> TestResult {
    match TestStore::s3("eventual_procs_s3") {
        Some(t) => processes_and_tasks(t, Mode::Sync, 2, 2, &["a"]).await,
        None => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_nothing_and_applies_nothing_twice() -> TestResult {
    let t = TestStore::file("eventual_procs_kill");
    let (db, h) = open(&t.conn, plugin_for(Mode::Async)).await?;
    let steady = spawn_worker(&t.conn, Mode::Async, 1, 12, &["a", "b"], false);
    let mut victim = spawn_worker(&t.conn, Mode::Async, 2, 0, &["a", "b"], true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim
        .kill()
        .unwrap_or_else(|e| panic!("SIGKILL the victim: {e}"));
    let out = victim
        .wait(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let acked: Vec<(String, String)> = out
        .reports("ACK ")
        .map(|l| {
            let mut p = l.split_whitespace();
            (
                p.next().unwrap_or_default().to_owned(),
                p.next().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        !acked.is_empty(),
        "the victim made progress before it was killed"
    );
    finish(steady, Duration::from_secs(240)).await;
    for id in ["a", "b"] {
        // Waits for the victim's lease if it died holding it, then finishes its work.
        let value = h.consolidate(id).await?;
        let txs = assert_all_applied(&h, id).await?;
        let logged: f64 = txs.iter().map(|t| t.value).sum();
        assert_eq!(
            value, logged,
            "{id}: every logged transaction folded exactly once"
        );
        for (tx, _) in acked.iter().filter(|(_, rid)| rid == id) {
            assert!(
                txs.iter().any(|t| &t.id == tx),
                "{id}: acknowledged transaction {tx} is durable"
            );
        }
        assert_eq!(h.recalculate(id).await?, value);
    }
    db.disconnect().await?;
    Ok(())
}
