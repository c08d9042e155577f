//! Jobs, the plugin builder, and their validation.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use s3db_core::Database;

use crate::SchedulerPlugin;
use crate::schedule::{CronField, Schedule, ScheduleSpec, Zone, parse_zone, utc};

/// Default time limit of one attempt of a job (as the original: 60 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default pause before the first retry; it doubles for each further retry.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between two attempts.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(300);
/// Default lease of a job's run lock (renewed every third of it while the job runs).
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);
/// Shortest run-lock lease accepted.
pub const MIN_LOCK_TTL: Duration = Duration::from_millis(300);
/// Default retention of the execution history (as the original: 30 days).
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Shortest history retention accepted: an execution record is also the claim of its tick, so
/// it must outlive any delay between processes noticing the same tick.
pub const MIN_HISTORY_RETENTION: Duration = Duration::from_secs(60);
/// Default interval of the history clean-up (as the original: 24 h).
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Default time `stop` lets running jobs finish before interrupting them.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Longest job name accepted.
pub const MAX_JOB_NAME: usize = 64;

/// What a job's action returns: `Ok(())`, or any error (`?` works on s3db errors and every
/// `std::error::Error`; `Err("message".into())` too).
pub type ActionResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

type Action = Arc<dyn Fn(Database, RunInfo) -> BoxFuture<'static, ActionResult> + Send + Sync>;

/// What an action is told about its run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunInfo {
    /// The job's name.
    pub job: String,
    /// The execution's id (the record in `plg_job_executions`).
    pub execution_id: String,
    /// The tick it runs for; `None` for a run started with `run_job`.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// A job: a name, a schedule and an async action receiving the database.
///
/// ```
/// use s3db_scheduler::Job;
/// use std::time::Duration;
///
/// let job = Job::new("nightly-cleanup", "0 3 * * *", |db, _run| async move {
///     let _ = db.resource("sessions"); // … your work …
///     Ok(())
/// })
/// .timeout(Duration::from_secs(300))
/// .retries(2)
/// .timezone("+02:00");
/// # let _ = job;
/// ```
#[derive(Clone)]
pub struct Job {
    pub(crate) name: String,
    pub(crate) spec: ScheduleSpec,
    pub(crate) timezone: Option<String>,
    pub(crate) action: Action,
    pub(crate) enabled: bool,
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) description: Option<String>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("schedule", &self.spec)
            .field("timezone", &self.timezone)
            .field("enabled", &self.enabled)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_backoff", &self.retry_backoff)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job named `name` (ASCII letters, digits, `-`, `_`; up to [`MAX_JOB_NAME`]) running
    /// `action` on `schedule`: a 5-field cron expression or `@hourly`-style name (`&str`), or an
    /// aligned interval (`Duration`, see [`ScheduleSpec::Every`]). Enabled, timeout
    /// [`DEFAULT_TIMEOUT`], no retries. Validated when the plugin is built (or the job added).
    pub fn new<F, Fut>(
        name: impl Into<String>,
        schedule: impl Into<ScheduleSpec>,
        action: F,
    ) -> Self
    where
        F: Fn(Database, RunInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActionResult> + Send + 'static,
    {
        Self {
            name: name.into(),
            spec: schedule.into(),
            timezone: None,
            action: Arc::new(move |db, run| Box::pin(action(db, run))),
            enabled: true,
            timeout: DEFAULT_TIMEOUT,
            retries: 0,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            description: None,
        }
    }

    /// The job's time zone: `UTC`, a fixed offset such as `+02:00`, or an IANA zone name such as
    /// `Europe/Lisbon` (default: the plugin's).
    #[must_use]
    pub fn timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = Some(timezone.into());
        self
    }

    /// Whether it runs on its schedule (default `true`); `run_job` runs it either way.
    #[must_use]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Time limit of one attempt (default [`DEFAULT_TIMEOUT`]); the attempt is cancelled when it
    /// passes.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts after a failed or timed-out first one (default 0).
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Pause before the first retry (default [`DEFAULT_RETRY_BACKOFF`]); doubled for each
    /// further retry, up to [`MAX_RETRY_BACKOFF`].
    #[must_use]
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// A description, for people.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The job's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Validates the job in the plugin's default time zone.
    pub(crate) fn validate(self, default_tz: Zone) -> Result<JobDef, ConfigError> {
        check_name(&self.name)?;
        let offset = match &self.timezone {
            None => default_tz,
            Some(tz) => parse_zone(tz).map_err(|reason| ConfigError::BadTimezone {
                job: Some(self.name.clone()),
                timezone: tz.clone(),
                reason,
            })?,
        };
        if self.timeout.is_zero() {
            return Err(ConfigError::BadJob {
                job: self.name,
                reason: "the timeout must be above zero".to_owned(),
            });
        }
        let schedule = Schedule::new(&self.name, self.spec.clone(), offset)?;
        Ok(JobDef {
            job: self,
            schedule,
        })
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| {
        Err(ConfigError::BadJob {
            job: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() || name.len() > MAX_JOB_NAME {
        return bad("a job name has 1 to 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad("a job name has only ASCII letters, digits, '-' and '_'");
    }
    Ok(())
}

/// A validated job.
#[derive(Debug, Clone)]
pub(crate) struct JobDef {
    pub(crate) job: Job,
    pub(crate) schedule: Schedule,
}

/// A configuration mistake, naming what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A schedule that does not parse or never fires.
    #[error("job {job}: bad schedule {schedule:?}{}: {reason}", field.map(|f| format!(" (the {f} field)")).unwrap_or_default())]
    BadSchedule {
        /// The job.
        job: String,
        /// The schedule as given.
        schedule: String,
        /// The field at fault, when one is.
        field: Option<CronField>,
        /// What is wrong.
        reason: String,
    },
    /// A time zone that is not UTC, a fixed offset or a known IANA zone name.
    #[error("{}bad time zone {timezone:?}: {reason}", job.as_ref().map(|j| format!("job {j}: ")).unwrap_or_default())]
    BadTimezone {
        /// The job, or `None` for the plugin's default.
        job: Option<String>,
        /// The zone as given.
        timezone: String,
        /// What is wrong.
        reason: String,
    },
    /// A bad job name or setting.
    #[error("job {job:?}: {reason}")]
    BadJob {
        /// The job.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// Two jobs with one name.
    #[error("job {job:?} is defined twice")]
    DuplicateJob {
        /// The job.
        job: String,
    },
    /// A bad plugin setting.
    #[error("{setting}: {reason}")]
    BadSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Settings of the plugin (not per job).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) lock_ttl: Duration,
    pub(crate) history_retention: Option<Duration>,
    pub(crate) cleanup_interval: Duration,
    pub(crate) stop_grace: Duration,
    pub(crate) default_tz: Zone,
}

/// Builds a [`SchedulerPlugin`]; every setting is checked by [`SchedulerBuilder::build`].
#[derive(Debug)]
pub struct SchedulerBuilder {
    jobs: Vec<Job>,
    timezone: Option<String>,
    lock_ttl: Duration,
    history_retention: Option<Duration>,
    cleanup_interval: Duration,
    stop_grace: Duration,
}

impl Default for SchedulerBuilder {
    fn default() -> Self {
        Self {
            jobs: Vec::new(),
            timezone: None,
            lock_ttl: DEFAULT_LOCK_TTL,
            history_retention: Some(DEFAULT_HISTORY_RETENTION),
            cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
            stop_grace: DEFAULT_STOP_GRACE,
        }
    }
}

impl SchedulerBuilder {
    /// Adds a job.
    #[must_use]
    pub fn job(mut self, job: Job) -> Self {
        self.jobs.push(job);
        self
    }

    /// The default time zone of jobs: `UTC` (the default), a fixed offset such as `-05:00`, or an
    /// IANA zone name such as `America/New_York`.
    #[must_use]
    pub fn timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = Some(timezone.into());
        self
    }

    /// Lease of a job's run lock, renewed every third of it while the job runs (default
    /// [`DEFAULT_LOCK_TTL`], at least [`MIN_LOCK_TTL`]). A process that dies mid-run blocks its
    /// job for at most this long. Keep it well above the clock skew between processes.
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long execution records are kept (default [`DEFAULT_HISTORY_RETENTION`], at least
    /// [`MIN_HISTORY_RETENTION`]); `None` keeps them forever.
    #[must_use]
    pub fn history_retention(mut self, retention: Option<Duration>) -> Self {
        self.history_retention = retention;
        self
    }

    /// How often old execution records are deleted (default [`DEFAULT_CLEANUP_INTERVAL`]).
    #[must_use]
    pub fn cleanup_interval(mut self, interval: Duration) -> Self {
        self.cleanup_interval = interval;
        self
    }

    /// How long `stop` lets running jobs finish before interrupting them (default
    /// [`DEFAULT_STOP_GRACE`]).
    #[must_use]
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Validates everything.
    ///
    /// # Errors
    /// The first [`ConfigError`] found: a bad schedule (naming the job and field), time zone,
    /// job name, duplicate job, or setting.
    pub fn build(self) -> Result<SchedulerPlugin, ConfigError> {
        let default_tz = match &self.timezone {
            None => Zone::Fixed(utc()),
            Some(tz) => parse_zone(tz).map_err(|reason| ConfigError::BadTimezone {
                job: None,
                timezone: tz.clone(),
                reason,
            })?,
        };
        if self.lock_ttl < MIN_LOCK_TTL {
            return Err(ConfigError::BadSetting {
                setting: "lock_ttl",
                reason: format!("{:?} is below the minimum {MIN_LOCK_TTL:?}", self.lock_ttl),
            });
        }
        if let Some(r) = self.history_retention
            && r < MIN_HISTORY_RETENTION
        {
            return Err(ConfigError::BadSetting {
                setting: "history_retention",
                reason: format!("{r:?} is below the minimum {MIN_HISTORY_RETENTION:?}"),
            });
        }
        if self.cleanup_interval < Duration::from_secs(1) {
            return Err(ConfigError::BadSetting {
                setting: "cleanup_interval",
                reason: "at least one second".to_owned(),
            });
        }
        let mut names = BTreeSet::new();
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for job in self.jobs {
            if !names.insert(job.name.clone()) {
                return Err(ConfigError::DuplicateJob { job: job.name });
            }
            jobs.push(job.validate(default_tz)?);
        }
        Ok(SchedulerPlugin::from_parts(
            Settings {
                lock_ttl: self.lock_ttl,
                history_retention: self.history_retention,
                cleanup_interval: self.cleanup_interval,
                stop_grace: self.stop_grace,
                default_tz,
            },
            jobs,
        ))
    }
}
