//! Running jobs: run_job, retries with backoff, timeouts, errors, scheduled ticks, overlap,
//! runtime changes, history filters and events (memory store).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use s3db_core::Database;
use s3db_core::plugin::CustomEvent;
use s3db_core::testing::TestStore;
use s3db_scheduler::{ExecutionStatus, HistoryQuery, Job, SchedulerError, SchedulerEvent, Trigger};

const SECOND: Duration = Duration::from_secs(1);
const NEVER: &str = "0 0 1 1 *";

fn events_of(
    rx: &mut tokio::sync::broadcast::Receiver<s3db_core::plugin::Event>,
) -> Vec<SchedulerEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Some(e) = SchedulerEvent::from_event(&e) {
            out.push(e);
        }
    }
    out
}

#[tokio::test]
async fn run_job_records_success_history_and_events() -> TestResult {
    let t = TestStore::memory("sched_run_job");
    let (db, runs) = connect(
        &t.conn,
        plugin(vec![recording_job("a", SECOND, "me").enabled(false)]),
    )
    .await?;
    let s = scheduler(&db);
    let mut events = db.subscribe();
    let e = s
        .run_job("a")
        .await
        .map_err(|e| s3db_core::Error::Refused {
            operation: "test",
            reason: e.to_string(),
        })?;
    assert_eq!(e.status, ExecutionStatus::Success);
    assert_eq!(e.trigger, Trigger::Manual);
    assert_eq!(e.attempts, 1);
    assert!(e.id.starts_with("a.m"), "{}", e.id);
    assert_eq!(runs.count().await?, 1);
    let h = s
        .history(HistoryQuery::new().job("a"))
        .await
        .map_err(refused)?;
    assert_eq!(
        h,
        vec![e.clone()],
        "the returned execution is the stored one"
    );
    assert_eq!(h[0].status, ExecutionStatus::Success);
    assert!(h[0].duration_ms.is_some());
    let ev = events_of(&mut events);
    assert!(
        matches!(&ev[0], SchedulerEvent::JobStarted { job, trigger: Trigger::Manual, .. } if job == "a")
    );
    assert!(matches!(&ev[1], SchedulerEvent::JobCompleted { job, attempts: 1, .. } if job == "a"));
    assert_eq!(ev[1].name(), "scheduler.job_completed");
    // Filters.
    s.run_job("a").await.map_err(refused)?;
    assert_eq!(
        s.history(HistoryQuery::new().job("a"))
            .await
            .map_err(refused)?
            .len(),
        2
    );
    assert_eq!(
        s.history(HistoryQuery::new().job("a").limit(1))
            .await
            .map_err(refused)?
            .len(),
        1
    );
    assert_eq!(
        s.history(HistoryQuery::new().status(ExecutionStatus::Error))
            .await
            .map_err(refused)?
            .len(),
        0
    );
    assert_eq!(
        s.history(HistoryQuery::new().job("b"))
            .await
            .map_err(refused)?
            .len(),
        0
    );
    assert_eq!(
        s.history(HistoryQuery::new().since(chrono::Utc::now()))
            .await
            .map_err(refused)?
            .len(),
        0
    );
    assert_eq!(
        s.history(HistoryQuery::new().until(chrono::Utc::now()))
            .await
            .map_err(refused)?
            .len(),
        2
    );
    assert!(matches!(
        s.run_job("nope").await,
        Err(SchedulerError::UnknownJob { .. })
    ));
    // Clean-up of old records.
    assert_eq!(
        s.cleanup_history(Duration::from_secs(3600))
            .await
            .map_err(refused)?,
        0
    );
    assert_eq!(s.cleanup_history(Duration::ZERO).await.map_err(refused)?, 2);
    assert!(
        s.history(HistoryQuery::new())
            .await
            .map_err(refused)?
            .is_empty()
    );
    db.disconnect().await
}

fn refused(e: SchedulerError) -> s3db_core::Error {
    s3db_core::Error::Refused {
        operation: "scheduler test",
        reason: e.to_string(),
    }
}

#[tokio::test]
async fn fails_twice_then_succeeds_with_backoff() -> TestResult {
    let t = TestStore::memory("sched_retries");
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let job = Job::new("flaky", NEVER, move |_db: Database, run| {
        let c = Arc::clone(&c);
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            if run.attempt <= 2 {
                Err(format!("failure {}", run.attempt).into())
            } else {
                Ok(())
            }
        }
    })
    .retries(3)
    .retry_backoff(Duration::from_millis(100));
    let (db, _) = connect(&t.conn, plugin(vec![job])).await?;
    let mut events = db.subscribe();
    let s = scheduler(&db);
    let started = Instant::now();
    let e = s.run_job("flaky").await.map_err(refused)?;
    let took = started.elapsed();
    assert_eq!(e.status, ExecutionStatus::Success);
    assert_eq!(e.attempts, 3);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no attempt after the success"
    );
    assert!(
        took >= Duration::from_millis(300),
        "backoff 100 ms then 200 ms: took {took:?}"
    );
    let retrying: Vec<(u32, u64, String)> = events_of(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            SchedulerEvent::JobRetrying {
                attempt,
                delay_ms,
                error,
                ..
            } => Some((attempt, delay_ms, error)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retrying,
        vec![
            (1, 100, "failure 1".to_owned()),
            (2, 200, "failure 2".to_owned())
        ]
    );
    let stored = &s
        .history(HistoryQuery::new().job("flaky"))
        .await
        .map_err(refused)?[0];
    assert_eq!(
        (stored.status, stored.attempts),
        (ExecutionStatus::Success, 3)
    );
    db.disconnect().await
}

#[tokio::test]
async fn errors_and_timeouts_are_recorded() -> TestResult {
    let t = TestStore::memory("sched_errors");
    let slow_calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&slow_calls);
    let slow = Job::new("slow", NEVER, move |_db: Database, _run| {
        let c = Arc::clone(&c);
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
    })
    .timeout(Duration::from_millis(150))
    .retries(1)
    .retry_backoff(Duration::from_millis(10));
    let broken = Job::new("broken", NEVER, |_db: Database, _run| async {
        Err("disk on fire".into())
    });
    let panics = Job::new("panics", NEVER, |_db: Database, run| async move {
        assert!(run.attempt > 5, "boom");
        Ok(())
    });
    let (db, _) = connect(&t.conn, plugin(vec![slow, broken, panics])).await?;
    let mut events = db.subscribe();
    let s = scheduler(&db);
    let started = Instant::now();
    let e = s.run_job("slow").await.map_err(refused)?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout cancels the attempt"
    );
    assert_eq!(e.status, ExecutionStatus::Timeout);
    assert_eq!(e.attempts, 2);
    assert_eq!(slow_calls.load(Ordering::SeqCst), 2);
    assert!(
        e.error.as_deref().is_some_and(|m| m.contains("timed out")),
        "{:?}",
        e.error
    );
    let e = s.run_job("broken").await.map_err(refused)?;
    assert_eq!(
        (e.status, e.error.as_deref()),
        (ExecutionStatus::Error, Some("disk on fire"))
    );
    let e = s.run_job("panics").await.map_err(refused)?;
    assert_eq!(e.status, ExecutionStatus::Error);
    let errors: Vec<_> = events_of(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            SchedulerEvent::JobError { job, status, .. } => Some((job, status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            ("slow".to_owned(), ExecutionStatus::Timeout),
            ("broken".to_owned(), ExecutionStatus::Error),
            ("panics".to_owned(), ExecutionStatus::Error)
        ]
    );
    assert_eq!(
        s.history(HistoryQuery::new().status(ExecutionStatus::Timeout))
            .await
            .map_err(refused)?
            .len(),
        1
    );
    assert_eq!(
        s.history(HistoryQuery::new().status(ExecutionStatus::Error))
            .await
            .map_err(refused)?
            .len(),
        2
    );
    db.disconnect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_ticks_run_once_each() -> TestResult {
    let t = TestStore::memory("sched_ticks");
    let (db, runs) = connect(&t.conn, plugin(vec![recording_job("tick", SECOND, "me")])).await?;
    let s = scheduler(&db);
    assert!(s.job_status("tick").map_err(refused)?.next_run.is_some());
    tokio::time::sleep(Duration::from_millis(3600)).await;
    db.disconnect().await?;
    let n = assert_once_per_tick(&s, &runs, "tick").await;
    assert!(n >= 2, "an every-second job ran {n} times in 3.6 s");
    let h = scheduled(&s, "tick").await;
    for e in &h {
        let t = e.scheduled_at.unwrap_or_default();
        assert_eq!(t.timestamp_subsec_nanos(), 0, "ticks are whole seconds");
        assert!(e.started_at >= t, "not run before its tick");
        assert!(
            e.started_at - t < chrono::Duration::seconds(2),
            "run soon after its tick"
        );
    }
    let status = s.job_status("tick").map_err(refused)?;
    assert_eq!(
        status.last_execution.map(|e| e.status),
        Some(ExecutionStatus::Success)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_during_the_previous_run_is_skipped() -> TestResult {
    let t = TestStore::memory("sched_overlap");
    let (current, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, m) = (Arc::clone(&current), Arc::clone(&max));
    let job = Job::new("long", SECOND, move |_db: Database, _run| {
        let (c, m) = (Arc::clone(&c), Arc::clone(&m));
        async move {
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2300)).await;
            c.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let (db, _) = connect(&t.conn, plugin(vec![job])).await?;
    let s = scheduler(&db);
    let mut events = db.subscribe();
    tokio::time::sleep(Duration::from_millis(5200)).await;
    // Wait for the run going on before stopping.
    db.disconnect().await?;
    assert_eq!(
        max.load(Ordering::SeqCst),
        1,
        "runs of one job never overlap"
    );
    let h = scheduled(&s, "long").await;
    let skipped = h
        .iter()
        .filter(|e| e.status == ExecutionStatus::Skipped)
        .count();
    let ran = h
        .iter()
        .filter(|e| e.status == ExecutionStatus::Success)
        .count();
    assert!(
        ran >= 1 && skipped >= 2,
        "ran {ran}, skipped {skipped}: {h:#?}"
    );
    for e in h.iter().filter(|e| e.status == ExecutionStatus::Skipped) {
        assert_eq!(e.error.as_deref(), Some("the previous run was still going"));
        assert_eq!(e.attempts, 0);
    }
    let skipped_events = events_of(&mut events)
        .into_iter()
        .filter(|e| matches!(e, SchedulerEvent::JobSkipped { .. }))
        .count();
    assert_eq!(skipped_events, skipped);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_does_not_overlap_a_running_job() -> TestResult {
    let t = TestStore::memory("sched_run_overlap");
    let job = Job::new("slow", NEVER, |_db: Database, _run| async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok(())
    });
    let (db, _) = connect(&t.conn, plugin(vec![job])).await?;
    let s = scheduler(&db);
    let first = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.run_job("slow").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.job_status("slow").map_err(refused)?.running, 1);
    assert_eq!(s.runs_in_flight(), 1);
    assert!(matches!(
        s.run_job("slow").await,
        Err(SchedulerError::AlreadyRunning { .. })
    ));
    let first = first.await.map_err(|e| s3db_core::Error::Refused {
        operation: "join",
        reason: e.to_string(),
    })?;
    assert_eq!(first.map_err(refused)?.status, ExecutionStatus::Success);
    assert_eq!(
        s.run_job("slow").await.map_err(refused)?.status,
        ExecutionStatus::Success
    );
    db.disconnect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_change_at_runtime() -> TestResult {
    let t = TestStore::memory("sched_runtime");
    let (db, runs) = connect(&t.conn, plugin(vec![])).await?;
    let s = scheduler(&db);
    s.add_job(recording_job("late", SECOND, "me"))
        .await
        .map_err(refused)?;
    assert!(matches!(
        s.add_job(recording_job("late", SECOND, "me")).await,
        Err(SchedulerError::Config(
            s3db_scheduler::ConfigError::DuplicateJob { .. }
        ))
    ));
    assert!(matches!(
        s.add_job(Job::new("bad", "* * * *", |_db, _run| async { Ok(()) }))
            .await,
        Err(SchedulerError::Config(
            s3db_scheduler::ConfigError::BadSchedule { .. }
        ))
    ));
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let ran = runs.count().await?;
    assert!(ran >= 1, "an added job runs");
    s.disable_job("late").await.map_err(refused)?;
    assert!(!s.job_status("late").map_err(refused)?.enabled);
    assert_eq!(s.job_status("late").map_err(refused)?.next_run, None);
    // Let a run that may have been going on finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_disable = runs.count().await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        runs.count().await?,
        at_disable,
        "a disabled job does not run"
    );
    s.enable_job("late").await.map_err(refused)?;
    s.enable_job("late").await.map_err(refused)?; // twice is fine: one registration
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let after_enable = runs.count().await?;
    assert!(after_enable > at_disable, "an enabled job runs again");
    s.remove_job("late").await.map_err(refused)?;
    assert!(matches!(
        s.job_status("late"),
        Err(SchedulerError::UnknownJob { .. })
    ));
    assert!(matches!(
        s.remove_job("late").await,
        Err(SchedulerError::UnknownJob { .. })
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_remove = runs.count().await?;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(runs.count().await?, at_remove, "a removed job does not run");
    db.disconnect().await?;
    assert_once_per_tick(&s, &runs, "late").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_databases_in_one_process_run_each_tick_once() -> TestResult {
    let t = TestStore::memory("sched_many_tasks");
    let mut dbs = Vec::new();
    for i in 0..5 {
        dbs.push(
            connect(
                &t.conn,
                plugin(vec![recording_job("shared", SECOND, &format!("db{i}"))]),
            )
            .await?,
        );
    }
    tokio::time::sleep(Duration::from_millis(4200)).await;
    for (db, _) in &dbs {
        db.disconnect().await?;
    }
    let (db, runs) = &dbs[0];
    let n = assert_once_per_tick(&scheduler(db), runs, "shared").await;
    assert!(n >= 3, "5 schedulers ran {n} ticks in 4.2 s");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_zone_job_runs_each_tick_once_across_databases() -> TestResult {
    let t = TestStore::memory("sched_named_zone");
    let zoned = |owner: &str| recording_job("lisbon", SECOND, owner).timezone("Europe/Lisbon");
    let a = connect(&t.conn, plugin(vec![zoned("a")])).await?;
    let b = connect(&t.conn, plugin(vec![zoned("b")])).await?;
    let status = scheduler(&a.0).job_status("lisbon").map_err(refused)?;
    assert_eq!(status.zone.to_string(), "Europe/Lisbon");
    assert!(status.next_run.is_some());
    tokio::time::sleep(Duration::from_millis(3600)).await;
    a.0.disconnect().await?;
    b.0.disconnect().await?;
    let s = scheduler(&a.0);
    let n = assert_once_per_tick(&s, &a.1, "lisbon").await;
    assert!(
        n >= 2,
        "a named-zone every-second job ran {n} times in 3.6 s"
    );
    for e in scheduled(&s, "lisbon").await {
        let tick = e.scheduled_at.unwrap_or_default();
        assert_eq!(tick.timestamp_subsec_nanos(), 0, "ticks are whole seconds");
        assert!(e.started_at >= tick, "not run before its tick");
        assert!(e.started_at - tick < chrono::Duration::seconds(2));
    }
    Ok(())
}
