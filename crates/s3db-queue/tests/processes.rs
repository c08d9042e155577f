//! Several OS processes (this test binary re-executed) working one queue on one bucket: every
//! message handled exactly once, none lost — also when a worker is killed mid-message.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use s3db_core::testing::{TestStore, TestWorker, worker_var};
use s3db_core::{ConnectionString, Key, Metadata, Result};
use s3db_queue::{HandlerError, Message, S3Queue, State};
use serde_json::json;

const CONN: &str = "S3DB_QUEUE_WORKER_CONN";
const TOTAL: &str = "S3DB_QUEUE_WORKER_TOTAL";
const HANG: &str = "S3DB_QUEUE_WORKER_HANG";
const SLEEP_MS: &str = "S3DB_QUEUE_WORKER_SLEEP_MS";
const VT_MS: &str = "S3DB_QUEUE_WORKER_VT_MS";
const POLL_MS: &str = "S3DB_QUEUE_WORKER_POLL_MS";

fn worker_queue(vt: Duration, poll: Duration) -> s3db_queue::QueueBuilder {
    S3Queue::builder(QUEUE)
        .concurrency(3)
        .visibility_timeout(vt)
        .poll_interval(poll)
        .retry_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
        .max_attempts(5)
        .stop_timeout(Duration::from_millis(500))
}

/// The worker "test": does nothing unless started by a parent test with its env vars. Works the
/// queue until `TOTAL` messages are completed; with `HANG`, claims one message, marks it
/// `victim/<id>` and hangs in the handler until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() -> TestResult {
    let Ok(conn) = std::env::var(CONN) else {
        return Ok(());
    };
    let conn = ConnectionString::parse(&conn)?;
    let total = worker_var(TOTAL).unwrap_or(0);
    let vt = Duration::from_millis(worker_var(VT_MS).unwrap_or(5000));
    let poll = Duration::from_millis(worker_var(POLL_MS).unwrap_or(20));
    let sleep = Duration::from_millis(worker_var(SLEEP_MS).unwrap_or(0));
    let db = connect(&conn).await?;
    let store = db.store().clone();
    let pid = std::process::id();
    let builder = if std::env::var(HANG).is_ok() {
        let store = store.clone();
        worker_queue(vt, poll)
            .concurrency(1)
            .on_message(move |msg: Message| {
                let store = store.clone();
                async move {
                    let meta = Metadata::new()
                        .with("deadline", msg.deadline().timestamp_millis().to_string());
                    store
                        .create(
                            &Key::parse(&format!("victim/{}", msg.id()))?,
                            meta,
                            "x".into(),
                        )
                        .await?;
                    std::future::pending::<()>().await;
                    Ok::<(), HandlerError>(())
                }
            })
    } else {
        worker_queue(vt, poll).on_message(recording(store.clone(), format!("pid{pid}"), sleep))
    };
    let q = db.use_plugin(builder.build()?).await?;
    store
        .put(
            &Key::parse(&format!("ready/{pid}"))?,
            Metadata::new(),
            "x".into(),
        )
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while q.stats().await?.completed < total && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.disconnect().await?;
    Ok(())
}

fn spawn_worker(conn: &ConnectionString, total: usize, extra: &[(&str, String)]) -> TestWorker {
    let env = [(CONN, conn.to_string()), (TOTAL, total.to_string())];
    TestWorker::spawn("worker_process", env.iter().chain(extra).cloned())
        .unwrap_or_else(|e| panic!("spawning a worker: {e}"))
}

/// Waits for a worker to exit successfully within `limit`.
async fn finish(worker: TestWorker, limit: Duration) {
    worker.finish(limit).await.unwrap_or_else(|e| panic!("{e}"));
}

async fn count(store: &s3db_core::Store, prefix: &str) -> Result<usize> {
    Ok(store.list_keys(Some(&Key::parse(prefix)?)).await?.len())
}

/// Asserts every id was handled exactly once and is completed; returns the handlers' tags.
async fn assert_exactly_once(
    t: &TestStore,
    q: &S3Queue,
    ids: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let effects = effects(&t.store).await?;
    assert_eq!(
        &effects.keys().cloned().collect::<BTreeSet<_>>(),
        ids,
        "every message was handled, none lost"
    );
    let mut tags = BTreeSet::new();
    for (id, runs) in &effects {
        assert_eq!(runs.len(), 1, "{id} handled exactly once: {runs:?}");
        let info = q.message(id).await?.unwrap_or_else(|| panic!("{id}"));
        assert_eq!(info.state, State::Completed, "{id}");
        assert_eq!(
            info.token.as_deref(),
            Some(runs[0].0.as_str()),
            "{id}: the handled claim is the committed one"
        );
        tags.insert(runs[0].2.clone());
    }
    let stats = q.stats().await?;
    assert_eq!(
        (stats.completed, stats.pending, stats.processing, stats.dead),
        (ids.len() as u64, 0, 0, 0)
    );
    Ok(tags)
}

async fn processes(t: TestStore, workers: usize, messages: usize, sleep_ms: u64) -> TestResult {
    let (db, q) = open(&t.conn, S3Queue::builder(QUEUE).build()?).await?;
    let children: Vec<TestWorker> = (0..workers)
        .map(|_| spawn_worker(&t.conn, messages, &[(SLEEP_MS, sleep_ms.to_string())]))
        .collect();
    eventually(Duration::from_secs(60), "workers ready", || async {
        Ok(count(&t.store, "ready").await? == workers)
    })
    .await?;
    let mut ids = BTreeSet::new();
    for i in 0..messages {
        ids.insert(q.enqueue(json!({"i": i})).await?);
    }
    for child in children {
        finish(child, Duration::from_secs(180)).await;
    }
    let tags = assert_exactly_once(&t, &q, &ids).await?;
    assert!(tags.len() >= 2, "several processes did the work: {tags:?}");
    db.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_handle_each_message_exactly_once_on_file() -> TestResult {
    processes(TestStore::file("queue_procs"), 3, 60, 15).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_the_s3_server() -> TestResult {
    match TestStore::s3("queue_procs_s3") {
        Some(t) => processes(t, 2, 8, 50).await,
        None => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_its_message_completes_once_elsewhere() -> TestResult {
    let t = TestStore::file("queue_procs_kill");
    let vt = Duration::from_millis(1500);
    let (db, q) = open(&t.conn, S3Queue::builder(QUEUE).build()?).await?;
    let messages = 20;
    let mut ids = BTreeSet::new();
    for i in 0..messages {
        ids.insert(q.enqueue(json!({"i": i})).await?);
    }
    let timing = [(VT_MS, vt.as_millis().to_string())];
    let mut victim = spawn_worker(
        &t.conn,
        messages,
        &[timing[0].clone(), (HANG, "1".to_owned())],
    );
    eventually(Duration::from_secs(60), "the victim's claim", || async {
        Ok(count(&t.store, "victim").await? == 1)
    })
    .await?;
    // The others start while the victim holds its message.
    let others: Vec<TestWorker> = (0..2)
        .map(|_| {
            spawn_worker(
                &t.conn,
                messages,
                &[timing[0].clone(), (SLEEP_MS, "5".into())],
            )
        })
        .collect();
    victim
        .kill()
        .unwrap_or_else(|e| panic!("SIGKILL the victim: {e}"));
    let status = victim
        .wait(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status;
    assert!(!status.success(), "the victim was killed mid-message");

    for child in others {
        finish(child, Duration::from_secs(180)).await;
    }
    assert_exactly_once(&t, &q, &ids).await?;

    let victim_key = t
        .store
        .list_keys(Some(&Key::parse("victim")?))
        .await?
        .pop()
        .unwrap_or_else(|| panic!("victim marker"));
    let id = victim_key.last_part().to_owned();
    let deadline: i64 = t
        .store
        .head(&victim_key)
        .await?
        .metadata
        .get("deadline")
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("deadline"));
    let info = q.message(&id).await?.unwrap_or_else(|| panic!("{id}"));
    assert_eq!(
        (info.state, info.attempts),
        (State::Completed, 2),
        "completed by a second claim"
    );
    let finished = info.finished_at.map_or(0, |f| f.timestamp_millis());
    assert!(
        finished >= deadline,
        "re-claimed only after the victim's deadline ({finished} < {deadline})"
    );
    db.disconnect().await?;
    Ok(())
}
