//! Several OS processes (this test binary re-executed) running the same every-second job on one
//! bucket: each tick runs exactly once across all of them.

mod common;

use std::time::Duration;

use common::*;
use s3db_core::testing::{TestStore, TestWorker, worker_var};
use s3db_core::{ConnectionString, Result};

const CONN: &str = "S3DB_SCHEDULER_WORKER_CONN";
const MILLIS: &str = "S3DB_SCHEDULER_WORKER_MILLIS";
const TAG: &str = "S3DB_SCHEDULER_WORKER_TAG";
const JOB: &str = "shared";

/// The worker "test": does nothing unless started by a parent test with its env vars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() -> TestResult {
    let Ok(conn) = std::env::var(CONN) else {
        return Ok(());
    };
    let conn = ConnectionString::parse(&conn)?;
    let millis: u64 = worker_var(MILLIS).unwrap_or(0);
    let tag = std::env::var(TAG).unwrap_or_default();
    let (db, _) = connect(
        &conn,
        plugin(vec![recording_job(JOB, Duration::from_secs(1), &tag)]),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    db.disconnect().await?;
    let mine = scheduled(&scheduler(&db), JOB).await;
    eprintln!("worker {tag}: {} ticks in the history", mine.len());
    Ok(())
}

fn spawn_worker(conn: &ConnectionString, tag: &str, millis: u64) -> TestWorker {
    TestWorker::spawn(
        "worker_process",
        [
            (CONN, conn.to_string()),
            (MILLIS, millis.to_string()),
            (TAG, tag.to_owned()),
        ],
    )
    .unwrap_or_else(|e| panic!("spawning a worker: {e}"))
}

/// `workers` processes plus this one run the job for `millis`; every tick once.
async fn processes(t: TestStore, workers: usize, millis: u64, min_ticks: usize) -> Result<()> {
    let children: Vec<TestWorker> = (0..workers)
        .map(|i| spawn_worker(&t.conn, &format!("proc{i}"), millis))
        .collect();
    let (db, runs) = connect(
        &t.conn,
        plugin(vec![recording_job(JOB, Duration::from_secs(1), "parent")]),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    db.disconnect().await?;
    for child in children {
        child
            .finish(Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let n = assert_once_per_tick(&scheduler(&db), &runs, JOB).await;
    assert!(n >= min_ticks, "{n} ticks ran in {millis} ms");
    let owners: std::collections::BTreeSet<String> = runs_per_tick(&runs)
        .await?
        .into_values()
        .flatten()
        .collect();
    let claimers: std::collections::BTreeSet<String> = scheduled(&scheduler(&db), JOB)
        .await
        .into_iter()
        .filter_map(|e| e.owner)
        .collect();
    eprintln!("{n} ticks, run by {owners:?}, claimed by {claimers:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_file_run_each_tick_once() -> TestResult {
    processes(TestStore::file("sched_procs"), 3, 5000, 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_on_the_s3_server_run_each_tick_once() -> TestResult {
    match TestStore::s3("sched_procs_s3") {
        Some(t) => processes(t, 1, 3500, 2).await,
        None => Ok(()),
    }
}
