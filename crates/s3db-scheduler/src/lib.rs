#![doc = include_str!("../README.md")]

mod config;
mod events;
mod history;
mod runner;
mod schedule;
mod timer;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use s3db_core::plugin::{Error, Plugin, PluginContext, Result, async_trait};
use tokio::sync::{mpsc, watch};

pub use crate::config::{
    ActionResult, ConfigError, DEFAULT_CLEANUP_INTERVAL, DEFAULT_HISTORY_RETENTION,
    DEFAULT_LOCK_TTL, DEFAULT_RETRY_BACKOFF, DEFAULT_STOP_GRACE, DEFAULT_TIMEOUT, Job,
    MAX_JOB_NAME, MAX_RETRY_BACKOFF, MIN_HISTORY_RETENTION, MIN_LOCK_TTL, RunInfo,
    SchedulerBuilder,
};
pub use crate::events::SchedulerEvent;
pub use crate::history::{EXECUTIONS_RESOURCE, Execution, ExecutionStatus, HistoryQuery, Trigger};
pub use crate::schedule::{CronField, Schedule, ScheduleSpec, Zone};

use crate::config::{JobDef, Settings};
use crate::runner::{Core, Installed, Slot, lock};
use crate::timer::{Fire, Timer};

/// The plugin's name (and storage slug).
pub const PLUGIN_NAME: &str = "scheduler";

/// How often background loops check that their database still exists.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
/// How long `stop` waits for interrupted runs to record their end.
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// What went wrong in a call on the plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// No job has this name.
    #[error("no job named {job:?}")]
    UnknownJob {
        /// The name asked for.
        job: String,
    },
    /// The job is running (in this process or another) — `run_job` does not overlap runs.
    #[error("job {job:?} is already running")]
    AlreadyRunning {
        /// The job.
        job: String,
    },
    /// The plugin is not installed in a database.
    #[error("the scheduler is not installed in a database")]
    NotInstalled,
    /// A bad job.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A storage or database error.
    #[error(transparent)]
    Storage(#[from] Error),
}

/// The state of one job, as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStatus {
    /// The job.
    pub name: String,
    /// Its schedule as given.
    pub schedule: String,
    /// The UTC offset of its time zone now (for a named zone, it changes with daylight saving).
    pub timezone: FixedOffset,
    /// Its time zone.
    pub zone: Zone,
    /// Whether it runs on its schedule.
    pub enabled: bool,
    /// Runs of it going on in this process.
    pub running: u32,
    /// Its next tick (when enabled).
    pub next_run: Option<DateTime<Utc>>,
    /// The last run this process finished.
    pub last_execution: Option<Execution>,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Its description.
    pub description: Option<String>,
}

/// The scheduler plugin. Build it with [`SchedulerPlugin::builder`]; find it again with
/// `db.plugin::<SchedulerPlugin>()`.
pub struct SchedulerPlugin {
    core: Arc<Core>,
    timer: tokio::sync::Mutex<Option<Timer>>,
}

impl std::fmt::Debug for SchedulerPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerPlugin")
            .field("settings", &self.core.settings)
            .field("jobs", &lock(&self.core.jobs).keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SchedulerPlugin {
    /// A builder with validated configuration.
    #[must_use]
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    pub(crate) fn from_parts(settings: Settings, jobs: Vec<JobDef>) -> Self {
        Self {
            core: Arc::new(Core::new(settings, jobs)),
            timer: tokio::sync::Mutex::new(None),
        }
    }

    fn installed(&self) -> std::result::Result<Installed, SchedulerError> {
        self.core.installed().ok_or(SchedulerError::NotInstalled)
    }

    fn def(&self, job: &str) -> std::result::Result<Arc<JobDef>, SchedulerError> {
        self.core
            .with_slot(job, |s| Arc::clone(&s.def))
            .ok_or_else(|| SchedulerError::UnknownJob {
                job: job.to_owned(),
            })
    }

    /// Runs a job now (whether enabled or not), with its timeout and retries, and returns its
    /// execution record.
    ///
    /// # Errors
    /// [`SchedulerError::UnknownJob`]; [`SchedulerError::AlreadyRunning`] if a run of it is
    /// going on in any process sharing the bucket; [`SchedulerError::NotInstalled`]; storage
    /// errors. A failing action is not an error here: it is the returned execution's status.
    pub async fn run_job(&self, job: &str) -> std::result::Result<Execution, SchedulerError> {
        let def = self.def(job)?;
        let installed = self.installed()?;
        self.core
            .run_now(&installed, &def)
            .await?
            .ok_or_else(|| SchedulerError::AlreadyRunning {
                job: job.to_owned(),
            })
    }

    /// Adds a job at runtime (scheduled at once if the plugin is started and the job enabled).
    ///
    /// # Errors
    /// [`ConfigError`] for a bad job or a name already taken.
    pub async fn add_job(&self, job: Job) -> std::result::Result<(), SchedulerError> {
        let def = job.validate(self.core.settings.default_tz)?;
        let name = def.job.name.clone();
        {
            let mut jobs = lock(&self.core.jobs);
            if jobs.contains_key(&name) {
                return Err(ConfigError::DuplicateJob { job: name }.into());
            }
            jobs.insert(name.clone(), Slot::new(def));
        }
        self.register(&name).await
    }

    /// Removes a job (a run of it going on finishes).
    ///
    /// # Errors
    /// [`SchedulerError::UnknownJob`].
    pub async fn remove_job(&self, job: &str) -> std::result::Result<(), SchedulerError> {
        let slot = lock(&self.core.jobs).remove(job);
        let Some(slot) = slot else {
            return Err(SchedulerError::UnknownJob {
                job: job.to_owned(),
            });
        };
        self.unregister(slot.timer_ids).await;
        Ok(())
    }

    /// Lets a job run on its schedule again (in this process).
    ///
    /// # Errors
    /// [`SchedulerError::UnknownJob`].
    pub async fn enable_job(&self, job: &str) -> std::result::Result<(), SchedulerError> {
        let was = self.set_enabled(job, true)?;
        if !was {
            self.register(job).await?;
        }
        Ok(())
    }

    /// Stops a job from running on its schedule (in this process; `run_job` still runs it).
    ///
    /// # Errors
    /// [`SchedulerError::UnknownJob`].
    pub async fn disable_job(&self, job: &str) -> std::result::Result<(), SchedulerError> {
        self.set_enabled(job, false)?;
        let ids = self
            .core
            .with_slot(job, |s| {
                s.generation = 0;
                std::mem::take(&mut s.timer_ids)
            })
            .unwrap_or_default();
        self.unregister(ids).await;
        Ok(())
    }

    fn set_enabled(&self, job: &str, enabled: bool) -> std::result::Result<bool, SchedulerError> {
        self.core
            .with_slot(job, |s| std::mem::replace(&mut s.enabled, enabled))
            .ok_or_else(|| SchedulerError::UnknownJob {
                job: job.to_owned(),
            })
    }

    /// The state of a job in this process.
    ///
    /// # Errors
    /// [`SchedulerError::UnknownJob`].
    pub fn job_status(&self, job: &str) -> std::result::Result<JobStatus, SchedulerError> {
        self.core
            .with_slot(job, |s| status_of(s))
            .ok_or_else(|| SchedulerError::UnknownJob {
                job: job.to_owned(),
            })
    }

    /// The state of every job, by name.
    #[must_use]
    pub fn jobs(&self) -> Vec<JobStatus> {
        lock(&self.core.jobs).values().map(status_of).collect()
    }

    /// Execution records (of every process) matching `query`, newest first.
    ///
    /// # Errors
    /// [`SchedulerError::NotInstalled`]; storage errors.
    pub async fn history(
        &self,
        query: HistoryQuery,
    ) -> std::result::Result<Vec<Execution>, SchedulerError> {
        let installed = self.installed()?;
        let records = match &query.job {
            Some(job) => {
                installed
                    .executions
                    .list_partition(history::BY_JOB, serde_json::json!({ "job": job }))
                    .await?
            }
            None => installed.executions.list().await?,
        };
        let mut out: Vec<Execution> = records
            .iter()
            .filter_map(Execution::from_record)
            .filter(|e| query.matches(e))
            .collect();
        out.sort_by(|a, b| {
            (b.scheduled_at.unwrap_or(b.started_at), b.started_at, &b.id).cmp(&(
                a.scheduled_at.unwrap_or(a.started_at),
                a.started_at,
                &a.id,
            ))
        });
        if let Some(n) = query.limit {
            out.truncate(n);
        }
        Ok(out)
    }

    /// Deletes execution records started more than `older_than` ago; returns how many.
    ///
    /// # Errors
    /// [`SchedulerError::NotInstalled`]; storage errors.
    pub async fn cleanup_history(
        &self,
        older_than: Duration,
    ) -> std::result::Result<u64, SchedulerError> {
        let installed = self.installed()?;
        Ok(cleanup(&installed, older_than).await?)
    }

    /// Whether the scheduler's clock (the `tokio-cron-scheduler` instance and its thread) is
    /// running.
    pub async fn is_running(&self) -> bool {
        self.timer
            .lock()
            .await
            .as_ref()
            .is_some_and(Timer::is_running)
    }

    /// How many runs are going on in this process.
    #[must_use]
    pub fn runs_in_flight(&self) -> usize {
        *self.core.in_flight.borrow()
    }

    /// Registers a job with the timer if it is started and the job enabled.
    async fn register(&self, job: &str) -> std::result::Result<(), SchedulerError> {
        let timer = self.timer.lock().await;
        let Some(timer) = timer.as_ref() else {
            return Ok(());
        };
        register(&self.core, timer, job).await
    }

    async fn unregister(&self, ids: Vec<uuid::Uuid>) {
        if ids.is_empty() {
            return;
        }
        if let Some(timer) = self.timer.lock().await.as_ref() {
            timer.remove(ids).await;
        }
    }
}

fn status_of(s: &Slot) -> JobStatus {
    let job = &s.def.job;
    JobStatus {
        name: job.name.clone(),
        schedule: s.def.schedule.spec().to_string(),
        timezone: s.def.schedule.offset(),
        zone: s.def.schedule.zone(),
        enabled: s.enabled,
        running: s.running,
        next_run: s
            .enabled
            .then(|| s.def.schedule.next_after(Utc::now()))
            .flatten(),
        last_execution: s.last.clone(),
        timeout: job.timeout,
        retries: job.retries,
        description: job.description.clone(),
    }
}

/// Hands an enabled job's patterns to the timer (replacing an earlier registration).
async fn register(
    core: &Core,
    timer: &Timer,
    job: &str,
) -> std::result::Result<(), SchedulerError> {
    let generation = core.next_generation();
    let Some((def, old)) = core.with_slot(job, |s| {
        let old = std::mem::take(&mut s.timer_ids);
        if s.enabled {
            s.generation = generation;
            (Some(Arc::clone(&s.def)), old)
        } else {
            (None, old)
        }
    }) else {
        return Err(SchedulerError::UnknownJob {
            job: job.to_owned(),
        });
    };
    if !old.is_empty() {
        timer.remove(old).await;
    }
    let Some(def) = def else {
        return Ok(());
    };
    let ids = timer
        .add(job, generation, &def.schedule)
        .await
        .map_err(|reason| ConfigError::BadSchedule {
            job: job.to_owned(),
            schedule: def.schedule.spec().to_string(),
            field: None,
            reason,
        })?;
    let kept = core
        .with_slot(job, |s| {
            let current = s.enabled && s.generation == generation;
            if current {
                s.timer_ids.clone_from(&ids);
            }
            current
        })
        .unwrap_or(false);
    if !kept {
        // Disabled, removed or registered again meanwhile.
        timer.remove(ids).await;
    }
    Ok(())
}

async fn cleanup(installed: &Installed, older_than: Duration) -> Result<u64> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    let old: Vec<String> = installed
        .executions
        .list()
        .await?
        .iter()
        .filter_map(Execution::from_record)
        .filter(|e| e.started_at < cutoff)
        .map(|e| e.id)
        .collect();
    let mut deleted = 0;
    for r in installed.executions.delete_many(&old).await {
        r?;
        deleted += 1;
    }
    Ok(deleted)
}

#[async_trait]
impl Plugin for SchedulerPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        let executions = cx.create_resource(history::resource_config()).await?;
        *lock(&self.core.installed) = Some(Installed {
            cx: cx.clone(),
            executions,
        });
        Ok(())
    }

    async fn start(&self, cx: &PluginContext) -> Result<()> {
        self.core.abort.send_replace(false);
        let (fires_tx, fires_rx) = mpsc::unbounded_channel();
        let timer = Timer::start(fires_tx)
            .await
            .map_err(|reason| Error::Refused {
                operation: "scheduler start",
                reason,
            })?;
        let names: Vec<String> = lock(&self.core.jobs).keys().cloned().collect();
        for name in names {
            if self.core.with_slot(&name, |s| s.enabled) == Some(true) {
                register(&self.core, &timer, &name)
                    .await
                    .map_err(|e| Error::Refused {
                        operation: "scheduler start",
                        reason: e.to_string(),
                    })?;
            }
        }
        *self.timer.lock().await = Some(timer);
        cx.spawn(dispatch(
            Arc::clone(&self.core),
            cx.clone(),
            fires_rx,
            cx.shutdown_signal(),
        ));
        if let (Some(retention), Some(installed)) =
            (self.core.settings.history_retention, self.core.installed())
        {
            cx.spawn(cleanup_loop(
                installed,
                retention,
                self.core.settings.cleanup_interval,
                cx.shutdown_signal(),
            ));
        }
        tracing::info!(jobs = lock(&self.core.jobs).len(), "scheduler started");
        Ok(())
    }

    async fn stop(&self, _cx: &PluginContext) -> Result<()> {
        let timer = self.timer.lock().await.take();
        if let Some(timer) = timer {
            timer.shutdown().await;
        }
        for slot in lock(&self.core.jobs).values_mut() {
            slot.timer_ids.clear();
            slot.generation = 0;
        }
        let grace = self.core.settings.stop_grace;
        if !idle_within(&self.core, grace).await {
            tracing::warn!("scheduler: interrupting runs still going after {grace:?}");
            self.core.abort.send_replace(true);
            idle_within(&self.core, ABORT_WAIT).await;
        }
        tracing::info!("scheduler stopped");
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        *lock(&self.core.installed) = None;
        Ok(())
    }
}

/// Waits up to `limit` for no run to be in flight; whether none is.
async fn idle_within(core: &Core, limit: Duration) -> bool {
    let mut in_flight = core.in_flight.subscribe();
    tokio::time::timeout(limit, async move {
        in_flight.wait_for(|n| *n == 0).await.is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Turns the timer's fires into ticks and runs each in a task of the plugin.
async fn dispatch(
    core: Arc<Core>,
    cx: PluginContext,
    mut fires: mpsc::UnboundedReceiver<Fire>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut alive = tokio::time::interval(LIVENESS_CHECK);
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            fire = fires.recv() => {
                let Some(fire) = fire else { return };
                let due = core.with_slot(&fire.job, |s| {
                    if !s.enabled || s.generation != fire.generation {
                        return None;
                    }
                    let tick = match fire.tick {
                        Some(tick) => tick,
                        None => s.def.schedule.tick_at_or_before(fire.pattern, fire.at)?,
                    };
                    if s.last_tick.is_some_and(|last| last >= tick) {
                        return None;
                    }
                    s.last_tick = Some(tick);
                    Some((Arc::clone(&s.def), tick))
                }).flatten();
                if let Some((def, tick)) = due {
                    cx.spawn(Arc::clone(&core).run_tick(def, tick));
                }
            }
            _ = alive.tick() => {
                if cx.database().is_err() {
                    return;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// Deletes old execution records every interval.
async fn cleanup_loop(
    installed: Installed,
    retention: Duration,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let span = tracing::debug_span!("scheduler history cleanup");
                match tracing::Instrument::instrument(cleanup(&installed, retention), span).await {
                    Ok(n) => tracing::debug!(deleted = n, "scheduler history cleaned"),
                    Err(e) => tracing::warn!(error = %e, "scheduler: history clean-up failed"),
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
