//! Claiming a tick and running a job: the execution record as the claim, the run lock against
//! overlap, timeouts, retries with backoff, and the record of how it ended.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use futures::FutureExt;
use s3db_core::plugin::{CustomEvent, Error, LockGuard, LockOptions, PluginContext, Resource};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::{JobDef, MAX_RETRY_BACKOFF, RunInfo, Settings};
use crate::events::SchedulerEvent;
use crate::history::{self, Execution, ExecutionStatus, Trigger};

/// One job as the plugin keeps it.
pub(crate) struct Slot {
    pub(crate) def: Arc<JobDef>,
    pub(crate) enabled: bool,
    /// Which timer registration is current (fires of older ones are ignored).
    pub(crate) generation: u64,
    pub(crate) timer_ids: Vec<Uuid>,
    /// The last tick this process dispatched.
    pub(crate) last_tick: Option<DateTime<Utc>>,
    /// Runs of it going on in this process.
    pub(crate) running: u32,
    /// The last execution this process finished.
    pub(crate) last: Option<Execution>,
}

impl Slot {
    pub(crate) fn new(def: JobDef) -> Self {
        Self {
            enabled: def.job.enabled,
            def: Arc::new(def),
            generation: 0,
            timer_ids: Vec::new(),
            last_tick: None,
            running: 0,
            last: None,
        }
    }
}

/// What exists once the plugin is installed.
#[derive(Clone)]
pub(crate) struct Installed {
    pub(crate) cx: PluginContext,
    pub(crate) executions: Resource,
}

/// The state shared by the plugin, its tasks and its runs.
pub(crate) struct Core {
    pub(crate) settings: Settings,
    pub(crate) jobs: Mutex<BTreeMap<String, Slot>>,
    pub(crate) generations: AtomicU64,
    pub(crate) installed: Mutex<Option<Installed>>,
    /// Runs going on in this process (scheduled and `run_job`).
    pub(crate) in_flight: watch::Sender<usize>,
    /// Set by `stop` once its grace period is over: runs still going give up.
    pub(crate) abort: watch::Sender<bool>,
    /// Who this process is, in leases and records.
    pub(crate) owner: String,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The run lock of a job.
pub(crate) fn lock_name(job: &str) -> String {
    format!("run-{job}")
}

/// Counts a run in flight while it lives.
struct InFlight(Arc<Core>);

impl InFlight {
    fn new(core: &Arc<Core>) -> Self {
        core.in_flight.send_modify(|n| *n += 1);
        Self(Arc::clone(core))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// How the attempts ended.
struct Outcome {
    status: ExecutionStatus,
    error: Option<String>,
}

impl Core {
    pub(crate) fn new(settings: Settings, jobs: Vec<JobDef>) -> Self {
        let owner = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned()),
            std::process::id(),
            rand_u32()
        );
        Self {
            settings,
            jobs: Mutex::new(
                jobs.into_iter()
                    .map(|d| (d.job.name.clone(), Slot::new(d)))
                    .collect(),
            ),
            generations: AtomicU64::new(0),
            installed: Mutex::new(None),
            in_flight: watch::Sender::new(0),
            abort: watch::Sender::new(false),
            owner,
        }
    }

    pub(crate) fn installed(&self) -> Option<Installed> {
        lock(&self.installed).clone()
    }

    fn emit(cx: &PluginContext, event: &SchedulerEvent) {
        cx.emit(event.name(), event.payload());
    }

    /// Runs the tick `tick` of `def` if this process claims it first.
    pub(crate) async fn run_tick(self: Arc<Self>, def: Arc<JobDef>, tick: DateTime<Utc>) {
        let Some(installed) = self.installed() else {
            return;
        };
        let job = def.job.name.clone();
        let _in_flight = InFlight::new(&self);
        let id = format!("{job}.{}", tick.timestamp());
        let span = tracing::info_span!("scheduler tick", job = %job, tick = %tick);
        async {
            let now = now_ms();
            let claim = history::started(&job, Trigger::Schedule, Some(tick), now, &self.owner);
            match installed.executions.insert_with_id(&id, claim).await {
                Ok(_) => {}
                Err(Error::AlreadyExists { .. }) => {
                    tracing::debug!("tick claimed by another process");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: could not claim the tick; it is not run here");
                    return;
                }
            }
            let opts = LockOptions::new()
                .ttl(self.settings.lock_ttl)
                .owner(self.owner.clone());
            let guard = match installed.cx.storage().acquire_lock(&lock_name(&job), opts).await {
                Ok(Some(guard)) => guard,
                Ok(None) => {
                    let reason = "the previous run was still going";
                    tracing::info!("tick skipped: {reason}");
                    let done = history::finished(ExecutionStatus::Skipped, Utc::now(), 0, 0, Some(reason));
                    if let Err(e) = installed.executions.update(&id, done).await {
                        tracing::warn!(error = %e, "scheduler: could not record a skipped tick");
                    }
                    Self::emit(
                        &installed.cx,
                        &SchedulerEvent::JobSkipped {
                            job: job.clone(),
                            execution_id: id.clone(),
                            scheduled_at: tick,
                        },
                    );
                    return;
                }
                Err(e) => {
                    let reason = format!("could not take the run lock: {e}");
                    tracing::warn!("scheduler: {reason}");
                    let done = history::finished(ExecutionStatus::Error, Utc::now(), 0, 0, Some(&reason));
                    let _ = installed.executions.update(&id, done).await;
                    return;
                }
            };
            self.execute(&installed, &def, &id, (Some(tick), now), Trigger::Schedule, guard)
                .await;
        }
        .instrument(span)
        .await;
    }

    /// `run_job`: runs `def` now, unless a run of it is going on (in any process).
    pub(crate) async fn run_now(
        self: &Arc<Self>,
        installed: &Installed,
        def: &Arc<JobDef>,
    ) -> Result<Option<Execution>, Error> {
        let job = &def.job.name;
        let _in_flight = InFlight::new(self);
        let opts = LockOptions::new()
            .ttl(self.settings.lock_ttl)
            .owner(self.owner.clone());
        let Some(guard) = installed
            .cx
            .storage()
            .acquire_lock(&lock_name(job), opts)
            .await?
        else {
            return Ok(None);
        };
        let id = format!("{job}.m{}", ulid::Ulid::new());
        let now = now_ms();
        let claim = history::started(job, Trigger::Manual, None, now, &self.owner);
        installed.executions.insert_with_id(&id, claim).await?;
        let span = tracing::info_span!("scheduler run_job", job = %job);
        Ok(Some(
            self.execute(installed, def, &id, (None, now), Trigger::Manual, guard)
                .instrument(span)
                .await,
        ))
    }

    /// Runs the attempts under the lock (renewing it), records the end, releases the lock.
    async fn execute(
        self: &Arc<Self>,
        installed: &Installed,
        def: &Arc<JobDef>,
        id: &str,
        (scheduled_at, started_at): (Option<DateTime<Utc>>, DateTime<Utc>),
        trigger: Trigger,
        mut guard: LockGuard,
    ) -> Execution {
        let job = def.job.name.clone();
        let started = Instant::now();
        self.with_slot(&job, |s| s.running += 1);
        Self::emit(
            &installed.cx,
            &SchedulerEvent::JobStarted {
                job: job.clone(),
                execution_id: id.to_owned(),
                scheduled_at,
                trigger,
            },
        );
        let attempts = Arc::new(AtomicU32::new(0));
        let outcome = {
            let run = self.attempts(installed, def, id, scheduled_at, Arc::clone(&attempts));
            tokio::pin!(run);
            let renew_every = self.settings.lock_ttl / 3;
            let mut abort = self.abort.subscribe();
            loop {
                tokio::select! {
                    outcome = &mut run => break outcome,
                    () = tokio::time::sleep(renew_every) => {
                        if let Err(e) = guard.renew(self.settings.lock_ttl).await {
                            tracing::warn!(error = %e, "scheduler: could not renew the run lock");
                        }
                    }
                    _ = async { abort.wait_for(|a| *a).await.is_ok() } => {
                        break Outcome {
                            status: ExecutionStatus::Error,
                            error: Some("interrupted: the scheduler stopped".to_owned()),
                        };
                    }
                }
            }
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let attempts = attempts.load(Ordering::SeqCst);
        let finished_at = now_ms();
        let done = history::finished(
            outcome.status,
            finished_at,
            duration_ms,
            attempts,
            outcome.error.as_deref(),
        );
        if let Err(e) = installed.executions.update(id, done).await {
            tracing::warn!(error = %e, "scheduler: could not record how a run ended");
        }
        if let Err(e) = guard.release().await {
            tracing::warn!(error = %e, "scheduler: could not release the run lock");
        }
        let execution = Execution {
            id: id.to_owned(),
            job: job.clone(),
            status: outcome.status,
            trigger,
            scheduled_at,
            started_at,
            finished_at: Some(finished_at),
            duration_ms: Some(duration_ms),
            attempts,
            error: outcome.error.clone(),
            owner: Some(self.owner.clone()),
        };
        let event = match (outcome.status, outcome.error) {
            (ExecutionStatus::Success, _) => {
                tracing::info!(duration_ms, attempts, "job completed");
                SchedulerEvent::JobCompleted {
                    job: job.clone(),
                    execution_id: id.to_owned(),
                    duration_ms,
                    attempts,
                }
            }
            (status, error) => {
                let error = error.unwrap_or_default();
                tracing::warn!(?status, error = %error, attempts, "job failed");
                SchedulerEvent::JobError {
                    job: job.clone(),
                    execution_id: id.to_owned(),
                    status,
                    error,
                    attempts,
                    duration_ms,
                }
            }
        };
        Self::emit(&installed.cx, &event);
        let last = execution.clone();
        self.with_slot(&job, move |s| {
            s.running = s.running.saturating_sub(1);
            s.last = Some(last);
        });
        execution
    }

    /// The first attempt and the retries, each under the time limit.
    async fn attempts(
        &self,
        installed: &Installed,
        def: &JobDef,
        id: &str,
        scheduled_at: Option<DateTime<Utc>>,
        counter: Arc<AtomicU32>,
    ) -> Outcome {
        let job = &def.job;
        let db = match installed.cx.database() {
            Ok(db) => db,
            Err(e) => {
                return Outcome {
                    status: ExecutionStatus::Error,
                    error: Some(e.to_string()),
                };
            }
        };
        let mut last = Outcome {
            status: ExecutionStatus::Error,
            error: None,
        };
        for attempt in 1..=job.retries.saturating_add(1) {
            counter.store(attempt, Ordering::SeqCst);
            let info = RunInfo {
                job: job.name.clone(),
                execution_id: id.to_owned(),
                scheduled_at,
                attempt,
            };
            let action = AssertUnwindSafe((job.action)(db.clone(), info)).catch_unwind();
            last = match tokio::time::timeout(job.timeout, action).await {
                Ok(Ok(Ok(()))) => {
                    return Outcome {
                        status: ExecutionStatus::Success,
                        error: None,
                    };
                }
                Ok(Ok(Err(e))) => Outcome {
                    status: ExecutionStatus::Error,
                    error: Some(e.to_string()),
                },
                Ok(Err(_panic)) => Outcome {
                    status: ExecutionStatus::Error,
                    error: Some("the action panicked".to_owned()),
                },
                Err(_elapsed) => Outcome {
                    status: ExecutionStatus::Timeout,
                    error: Some(format!("timed out after {:?}", job.timeout)),
                },
            };
            if attempt <= job.retries {
                let delay = backoff(job.retry_backoff, attempt);
                let error = last.error.clone().unwrap_or_default();
                tracing::info!(attempt, error = %error, ?delay, "attempt failed; retrying");
                Self::emit(
                    &installed.cx,
                    &SchedulerEvent::JobRetrying {
                        job: job.name.clone(),
                        execution_id: id.to_owned(),
                        attempt,
                        error,
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    },
                );
                tokio::time::sleep(delay).await;
            }
        }
        last
    }

    pub(crate) fn with_slot<R>(&self, job: &str, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        lock(&self.jobs).get_mut(job).map(f)
    }

    pub(crate) fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Now, to the millisecond (what the history stores).
fn now_ms() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// The pause after failed attempt `attempt` (from 1): `base`, doubled each time, capped.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    base.saturating_mul(factor).min(MAX_RETRY_BACKOFF)
}

fn rand_u32() -> u32 {
    // Enough to tell two scheduler instances of one process apart in leases and records.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    nanos ^ COUNTER.fetch_add(0x9e37_79b9, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 1), Duration::from_millis(100));
        assert_eq!(backoff(b, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, 4), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), MAX_RETRY_BACKOFF);
    }
}
