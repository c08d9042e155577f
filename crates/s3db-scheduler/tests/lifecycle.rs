//! Construction errors, the plugin conformance suite, and stopping: nothing left running.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use s3db_core::Database;
use s3db_core::testing::TestStore;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_scheduler::{ConfigError, CronField, ExecutionStatus, HistoryQuery, Job, SchedulerPlugin};

fn noop(name: &str, schedule: &str) -> Job {
    Job::new(name, schedule, |_db: Database, _run| async { Ok(()) })
}

#[test]
fn bad_configuration_is_a_typed_error() {
    let build = |jobs: Vec<Job>| {
        let mut b = SchedulerPlugin::builder();
        for j in jobs {
            b = b.job(j);
        }
        b.build().map(|_| ())
    };
    match build(vec![
        noop("ok", "@daily"),
        noop("nightly", "0 3 * JANUARY *"),
    ]) {
        Err(ConfigError::BadSchedule { job, field, .. }) => {
            assert_eq!((job.as_str(), field), ("nightly", Some(CronField::Month)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        build(vec![noop("a", "@daily"), noop("a", "@hourly")]),
        Err(ConfigError::DuplicateJob { job }) if job == "a"
    ));
    assert!(matches!(
        build(vec![noop("a b", "@daily")]),
        Err(ConfigError::BadJob { .. })
    ));
    assert!(build(vec![noop("a", "@daily").timezone("America/New_York")]).is_ok());
    match build(vec![
        noop("ok", "@daily"),
        noop("lisbon", "0 9 * * *").timezone("Europe/Lisbom"),
    ]) {
        Err(e @ ConfigError::BadTimezone { .. }) => {
            let msg = e.to_string();
            assert!(matches!(
                &e,
                ConfigError::BadTimezone { job: Some(j), timezone, .. }
                    if j == "lisbon" && timezone == "Europe/Lisbom"
            ));
            assert!(
                msg.contains("lisbon") && msg.contains("Europe/Lisbom"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        build(vec![noop("a", "@daily").timeout(Duration::ZERO)]),
        Err(ConfigError::BadJob { .. })
    ));
    assert!(matches!(
        SchedulerPlugin::builder()
            .lock_ttl(Duration::from_millis(10))
            .build(),
        Err(ConfigError::BadSetting {
            setting: "lock_ttl",
            ..
        })
    ));
    assert!(matches!(
        SchedulerPlugin::builder()
            .history_retention(Some(Duration::from_secs(1)))
            .build(),
        Err(ConfigError::BadSetting {
            setting: "history_retention",
            ..
        })
    ));
    assert!(matches!(
        SchedulerPlugin::builder().timezone("Mars/Base").build(),
        Err(ConfigError::BadTimezone { job: None, .. })
    ));
    assert!(build(vec![noop("a", "*/5 9-17 * * MON-FRI").timezone("+05:30")]).is_ok());
    assert!(
        SchedulerPlugin::builder()
            .timezone("Europe/Lisbon")
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn conforms() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(|| {
            SchedulerPlugin::builder()
                .job(recording_job("rec", Duration::from_secs(3600), "me"))
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        }),
        resource: runs_config(),
        exercise: Arc::new(|db, _runs| {
            Box::pin(async move {
                let s = scheduler(&db);
                let e = s
                    .run_job("rec")
                    .await
                    .map_err(|e| s3db_core::Error::Refused {
                        operation: "run_job",
                        reason: e.to_string(),
                    })?;
                assert_eq!(e.status, ExecutionStatus::Success);
                Ok(())
            })
        }),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_interrupts_runs_after_the_grace_period() -> TestResult {
    let t = TestStore::memory("sched_stop_grace");
    let job = Job::new("forever", "0 0 1 1 *", |_db: Database, _run| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    })
    .timeout(Duration::from_secs(7200));
    let p = SchedulerPlugin::builder()
        .job(job)
        .stop_grace(Duration::from_millis(200))
        .build()
        .map_err(|e| s3db_core::Error::Refused {
            operation: "build",
            reason: e.to_string(),
        })?;
    let (db, _) = connect(&t.conn, p).await?;
    let s = scheduler(&db);
    let run = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.run_job("forever").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.runs_in_flight(), 1);
    let started = std::time::Instant::now();
    db.disconnect().await?;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stop waits the grace period only"
    );
    let e = run
        .await
        .map_err(|e| s3db_core::Error::Refused {
            operation: "join",
            reason: e.to_string(),
        })?
        .map_err(|e| s3db_core::Error::Refused {
            operation: "run",
            reason: e.to_string(),
        })?;
    assert_eq!(e.status, ExecutionStatus::Error);
    assert_eq!(
        e.error.as_deref(),
        Some("interrupted: the scheduler stopped")
    );
    let h = s
        .history(HistoryQuery::new().job("forever"))
        .await
        .map_err(|e| s3db_core::Error::Refused {
            operation: "history",
            reason: e.to_string(),
        })?;
    assert_eq!(
        h[0].status,
        ExecutionStatus::Error,
        "the interruption is recorded"
    );
    Ok(())
}
