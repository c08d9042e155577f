//! The clock: a `tokio-cron-scheduler` instance that only tells the plugin "job X's pattern P
//! fired"; claiming and running the tick happen in the plugin's own tasks.
//!
//! `tokio-cron-scheduler` freezes a time zone's offset when a job is created, so it only clocks
//! jobs in UTC or a fixed offset. A job in a named zone (`Europe/Lisbon`) gets a task of its own
//! on the same runtime instead: it computes the next tick with croner in the zone (see
//! [`Schedule::next_after`]), sleeps until then and reports that exact tick.
//!
//! `tokio-cron-scheduler` spawns a dozen actor tasks with `tokio::spawn` that its `shutdown`
//! does not end (they hold each other's channels). So the instance lives on a runtime of its
//! own, on a thread of its own: stopping the timer shuts the scheduler down and then drops that
//! runtime, which ends every one of its tasks, and the thread exits. Nothing is left behind.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
use uuid::Uuid;

use crate::schedule::{Schedule, Zone};

/// The longest a named-zone job's task sleeps before looking at the wall clock again (so a
/// clock that is set, or a machine that sleeps, does not delay a tick by much).
const MAX_NAP: Duration = Duration::from_secs(30);

/// "Pattern `pattern` of job `job` fired at `at`."
#[derive(Debug, Clone)]
pub(crate) struct Fire {
    pub(crate) job: String,
    /// The registration it came from (a re-added job's old registrations are ignored).
    pub(crate) generation: u64,
    pub(crate) pattern: usize,
    pub(crate) at: DateTime<Utc>,
    /// The tick itself, when the clock knows it (named zones); otherwise it is the latest tick
    /// of `pattern` at or before `at`.
    pub(crate) tick: Option<DateTime<Utc>>,
}

enum Command {
    Add {
        job: String,
        generation: u64,
        schedule: Box<Schedule>,
        reply: oneshot::Sender<Result<Vec<Uuid>, String>>,
    },
    Remove {
        ids: Vec<Uuid>,
        reply: oneshot::Sender<()>,
    },
}

/// A running timer. Dropping it stops it (without waiting); [`Timer::shutdown`] waits.
pub(crate) struct Timer {
    commands: Option<mpsc::UnboundedSender<Command>>,
    thread: Option<JoinHandle<()>>,
    exited: Option<oneshot::Receiver<()>>,
}

impl Timer {
    /// Starts the scheduler on its own thread; fires go to `fires`.
    pub(crate) async fn start(fires: mpsc::UnboundedSender<Fire>) -> Result<Self, String> {
        let (commands, mut rx) = mpsc::unbounded_channel::<Command>();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let (exited_tx, exited) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("s3db-scheduler-timer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("timer runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut sched = match JobScheduler::new().await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("tokio-cron-scheduler: {e}")));
                            return;
                        }
                    };
                    if let Err(e) = sched.start().await {
                        let _ = ready_tx.send(Err(format!("tokio-cron-scheduler start: {e}")));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    let mut loops: HashMap<Uuid, AbortHandle> = HashMap::new();
                    while let Some(cmd) = rx.recv().await {
                        match cmd {
                            Command::Add {
                                job,
                                generation,
                                schedule,
                                reply,
                            } => {
                                let added = match schedule.zone() {
                                    Zone::Fixed(offset) => {
                                        let patterns = schedule.patterns();
                                        add(&sched, &fires, &job, generation, patterns, offset)
                                            .await
                                    }
                                    Zone::Named(_) => {
                                        let id = Uuid::now_v7();
                                        let task = tokio::spawn(zone_loop(
                                            fires.clone(),
                                            job,
                                            generation,
                                            *schedule,
                                        ));
                                        loops.insert(id, task.abort_handle());
                                        Ok(vec![id])
                                    }
                                };
                                let _ = reply.send(added);
                            }
                            Command::Remove { ids, reply } => {
                                for id in ids {
                                    if let Some(task) = loops.remove(&id) {
                                        task.abort();
                                        continue;
                                    }
                                    if let Err(e) = sched.remove(&id).await {
                                        tracing::debug!("scheduler: removing timer job: {e}");
                                    }
                                }
                                let _ = reply.send(());
                            }
                        }
                    }
                    if let Err(e) = sched.shutdown().await {
                        tracing::debug!("scheduler: tokio-cron-scheduler shutdown: {e}");
                    }
                });
                // Dropping the runtime ends every task tokio-cron-scheduler spawned.
                drop(runtime);
                let _ = exited_tx.send(());
            })
            .map_err(|e| format!("timer thread: {e}"))?;
        let timer = Self {
            commands: Some(commands),
            thread: Some(thread),
            exited: Some(exited),
        };
        match ready_rx.await {
            Ok(Ok(())) => Ok(timer),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the timer thread exited at start".to_owned()),
        }
    }

    fn send(&self, cmd: Command) -> Result<(), String> {
        self.commands
            .as_ref()
            .and_then(|c| c.send(cmd).ok())
            .ok_or_else(|| "the timer is stopped".to_owned())
    }

    /// Registers a job's schedule; returns its timer ids.
    pub(crate) async fn add(
        &self,
        job: &str,
        generation: u64,
        schedule: &Schedule,
    ) -> Result<Vec<Uuid>, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Add {
            job: job.to_owned(),
            generation,
            schedule: Box::new(schedule.clone()),
            reply,
        })?;
        rx.await
            .map_err(|_| "the timer stopped".to_owned())
            .and_then(|r| r)
    }

    /// Unregisters timer jobs.
    pub(crate) async fn remove(&self, ids: Vec<Uuid>) {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Remove { ids, reply }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops the scheduler, ends its runtime and waits for its thread to exit.
    pub(crate) async fn shutdown(mut self) {
        self.commands = None;
        if let Some(exited) = self.exited.take() {
            let _ = exited.await;
        }
        if let Some(thread) = self.thread.take() {
            // It has exited (or died): joining does not block.
            let _ = thread.join();
        }
    }

    /// Whether the timer thread is still alive.
    pub(crate) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Closing the command channel ends the thread's loop; it exits on its own.
        self.commands = None;
    }
}

async fn add(
    sched: &JobScheduler,
    fires: &mpsc::UnboundedSender<Fire>,
    job: &str,
    generation: u64,
    patterns: &[String],
    offset: FixedOffset,
) -> Result<Vec<Uuid>, String> {
    let mut ids = Vec::with_capacity(patterns.len());
    for (pattern, expr) in patterns.iter().enumerate() {
        let (fires, job) = (fires.clone(), job.to_owned());
        let cron = CronJob::new_async_tz(expr.as_str(), offset, move |_id, _sched| {
            let fire = Fire {
                job: job.clone(),
                generation,
                pattern,
                at: Utc::now(),
                tick: None,
            };
            let _ = fires.send(fire);
            Box::pin(async {})
        })
        .map_err(|e| format!("tokio-cron-scheduler refused {expr:?}: {e}"))?;
        let id = sched
            .add(cron)
            .await
            .map_err(|e| format!("tokio-cron-scheduler add: {e}"))?;
        ids.push(id);
    }
    Ok(ids)
}

/// Clocks a job in a named zone: sleeps until each tick (computed in the zone, so it follows
/// daylight-saving changes) and reports it. Ends when the timer removes it (abort) or the plugin
/// stops listening.
async fn zone_loop(
    fires: mpsc::UnboundedSender<Fire>,
    job: String,
    generation: u64,
    schedule: Schedule,
) {
    let mut next = schedule.next_after(Utc::now());
    while let Some(tick) = next {
        loop {
            let left = tick - Utc::now();
            let Ok(left) = left.to_std() else { break };
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(MAX_NAP)).await;
        }
        let fire = Fire {
            job: job.clone(),
            generation,
            pattern: 0,
            at: Utc::now(),
            tick: Some(tick),
        };
        if fires.send(fire).is_err() {
            return;
        }
        // The tick after this one; if the clock jumped far ahead, ticks missed meanwhile are
        // not caught up (as with `tokio-cron-scheduler`).
        next = schedule.next_after(tick);
        let now = Utc::now();
        if next.is_some_and(|n| n + chrono::Duration::seconds(1) < now) {
            next = schedule.next_after(now);
        }
    }
}
