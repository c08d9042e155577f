//! The plugin's own events, broadcast as `Event::Plugin { plugin: "scheduler", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with
//! [`SchedulerEvent::from_event`](s3db_core::plugin::CustomEvent::from_event).

use chrono::{DateTime, Utc};
use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

use crate::history::{ExecutionStatus, Trigger};

/// What the scheduler reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// A run began (this process claimed the tick, or `run_job` was called).
    JobStarted {
        /// The job.
        job: String,
        /// Its execution record.
        execution_id: String,
        /// The tick (scheduled runs).
        scheduled_at: Option<DateTime<Utc>>,
        /// What started it.
        trigger: Trigger,
    },
    /// A run succeeded.
    JobCompleted {
        /// The job.
        job: String,
        /// Its execution record.
        execution_id: String,
        /// How long it took, retries included.
        duration_ms: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// An attempt failed and will be retried after `delay_ms`.
    JobRetrying {
        /// The job.
        job: String,
        /// Its execution record.
        execution_id: String,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// Its error.
        error: String,
        /// The pause before the next attempt.
        delay_ms: u64,
    },
    /// A run failed: every attempt erred or timed out (or `stop` interrupted it).
    JobError {
        /// The job.
        job: String,
        /// Its execution record.
        execution_id: String,
        /// [`ExecutionStatus::Error`] or [`ExecutionStatus::Timeout`].
        status: ExecutionStatus,
        /// The last error.
        error: String,
        /// Attempts made.
        attempts: u32,
        /// How long it took.
        duration_ms: u64,
    },
    /// A tick came while the job's previous run was still going; it was not run.
    JobSkipped {
        /// The job.
        job: String,
        /// Its execution record (status `skipped`).
        execution_id: String,
        /// The tick.
        scheduled_at: DateTime<Utc>,
    },
}

impl CustomEvent for SchedulerEvent {
    /// The custom event name (`scheduler.job_started`, …).
    fn name(&self) -> &'static str {
        match self {
            SchedulerEvent::JobStarted { .. } => "scheduler.job_started",
            SchedulerEvent::JobCompleted { .. } => "scheduler.job_completed",
            SchedulerEvent::JobRetrying { .. } => "scheduler.job_retrying",
            SchedulerEvent::JobError { .. } => "scheduler.job_error",
            SchedulerEvent::JobSkipped { .. } => "scheduler.job_skipped",
        }
    }
}
