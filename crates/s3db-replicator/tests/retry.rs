//! The failure log and `retry_failed`: a target down, writes succeed, the target comes back,
//! the replay delivers everything; and with many tasks, two databases, and several OS processes
//! (this test binary re-executed) replaying at once, each entry is delivered and resolved
//! exactly once.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use s3db_core::testing::{TestStore, TestWorker};
use s3db_core::{ConnectionString, Database};
use s3db_replicator::{LogStatus, Replicator, ReplicatorPlugin, RetryReport, WebhookTarget};
use serde_json::json;

const CONN: &str = "S3DB_REPLICATOR_WORKER_CONN";
const URL: &str = "S3DB_REPLICATOR_WORKER_URL";

fn plugin(url: &str) -> ReplicatorPlugin {
    ReplicatorPlugin::builder()
        .replicator(
            Replicator::new("hook", WebhookTarget::new(url))
                .resource("users")
                .max_retries(0),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn open(conn: &ConnectionString, url: &str) -> s3db_core::Result<Database> {
    Database::builder()
        .connection(conn.clone())
        .plugin(plugin(url))
        .connect()
        .await
}

/// Writes `n` users while the server answers 503: every write succeeds, every change is logged.
async fn fail_writes(db: &Database, server: &HookServer, n: usize) -> TestResult {
    let users = db.create_resource(users()).await?;
    server.set_status(503);
    for r in users
        .insert_many((0..n).map(|i| json!({"id": format!("u{i:03}"), "name": format!("n{i}")})))
        .await
    {
        r?;
    }
    assert_eq!(users.count().await?, n as u64, "the writes succeeded");
    assert_eq!(
        replicator_of(db)
            .log_entries(Some(LogStatus::Failed))
            .await?
            .len(),
        n
    );
    server.set_status(200);
    Ok(())
}

fn sum(reports: impl IntoIterator<Item = RetryReport>) -> RetryReport {
    reports
        .into_iter()
        .fold(RetryReport::default(), |a, b| RetryReport {
            resolved: a.resolved + b.resolved,
            failed: a.failed + b.failed,
            skipped: a.skipped + b.skipped,
        })
}

/// Every id delivered exactly once after the failed attempts, every entry resolved.
async fn assert_resolved_once(db: &Database, server: &HookServer, n: usize) -> TestResult {
    let delivered = server.delivered_per_id();
    assert_eq!(delivered.len(), n, "every record delivered");
    assert!(
        delivered.values().all(|c| *c == 1),
        "each delivered exactly once: {delivered:?}"
    );
    let entries = replicator_of(db).log_entries(None).await?;
    assert_eq!(entries.len(), n);
    assert!(
        entries
            .iter()
            .all(|e| e.status == LogStatus::Resolved && e.attempts == 2)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_writes_succeed_then_retry_failed_delivers() -> TestResult {
    let server = HookServer::start().await;
    let t = TestStore::memory("repl_down_up");
    let db = open(&t.conn, &server.url).await?;
    fail_writes(&db, &server, 3).await?;
    let users = db.resource("users").unwrap_or_else(|| panic!("users"));
    users.update("u001", json!({"age": 7})).await?; // down again? no: up, delivered at once
    let plugin = replicator_of(&db);
    let report = plugin.retry_failed().await?;
    assert_eq!((report.resolved, report.failed, report.skipped), (3, 0, 0));
    let ok: Vec<_> = server
        .received()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert_eq!(ok.len(), 4);
    let replayed: BTreeMap<String, serde_json::Value> = ok
        .iter()
        .filter(|r| r.body["action"] == json!("insert"))
        .map(|r| {
            (
                r.body["id"].as_str().unwrap_or_default().to_owned(),
                r.body["data"].clone(),
            )
        })
        .collect();
    assert_eq!(replayed.len(), 3);
    assert_eq!(replayed["u002"], json!({"name": "n2"}));
    let stats = plugin.stats()["hook"];
    assert_eq!(
        (stats.failed, stats.logged, stats.resolved, stats.replicated),
        (3, 3, 3, 4)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_fails_again_goes_back_to_failed() -> TestResult {
    let server = HookServer::start().await;
    let t = TestStore::memory("repl_fail_again");
    let db = open(&t.conn, &server.url).await?;
    fail_writes(&db, &server, 2).await?;
    server.set_status(500);
    let report = replicator_of(&db).retry_failed().await?;
    assert_eq!((report.resolved, report.failed), (0, 2));
    let entries = replicator_of(&db)
        .log_entries(Some(LogStatus::Failed))
        .await?;
    assert_eq!(
        entries.iter().map(|e| e.attempts).collect::<Vec<_>>(),
        [2, 2]
    );
    server.set_status(200);
    assert_eq!(replicator_of(&db).retry_failed().await?.resolved, 2);
    Ok(())
}

async fn race_in_tasks(t: TestStore, n: usize, tasks_per_db: usize) -> TestResult {
    let server = HookServer::start().await;
    let a = open(&t.conn, &server.url).await?;
    fail_writes(&a, &server, n).await?;
    let b = open(&t.conn, &server.url).await?; // a second database on the same bucket
    let mut racers = Vec::new();
    for db in [&a, &b] {
        for _ in 0..tasks_per_db {
            let plugin: Arc<ReplicatorPlugin> = replicator_of(db);
            racers.push(tokio::spawn(async move { plugin.retry_failed().await }));
        }
    }
    let mut reports = Vec::new();
    for r in racers {
        reports.push(r.await.unwrap_or_else(|e| panic!("racer: {e}"))?);
    }
    eprintln!("replay reports per task: {reports:?}");
    let total = sum(reports);
    assert_eq!(total.resolved, n as u64, "{total:?}");
    assert_eq!(total.failed, 0);
    assert_resolved_once(&a, &server, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replays_in_tasks_resolve_each_entry_once_on_memory() -> TestResult {
    race_in_tasks(TestStore::memory("repl_race_mem"), 30, 4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replays_in_tasks_resolve_each_entry_once_on_file() -> TestResult {
    race_in_tasks(TestStore::file("repl_race_file"), 20, 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replays_resolve_each_entry_once_on_the_s3_server() -> TestResult {
    let Some(t) = TestStore::s3("repl_race_s3") else {
        return Ok(());
    };
    race_in_tasks(t, 5, 2).await
}

/// The worker "test": does nothing unless started by a parent test with its env vars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() -> TestResult {
    let (Ok(conn), Ok(url)) = (std::env::var(CONN), std::env::var(URL)) else {
        return Ok(());
    };
    let db = open(&ConnectionString::parse(&conn)?, &url).await?;
    let plugin = replicator_of(&db);
    let (r1, r2) = tokio::join!(plugin.retry_failed(), plugin.retry_failed());
    let total = sum([r1?, r2?]);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "REPORT {} {} {}",
        total.resolved, total.failed, total.skipped
    );
    let _ = out.flush();
    db.disconnect().await?;
    Ok(())
}

fn spawn_worker(conn: &ConnectionString, url: &str) -> TestWorker {
    TestWorker::spawn(
        "worker_process",
        [(CONN, conn.to_string()), (URL, url.to_owned())],
    )
    .unwrap_or_else(|e| panic!("spawning a worker: {e}"))
}

/// Waits for a worker (killing it after `limit`); its report.
async fn finish(worker: TestWorker, limit: Duration) -> RetryReport {
    let output = worker.finish(limit).await.unwrap_or_else(|e| panic!("{e}"));
    let line = output
        .reports("REPORT ")
        .next()
        .unwrap_or_else(|| panic!("worker {} printed no report: {}", output.pid, output.stdout));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(n.len(), 3, "{line}");
    RetryReport {
        resolved: n[0],
        failed: n[1],
        skipped: n[2],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replays_in_processes_resolve_each_entry_once_on_file() -> TestResult {
    let server = HookServer::start().await;
    let t = TestStore::file("repl_race_procs");
    let n = 24;
    let db = open(&t.conn, &server.url).await?;
    fail_writes(&db, &server, n).await?;
    let children: Vec<TestWorker> = (0..2).map(|_| spawn_worker(&t.conn, &server.url)).collect();
    let mine = replicator_of(&db).retry_failed().await?;
    let mut reports = vec![mine];
    for child in children {
        reports.push(finish(child, Duration::from_secs(120)).await);
    }
    eprintln!("replay reports per process: {reports:?}");
    let total = sum(reports.iter().copied());
    assert_eq!(total.resolved, n as u64, "{reports:?}");
    assert_eq!(total.failed, 0);
    assert_resolved_once(&db, &server, n).await
}
