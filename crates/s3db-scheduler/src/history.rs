//! The execution history: one record per run (or skipped tick) in `plg_job_executions`.
//!
//! The record of a scheduled run has the id `<job>.<tick in epoch seconds>` and is created
//! conditionally: creating it **is** the claim of the tick, so one tick has one record and one
//! run across every process sharing the bucket. Runs started with `run_job` get
//! `<job>.m<ulid>`.

use chrono::{DateTime, Utc};
use s3db_core::plugin::{Record, ResourceConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The internal resource of the history.
pub const EXECUTIONS_RESOURCE: &str = "plg_job_executions";
/// Its partition by job.
pub(crate) const BY_JOB: &str = "byJob";

pub(crate) fn resource_config() -> ResourceConfig {
    ResourceConfig::new(EXECUTIONS_RESOURCE)
        .attribute("job", "string|required")
        .attribute("status", "string|required")
        .attribute("trigger", "string|required")
        .attribute("scheduled_at", "string")
        .attribute("started_at", "string|required")
        .attribute("finished_at", "string")
        .attribute("duration_ms", "integer")
        .attribute("attempts", "integer")
        .attribute("error", "string")
        .attribute("owner", "string")
        .partition(BY_JOB, ["job"])
}

/// How an execution ended (or that it is still going).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExecutionStatus {
    /// Claimed and running (a record left in this state belongs to a process that died mid-run,
    /// or is being run right now).
    Running,
    /// The action returned `Ok`.
    Success,
    /// The last attempt returned an error (or the run was interrupted by `stop`).
    Error,
    /// The last attempt passed its time limit.
    Timeout,
    /// The tick came while the job's previous run was still going: not run.
    Skipped,
}

impl ExecutionStatus {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Success => "success",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => ExecutionStatus::Running,
            "success" => ExecutionStatus::Success,
            "error" => ExecutionStatus::Error,
            "timeout" => ExecutionStatus::Timeout,
            "skipped" => ExecutionStatus::Skipped,
            _ => return None,
        })
    }
}

/// What started an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// A tick of its schedule.
    Schedule,
    /// `run_job`.
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// One execution record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Execution {
    /// The record id (`<job>.<tick epoch seconds>` or `<job>.m<ulid>`).
    pub id: String,
    /// The job.
    pub job: String,
    /// How it ended.
    pub status: ExecutionStatus,
    /// What started it.
    pub trigger: Trigger,
    /// The tick (scheduled runs).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When the run (or the skip) was decided.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its duration in milliseconds.
    pub duration_ms: Option<u64>,
    /// Attempts made.
    pub attempts: u32,
    /// The last error (or why it was skipped).
    pub error: Option<String>,
    /// The process that ran it.
    pub owner: Option<String>,
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

impl Execution {
    /// Reads a record of `plg_job_executions`; `None` if it is not one.
    #[must_use]
    pub fn from_record(r: &Record) -> Option<Self> {
        let d = r.data();
        let text = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            id: r.id().to_owned(),
            job: text("job")?,
            status: ExecutionStatus::parse(d.get("status")?.as_str()?)?,
            trigger: match d.get("trigger").and_then(Value::as_str) {
                Some("manual") => Trigger::Manual,
                _ => Trigger::Schedule,
            },
            scheduled_at: time(d.get("scheduled_at")),
            started_at: time(d.get("started_at"))?,
            finished_at: time(d.get("finished_at")),
            duration_ms: d.get("duration_ms").and_then(Value::as_u64),
            attempts: d
                .get("attempts")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            error: text("error"),
            owner: text("owner"),
        })
    }
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The claim document of a new execution.
pub(crate) fn started(
    job: &str,
    trigger: Trigger,
    scheduled_at: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    owner: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("job".into(), job.into());
    m.insert("status".into(), ExecutionStatus::Running.as_str().into());
    m.insert("trigger".into(), trigger.as_str().into());
    if let Some(t) = scheduled_at {
        m.insert("scheduled_at".into(), rfc3339(t).into());
    }
    m.insert("started_at".into(), rfc3339(started_at).into());
    m.insert("attempts".into(), 0.into());
    m.insert("owner".into(), owner.into());
    m
}

/// The changes recording how an execution ended.
pub(crate) fn finished(
    status: ExecutionStatus,
    finished_at: DateTime<Utc>,
    duration_ms: u64,
    attempts: u32,
    error: Option<&str>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("status".into(), status.as_str().into());
    m.insert("finished_at".into(), rfc3339(finished_at).into());
    m.insert("duration_ms".into(), duration_ms.into());
    m.insert("attempts".into(), attempts.into());
    if let Some(e) = error {
        m.insert("error".into(), e.into());
    }
    m
}

/// Filters of [`crate::SchedulerPlugin::history`]; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// Only this job (reads only its partition).
    pub job: Option<String>,
    /// Only this status.
    pub status: Option<ExecutionStatus>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (the newest first).
    pub limit: Option<usize>,
}

impl HistoryQuery {
    /// Everything.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Only the job `job`.
    #[must_use]
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = Some(job.into());
        self
    }

    /// Only executions with `status`.
    #[must_use]
    pub fn status(mut self, status: ExecutionStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only executions started at or after `t`.
    #[must_use]
    pub fn since(mut self, t: DateTime<Utc>) -> Self {
        self.since = Some(t);
        self
    }

    /// Only executions started before `t`.
    #[must_use]
    pub fn until(mut self, t: DateTime<Utc>) -> Self {
        self.until = Some(t);
        self
    }

    /// At most `n`, newest first.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    pub(crate) fn matches(&self, e: &Execution) -> bool {
        self.job.as_ref().is_none_or(|j| *j == e.job)
            && self.status.is_none_or(|s| s == e.status)
            && self.since.is_none_or(|t| e.started_at >= t)
            && self.until.is_none_or(|t| e.started_at < t)
    }
}
