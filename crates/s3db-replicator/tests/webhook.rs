//! The webhook target against a loopback HTTP server: payload and headers, retries with
//! backoff on 500, the timeout, permanent errors not retried, and failures logged then replayed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use s3db_core::Database;
use s3db_replicator::{LogStatus, Replicator, ReplicatorEvent, ReplicatorPlugin, WebhookTarget};
use serde_json::json;

async fn setup(
    test: &str,
    server: &HookServer,
    configure: impl FnOnce(Replicator) -> Replicator,
) -> s3db_core::Result<(Database, std::sync::Arc<ReplicatorPlugin>)> {
    let db = Database::connect(&format!("memory://repl-webhook/{test}")).await?;
    let replicator = configure(
        Replicator::new(
            "hook",
            WebhookTarget::new(&server.url).bearer_token("t0ken"),
        )
        .resource("users")
        .backoff(Duration::from_millis(20)),
    );
    let plugin = db
        .use_plugin(ReplicatorPlugin::builder().replicator(replicator).build()?)
        .await?;
    Ok((db, plugin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_changes_with_before_and_headers() -> TestResult {
    let server = HookServer::start().await;
    let (db, plugin) = setup("payload", &server, |r| r).await?;
    let users = db.create_resource(users()).await?;
    users.insert(json!({"id": "u1", "name": "Ann"})).await?;
    users.update("u1", json!({"age": 3})).await?;
    users.delete("u1").await?;
    users.delete("never-there").await?; // nothing changed: nothing sent
    let got = server.received();
    assert_eq!(got.len(), 3);
    let actions: Vec<_> = got.iter().map(|r| r.body["action"].clone()).collect();
    assert_eq!(actions, [json!("insert"), json!("update"), json!("delete")]);
    assert_eq!(got[0].body["data"], json!({"name": "Ann"}));
    assert_eq!(got[0].body["before"], json!(null));
    assert_eq!(got[1].body["before"], json!({"name": "Ann"}));
    assert_eq!(got[1].body["data"], json!({"name": "Ann", "age": 3}));
    assert_eq!(got[2].body["data"], json!(null));
    assert_eq!(got[2].body["before"], json!({"name": "Ann", "age": 3}));
    assert_eq!(got[2].body["resource"], json!("users"));
    assert_eq!(
        got[0].headers.get("authorization").map(String::as_str),
        Some("Bearer t0ken")
    );
    assert_eq!(
        got[0].headers.get("x-s3db-action").map(String::as_str),
        Some("insert")
    );
    assert_eq!(got[0].path, "/hook");
    assert_eq!(plugin.stats()["hook"].replicated, 3);
    let debug = format!("{plugin:?}");
    assert!(!debug.contains("t0ken"), "{debug}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_server_errors_with_backoff() -> TestResult {
    let server = HookServer::start().await;
    let (db, plugin) = setup("retries", &server, |r| r.max_retries(3)).await?;
    let users = db.create_resource(users()).await?;
    server.fail_next(2);
    let started = Instant::now();
    users.insert(json!({"id": "r1", "name": "R"})).await?;
    // 20 ms then 40 ms of backoff.
    assert!(started.elapsed() >= Duration::from_millis(60));
    let statuses: Vec<u16> = server.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let stats = plugin.stats()["hook"];
    assert_eq!((stats.replicated, stats.retried, stats.failed), (1, 2, 0));
    // More failures than retries: the write still succeeds; the failure is logged.
    let mut events = db.subscribe();
    server.fail_next(10);
    users.insert(json!({"id": "r2", "name": "R"})).await?;
    assert!(users.exists("r2").await?);
    assert_eq!(server.received().len(), 3 + 4);
    let stats = plugin.stats()["hook"];
    assert_eq!((stats.failed, stats.logged, stats.retried), (1, 1, 5));
    let failed = replicator_events(&mut events);
    assert!(
        matches!(&failed[..], [ReplicatorEvent::Failed { attempts: 4, log_entry: Some(_), error, .. }] if error.contains("500")),
        "{failed:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() -> TestResult {
    let server = HookServer::start().await;
    let (db, plugin) = setup("client-errors", &server, |r| r.max_retries(5)).await?;
    let users = db.create_resource(users()).await?;
    server.set_status(422);
    users.insert(json!({"id": "c1", "name": "C"})).await?;
    assert_eq!(server.received().len(), 1);
    let entries = plugin.log_entries(Some(LogStatus::Failed)).await?;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].attempts, entries[0].record_id.as_str()),
        (1, "c1")
    );
    assert!(entries[0].error.contains("422"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_times_out_and_the_write_still_succeeds() -> TestResult {
    let server = HookServer::start().await;
    let (db, plugin) = setup("timeout", &server, |r| {
        r.max_retries(1).timeout(Duration::from_millis(150))
    })
    .await?;
    let users = db.create_resource(users()).await?;
    server.set_delay(Duration::from_millis(1_000));
    let started = Instant::now();
    users.insert(json!({"id": "t1", "name": "T"})).await?;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(900), "took {took:?}");
    let entries = plugin.log_entries(Some(LogStatus::Failed)).await?;
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].error.contains("did not answer"),
        "{}",
        entries[0].error
    );
    assert_eq!(entries[0].attempts, 2);
    // Fast again: the replay delivers it and resolves the entry.
    server.set_delay(Duration::ZERO);
    let report = plugin.retry_failed().await?;
    assert_eq!((report.resolved, report.failed, report.skipped), (1, 0, 0));
    let resolved = plugin.log_entries(Some(LogStatus::Resolved)).await?;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].attempts, 3);
    assert!(resolved[0].resolved_at.is_some());
    assert!(
        plugin
            .log_entries(Some(LogStatus::Failed))
            .await?
            .is_empty()
    );
    assert_eq!(plugin.retry_failed().await?, Default::default());
    assert_eq!(plugin.prune_resolved().await?, 1);
    assert!(plugin.log_entries(None).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_bounds_requests_in_flight() -> TestResult {
    let server = HookServer::start().await;
    let (db, plugin) = setup("concurrency", &server, |r| r.concurrency(2)).await?;
    let users = db.create_resource(users()).await?;
    server.set_delay(Duration::from_millis(100));
    let started = Instant::now();
    for r in users
        .insert_many((0..6).map(|i| json!({"id": format!("k{i}"), "name": "k"})))
        .await
    {
        r?;
    }
    // Six requests of 100 ms, two at a time: at least three rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(plugin.stats()["hook"].replicated, 6);
    Ok(())
}
