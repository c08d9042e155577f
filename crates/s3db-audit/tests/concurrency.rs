//! Many writers at once — tasks, several databases on one store, several OS processes on one
//! folder, and the S3 test server: every operation is recorded exactly once (entry ids never
//! collide), each record's history is in order, and concurrent clean-ups delete every old entry
//! without failing.
//!
//! OS processes: the test re-runs its own binary with `--exact worker_process`, and the worker
//! "test" does its part only when `AUDIT_WORKER_CONN` is set.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use s3db_audit::{AuditOperation, AuditPlugin, AuditQuery, AuditUser, ManualClock};
use s3db_core::testing::{TestStore, TestWorker, worker_var};
use s3db_core::{ConnectionString, Database, Error, Resource};
use serde_json::json;

/// Inserts, updates and deletes `records` notes as `user`, one record after the other.
async fn churn(notes: &Resource, user: &str, records: usize) -> TestResult {
    AuditUser::scope(user.to_owned(), async {
        for i in 0..records {
            let id = format!("{user}-{i}");
            notes.insert(json!({"id": id, "text": "a"})).await?;
            notes.update(&id, json!({"text": "b"})).await?;
            notes.delete(&id).await?;
        }
        Ok::<(), Error>(())
    })
    .await
}

/// Checks that `plg_audits` holds exactly the churn of `users` × `records`.
async fn check_churn(audit: &AuditPlugin, users: &[String], records: usize) -> TestResult {
    let all = audit.query(&AuditQuery::new().unlimited()).await?;
    assert_eq!(all.len(), users.len() * records * 3);
    let ids: BTreeSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "entry ids are unique");
    let stats = audit.stats(&AuditQuery::new()).await?;
    for user in users {
        assert_eq!(
            stats.by_user.get(user).copied(),
            Some((records * 3) as u64),
            "{user}"
        );
        for i in 0..records {
            let history = audit
                .record_history("notes", &format!("{user}-{i}"))
                .await?;
            assert_eq!(
                history
                    .iter()
                    .map(|e| (e.operation, e.user.as_str()))
                    .collect::<Vec<_>>(),
                [
                    (AuditOperation::Insert, user.as_str()),
                    (AuditOperation::Update, user.as_str()),
                    (AuditOperation::Delete, user.as_str()),
                ]
            );
            assert_eq!(history[2].old_data, Some(json!({"text": "b"})));
        }
    }
    Ok(())
}

/// `tasks` tasks spread over `dbs` databases on one store.
async fn many_writers(t: TestStore, dbs: usize, tasks: usize, records: usize) -> TestResult {
    let mut handles = Vec::new();
    for _ in 0..dbs {
        let db = connect(&t.conn).await?;
        let audit = db.use_plugin(AuditPlugin::new()).await?;
        let notes = db.create_resource(notes()).await?;
        handles.push((db, audit, notes));
    }
    let mut joins = Vec::new();
    let mut users = Vec::new();
    for k in 0..tasks {
        let notes = handles[k % dbs].2.clone();
        let user = format!("task{k}");
        users.push(user.clone());
        joins.push(tokio::spawn(
            async move { churn(&notes, &user, records).await },
        ));
    }
    for join in joins {
        join.await.unwrap_or_else(|e| panic!("writer task: {e}"))?;
    }
    let written: u64 = handles.iter().map(|(_, a, _)| a.counters().written).sum();
    assert_eq!(written, (tasks * records * 3) as u64);
    assert!(handles.iter().all(|(_, a, _)| a.counters().failed == 0));
    check_churn(&handles[0].1, &users, records).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_memory() -> TestResult {
    many_writers(TestStore::memory("audit_tasks"), 2, 16, 4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_and_databases_on_file() -> TestResult {
    many_writers(TestStore::file("audit_tasks"), 3, 12, 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_databases_on_s3() -> TestResult {
    match TestStore::s3("audit_tasks_s3") {
        Some(t) => many_writers(t, 2, 4, 2).await,
        None => Ok(()),
    }
}

const WORKER_CONN: &str = "AUDIT_WORKER_CONN";
const WORKER_USER: &str = "AUDIT_WORKER_USER";
const WORKER_RECORDS: &str = "AUDIT_WORKER_RECORDS";
const RETENTION_DAYS: u64 = 30;

/// One worker process: churns its records and cleans up old entries while the others write.
/// Does nothing unless started by `processes_share_one_folder`.
#[tokio::test]
async fn worker_process() -> TestResult {
    let Ok(conn) = std::env::var(WORKER_CONN) else {
        return Ok(());
    };
    let user = std::env::var(WORKER_USER).unwrap_or_else(|_| panic!("{WORKER_USER}"));
    let records: usize = worker_var(WORKER_RECORDS).unwrap_or_else(|| panic!("{WORKER_RECORDS}"));
    let work = async {
        let db = connect(&ConnectionString::parse(&conn)?).await?;
        let audit = db.use_plugin(AuditPlugin::new()).await?;
        let notes = resource(&db, "notes");
        churn(&notes, &user, records / 2).await?;
        let deleted = audit
            .cleanup(Duration::from_secs(RETENTION_DAYS * 24 * 3600))
            .await?;
        churn(&notes, &format!("{user}-late"), records - records / 2).await?;
        assert_eq!(audit.counters().failed, 0);
        println!("\nAUDIT_DELETED={deleted}");
        db.disconnect().await
    };
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .unwrap_or_else(|_| panic!("worker {user} timed out"))
}

#[tokio::test]
async fn processes_share_one_folder() -> TestResult {
    const PROCESSES: usize = 3;
    const RECORDS: usize = 4;
    const OLD: usize = 10;
    let t = TestStore::file("audit_processes");
    // Old entries, stamped 100 days ago.
    {
        let clock = Arc::new(ManualClock::new(
            chrono::Utc::now() - chrono::Duration::days(100),
        ));
        let db = connect(&t.conn).await?;
        db.use_plugin(AuditPlugin::builder().clock(clock).build()?)
            .await?;
        let notes = db.create_resource(notes()).await?;
        for i in 0..OLD {
            notes
                .insert(json!({"id": format!("old-{i}"), "text": "x"}))
                .await?;
        }
        db.disconnect().await?;
    }

    let workers: Vec<TestWorker> = (0..PROCESSES)
        .map(|k| {
            TestWorker::spawn(
                "worker_process",
                [
                    (WORKER_CONN, t.conn.to_string()),
                    (WORKER_USER, format!("proc{k}")),
                    (WORKER_RECORDS, RECORDS.to_string()),
                ],
            )
            .unwrap_or_else(|e| panic!("spawn worker {k}: {e}"))
        })
        .collect();
    let mut deleted_total = 0;
    for (k, worker) in workers.into_iter().enumerate() {
        let output = worker
            .finish(Duration::from_secs(180))
            .await
            .unwrap_or_else(|e| panic!("worker {k}: {e}"));
        let deleted: u64 = output
            .reports("AUDIT_DELETED=")
            .next()
            .and_then(|n| n.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("worker {k} did not report: {}", output.stdout));
        deleted_total += deleted;
    }
    // Every old entry was deleted (by one process or, in a tie, by several).
    assert!(deleted_total >= OLD as u64, "{deleted_total}");

    let db: Database = connect(&t.conn).await?;
    let audit = db.use_plugin(AuditPlugin::new()).await?;
    let users: Vec<String> = (0..PROCESSES)
        .flat_map(|k| [format!("proc{k}"), format!("proc{k}-late")])
        .collect();
    // Nothing old is left, and every worker's operation is there exactly once.
    check_churn(&audit, &users, RECORDS / 2).await?;
    let old = audit.record_history("notes", "old-0").await?;
    assert!(old.is_empty(), "{old:?}");
    Ok(())
}
