//! Helpers shared by the scheduler's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use s3db_core::{ConnectionString, Database, Resource, ResourceConfig, Result};
use s3db_scheduler::{Execution, ExecutionStatus, HistoryQuery, Job, SchedulerPlugin, Trigger};
use serde_json::json;

pub type TestResult = Result<()>;

/// The user resource where test actions record each run they make.
pub fn runs_config() -> ResourceConfig {
    ResourceConfig::new("runs")
        .attribute("job", "string")
        .attribute("tick", "string")
        .attribute("owner", "string")
}

/// A job that records each run in `runs` (the tick it ran for and who ran it).
pub fn recording_job(name: &str, every: Duration, owner: &str) -> Job {
    let owner = owner.to_owned();
    let job = name.to_owned();
    Job::new(name, every, move |db: Database, run| {
        let (owner, job) = (owner.clone(), job.clone());
        async move {
            let runs = db.resource("runs").ok_or("no runs resource")?;
            let tick = run
                .scheduled_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "manual".to_owned());
            runs.insert(json!({"job": job, "tick": tick, "owner": owner}))
                .await?;
            Ok(())
        }
    })
}

pub fn plugin(jobs: Vec<Job>) -> SchedulerPlugin {
    let mut b = SchedulerPlugin::builder()
        .lock_ttl(Duration::from_secs(2))
        .stop_grace(Duration::from_secs(3));
    for j in jobs {
        b = b.job(j);
    }
    b.build().unwrap_or_else(|e| panic!("plugin config: {e}"))
}

pub async fn connect(conn: &ConnectionString, p: SchedulerPlugin) -> Result<(Database, Resource)> {
    let db = Database::builder()
        .connection(conn.clone())
        .plugin(p)
        .connect()
        .await?;
    let runs = db.create_resource(runs_config()).await?;
    Ok((db, runs))
}

pub fn scheduler(db: &Database) -> std::sync::Arc<SchedulerPlugin> {
    db.plugin::<SchedulerPlugin>()
        .unwrap_or_else(|| panic!("scheduler installed"))
}

/// Runs recorded by actions, per (job, tick).
pub async fn runs_per_tick(runs: &Resource) -> Result<BTreeMap<(String, String), Vec<String>>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in runs.list().await? {
        let d = r.data();
        let get = |k: &str| {
            d.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        out.entry((get("job"), get("tick")))
            .or_default()
            .push(get("owner"));
    }
    Ok(out)
}

/// Scheduled executions of `job`.
pub async fn scheduled(p: &SchedulerPlugin, job: &str) -> Vec<Execution> {
    p.history(HistoryQuery::new().job(job))
        .await
        .unwrap_or_else(|e| panic!("history: {e}"))
        .into_iter()
        .filter(|e| e.trigger == Trigger::Schedule)
        .collect()
}

/// Asserts every tick of `job` ran exactly once and matches its history: one record per tick,
/// one recorded run per successful record, nothing else. Returns the number of ticks run.
pub async fn assert_once_per_tick(p: &SchedulerPlugin, runs: &Resource, job: &str) -> usize {
    let per_tick = runs_per_tick(runs)
        .await
        .unwrap_or_else(|e| panic!("runs: {e}"));
    for ((j, tick), owners) in &per_tick {
        assert_eq!(
            owners.len(),
            1,
            "{j} tick {tick} ran {} times: {owners:?}",
            owners.len()
        );
    }
    let history = scheduled(p, job).await;
    let mut ticks = std::collections::BTreeSet::new();
    for e in &history {
        let t = e
            .scheduled_at
            .unwrap_or_else(|| panic!("{} has no tick", e.id));
        assert!(ticks.insert(t), "tick {t} twice in the history");
        assert_eq!(e.id, format!("{job}.{}", t.timestamp()));
    }
    let succeeded: Vec<_> = history
        .iter()
        .filter(|e| e.status == ExecutionStatus::Success)
        .collect();
    let ran: usize = per_tick.keys().filter(|(j, _)| j == job).count();
    assert_eq!(ran, succeeded.len(), "one recorded run per successful tick");
    for e in &succeeded {
        let tick = e.scheduled_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        assert!(
            per_tick.contains_key(&(job.to_owned(), tick.clone())),
            "successful tick {tick} has its run"
        );
    }
    ran
}

/// Whether a thread of the scheduler's clock is alive in this process (Linux).
pub fn timer_threads() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "s3db-scheduler-")
        .count()
}
