//! Several OS processes (this test binary re-executed) and many tasks write different records of
//! one resource at once, on one bucket: the index ends up complete and exact.

mod common;

use std::time::{Duration, Instant};

use common::*;
use s3db_core::testing::{FaultPlan, FaultyStore, TestStore, TestWorker};
use s3db_core::{ConnectionString, Resource};
use serde_json::json;

const ENV_CONN: &str = "S3DB_FULLTEXT_WORKER_CONN";
const ENV_TAG: &str = "S3DB_FULLTEXT_WORKER_TAG";
const ENV_N: &str = "S3DB_FULLTEXT_WORKER_N";

/// Writes `n` records tagged `tag` from many tasks: inserts (single and bulk), then updates of
/// half of them and deletes of a few.
async fn write_records(articles: &Resource, tag: &str, n: usize) -> TestResult {
    let half = n / 2;
    let singles = (0..half).map(|i| {
        let articles = articles.clone();
        let id = format!("{tag}-{i}");
        async move {
            articles
                .insert(json!({"id": id, "title": format!("{tag} shared rust"), "body": WORDS[i % WORDS.len()]}))
                .await
        }
    });
    let bulk: Vec<_> = (half..n)
        .map(|i| json!({"id": format!("{tag}-{i}"), "title": format!("{tag} shared bucket"), "body": "bulk storage index"}))
        .collect();
    let (singles, bulk) = tokio::join!(
        futures::future::join_all(singles),
        articles.insert_many(bulk)
    );
    for r in singles.into_iter().chain(bulk) {
        r?;
    }
    let updates = (0..n).step_by(2).map(|i| {
        let articles = articles.clone();
        let id = format!("{tag}-{i}");
        async move {
            articles
                .update(&id, json!({"body": "updated zebra search"}))
                .await
        }
    });
    for r in futures::future::join_all(updates).await {
        r?;
    }
    let gone: Vec<String> = (0..n).step_by(5).map(|i| format!("{tag}-{i}")).collect();
    for r in articles.delete_many(&gone).await {
        r?;
    }
    Ok(())
}

/// The worker: does nothing unless started by a test below.
#[tokio::test]
async fn worker_process() -> TestResult {
    let (Ok(conn), Ok(tag), Ok(n)) = (
        std::env::var(ENV_CONN),
        std::env::var(ENV_TAG),
        std::env::var(ENV_N),
    ) else {
        return Ok(());
    };
    let conn = ConnectionString::parse(&conn)?;
    let n: usize = n.parse().unwrap_or(10);
    let (_db, articles) = open(&conn, plugin()).await?;
    write_records(&articles, &tag, n).await
}

fn spawn_worker(conn: &ConnectionString, tag: &str, n: usize) -> std::io::Result<TestWorker> {
    TestWorker::spawn(
        "worker_process",
        [
            (ENV_CONN, conn.to_string_with_secrets()),
            (ENV_TAG, tag.to_owned()),
            (ENV_N, n.to_string()),
        ],
    )
}

/// Waits for every worker (killing those past the deadline); the failures.
async fn wait_all(workers: Vec<TestWorker>, deadline: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut failures = Vec::new();
    for worker in workers {
        if let Err(e) = worker
            .finish(deadline.saturating_sub(start.elapsed()))
            .await
        {
            failures.push(e.to_string());
        }
    }
    failures
}

async fn processes_and_tasks(t: TestStore, processes: usize, n: usize) -> TestResult {
    // The resource and the index exist before the workers start.
    let (db, articles) = open(&t.conn, plugin()).await?;
    let children = (0..processes)
        .map(|p| spawn_worker(&t.conn, &format!("p{p}"), n))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| s3db_core::Error::Refused {
            operation: "spawn worker",
            reason: e.to_string(),
        })?;
    // Meanwhile this process writes too, from many tasks.
    let local = write_records(&articles, "local", n).await;
    let failures = wait_all(children, Duration::from_secs(240)).await;
    local?;
    assert!(failures.is_empty(), "workers failed: {failures:?}");

    let ft = fulltext(&db);
    let writers = processes + 1;
    let deleted_per_writer = n.div_ceil(5);
    let expected = writers * (n - deleted_per_writer);
    assert_eq!(articles.count().await? as usize, expected);
    assert_eq!(
        ft.search(
            "articles",
            s3db_fulltext::SearchQuery::new("shared").limit(10_000)
        )
        .await?
        .len(),
        expected
    );
    assert_index_matches(&db, &articles).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_and_many_tasks_on_a_folder() -> TestResult {
    processes_and_tasks(TestStore::file("ft_processes"), 2, 24).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_the_s3_server() -> TestResult {
    match TestStore::s3("ft_processes_s3") {
        Some(t) => processes_and_tasks(t, 2, 5).await,
        None => Ok(()),
    }
}

/// Two databases (each with its own plugin instance, so no shared group commit) race updates
/// and deletes of the *same* records: the claim/finish protocol leaves the index equal to each
/// record's last state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_on_the_same_records() -> TestResult {
    let t = TestStore::file("ft_same_records");
    // Every request takes a few milliseconds: the races' windows are wide open.
    let slow = |conn: &ConnectionString| {
        s3db_core::Database::builder()
            .connection(conn.clone())
            .store_layer(|inner| {
                std::sync::Arc::new(FaultyStore::new(
                    inner,
                    FaultPlan::new().latency(Duration::from_millis(3)),
                ))
            })
            .plugin(plugin())
            .connect()
    };
    let db_a = slow(&t.conn).await?;
    let articles_a = db_a.create_resource(common::articles()).await?;
    let db_b = slow(&t.conn).await?;
    let articles_b = db_b.create_resource(common::articles()).await?;
    for i in 0..4 {
        articles_a
            .insert(json!({"id": format!("s{i}"), "title": "start", "body": "initial"}))
            .await?;
    }
    let round = |articles: Resource, writer: usize| async move {
        for step in 0..12 {
            let id = format!("s{}", (step + writer) % 4);
            let body = format!(
                "{} {}",
                WORDS[(step * 7 + writer * 3) % WORDS.len()],
                WORDS[(step + writer) % WORDS.len()]
            );
            if step % 5 == 4 {
                articles.delete(&id).await?;
                articles
                    .upsert(
                        &id,
                        json!({"title": format!("again {writer}"), "body": body}),
                    )
                    .await?;
            } else {
                articles
                    .upsert(
                        &id,
                        json!({"title": format!("writer{writer} step"), "body": body}),
                    )
                    .await?;
            }
        }
        Ok::<(), s3db_core::Error>(())
    };
    let tasks = vec![
        tokio::spawn(round(articles_a.clone(), 0)),
        tokio::spawn(round(articles_b.clone(), 1)),
        tokio::spawn(round(articles_a.clone(), 2)),
        tokio::spawn(round(articles_b.clone(), 3)),
    ];
    for task in tasks {
        task.await.map_err(|e| s3db_core::Error::Refused {
            operation: "join",
            reason: e.to_string(),
        })??;
    }
    assert_index_matches(&db_a, &articles_a).await
}
