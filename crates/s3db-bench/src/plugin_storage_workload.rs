//! The `plugin-storage` workload: [`PluginStorage`] counters and locks, alone and under
//! contention.
//!
//! With N operations per phase and T contending tasks, on a fresh [`PluginStorage`] (slug
//! `bench`) at the run's connection:
//!
//! 1. `counter_1task`: N sequential increments of one counter by one task (each returned value is
//!    checked);
//! 2. `counter_contended`: T tasks each incrementing one shared counter N/T times (the first
//!    N mod T tasks once more) concurrently; the counter must then read exactly N;
//! 3. `lock_1task`: N sequential acquire + release of one lock by one task;
//! 4. `lock_contended`: T tasks contending for one lock, each acquiring it N/T times (the first
//!    N mod T tasks once more) and releasing it at once; an [`AtomicBool`] set while the lock is
//!    held detects any overlap of two holders, and there must be none.
//!
//! Locks are acquired with [`LOCK_TTL`], a generous [`LOCK_TIMEOUT`] (an acquisition that times
//! out fails the run) and [`LOCK_MAX_BACKOFF`]. Requests are those the store counted during the
//! phase (failed conditional writes included: S3 bills them). One increment and one lock
//! acquisition on keys of their own warm the backend up first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use s3db_core::plugin::{LockOptions, PluginStorage};
use s3db_core::{RequestKind, RequestStats, Store};

use crate::backend::{BackendKind, Target};
use crate::measure::{BoxError, Measurement};

/// The phases, in the order they run.
#[cfg(test)]
pub const PHASES: [&str; 4] = [
    "counter_1task",
    "counter_contended",
    "lock_1task",
    "lock_contended",
];

/// Slug of the plugin whose storage the workload uses.
const SLUG: &str = "bench";

/// Lease duration of every acquisition (never reached: locks are released at once).
pub const LOCK_TTL: Duration = Duration::from_secs(30);

/// How long an acquisition may wait before the run fails: far above any wait seen.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest pause between two tries of a waiting acquisition.
pub const LOCK_MAX_BACKOFF: Duration = Duration::from_millis(10);

/// The result of one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseResult {
    /// Name of the phase (one of [`PHASES`]).
    pub name: &'static str,
    /// Tasks of the phase (1 or T).
    pub tasks: usize,
    /// Increments or acquisitions, time and total requests.
    pub measurement: Measurement,
    /// Requests by kind.
    pub requests: RequestStats,
    /// Conditional writes that failed: PUTs beyond the one per increment, or the two (acquire
    /// and release) per acquisition.
    pub failed_writes: u64,
    /// Counter phases: the value read back at the end (it equals the increments made).
    pub final_value: Option<i64>,
    /// `lock_contended`: how many times two holders overlapped (always 0: more fails the run).
    pub overlaps: Option<u64>,
    /// Contended phases: the longest single increment or acquisition.
    pub max_wait: Option<Duration>,
}

/// Every phase of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginStorageResult {
    /// Which backend.
    pub backend: BackendKind,
    /// Its connection string, credentials redacted.
    pub connection: String,
    /// Increments or acquisitions per phase.
    pub n: usize,
    /// Contending tasks of the contended phases.
    pub tasks: usize,
    /// The phases, in the order they ran.
    pub phases: Vec<PhaseResult>,
}

#[cfg(test)]
impl PluginStorageResult {
    /// The phase named `name`.
    pub fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// The lock options of every acquisition by `owner`.
fn lock_options(owner: &str) -> LockOptions {
    LockOptions::default()
        .ttl(LOCK_TTL)
        .timeout(LOCK_TIMEOUT)
        .max_backoff(LOCK_MAX_BACKOFF)
        .owner(owner)
}

/// How many operations task `task` of `tasks` does out of `n`: N/T, plus one for the first
/// N mod T tasks.
fn quota(n: usize, tasks: usize, task: usize) -> usize {
    n / tasks + usize::from(task < n % tasks)
}

/// Runs every phase on `target` with `n` operations per phase and `tasks` contending tasks.
pub async fn run(target: &Target, n: usize, tasks: usize) -> Result<PluginStorageResult, BoxError> {
    let tasks = tasks.clamp(1, n.max(1));
    let store = Store::builder(target.base.clone()).build()?;
    let storage = PluginStorage::new(store, SLUG)?;
    warm_up(&storage).await?;

    let phases = vec![
        counter_1task(&storage, n).await?,
        counter_contended(&storage, n, tasks).await?,
        lock_1task(&storage, n).await?,
        lock_contended(&storage, n, tasks).await?,
    ];
    Ok(PluginStorageResult {
        backend: target.kind,
        connection: target.description(),
        n,
        tasks,
        phases,
    })
}

/// One increment and one acquisition, on keys of their own, outside any measurement.
async fn warm_up(storage: &PluginStorage) -> Result<(), BoxError> {
    let key = storage.key(None, &["counters", "warm-up"])?;
    storage.increment(&key, 1).await?;
    let guard = storage
        .acquire_lock("warm-up", lock_options("warm-up"))
        .await?
        .ok_or("could not acquire the free warm-up lock")?;
    guard.release().await?;
    Ok(())
}

/// What a phase measured, before it is turned into a [`PhaseResult`].
struct Timed {
    elapsed: Duration,
    requests: RequestStats,
}

impl Timed {
    /// The phase result of `ops` operations that each make `writes_per_op` successful writes.
    fn result(
        self,
        name: &'static str,
        tasks: usize,
        ops: usize,
        writes_per_op: u64,
    ) -> PhaseResult {
        let puts = self.requests.count(RequestKind::Put);
        PhaseResult {
            name,
            tasks,
            measurement: Measurement::new(ops, self.elapsed, self.requests.total()),
            failed_writes: puts.saturating_sub(writes_per_op * ops as u64),
            requests: self.requests,
            final_value: None,
            overlaps: None,
            max_wait: None,
        }
    }
}

/// N sequential increments of one counter; every returned value is checked.
async fn counter_1task(storage: &PluginStorage, n: usize) -> Result<PhaseResult, BoxError> {
    let key = storage.key(None, &["counters", "sequential"])?;
    let before = storage.store().requests();
    let started = Instant::now();
    for i in 1..=n {
        let value = storage.increment(&key, 1).await?;
        if value != i as i64 {
            return Err(format!("counter_1task: increment {i} returned {value}").into());
        }
    }
    let timed = Timed {
        elapsed: started.elapsed(),
        requests: storage.store().requests().since(&before),
    };
    let final_value = check_counter(storage, "counter_1task", &key, n).await?;
    Ok(PhaseResult {
        final_value: Some(final_value),
        ..timed.result("counter_1task", 1, n, 1)
    })
}

/// T tasks incrementing one counter concurrently, N in all; the counter must read N after.
async fn counter_contended(
    storage: &PluginStorage,
    n: usize,
    tasks: usize,
) -> Result<PhaseResult, BoxError> {
    let key = storage.key(None, &["counters", "contended"])?;
    let max_wait = Arc::new(AtomicU64::new(0));
    let before = storage.store().requests();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (storage, key, max_wait) = (storage.clone(), key.clone(), Arc::clone(&max_wait));
            tokio::spawn(async move {
                for _ in 0..quota(n, tasks, task) {
                    let op = Instant::now();
                    storage.increment(&key, 1).await?;
                    record_max(&max_wait, op.elapsed());
                }
                Ok::<(), BoxError>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    let timed = Timed {
        elapsed: started.elapsed(),
        requests: storage.store().requests().since(&before),
    };
    let final_value = check_counter(storage, "counter_contended", &key, n).await?;
    Ok(PhaseResult {
        final_value: Some(final_value),
        max_wait: Some(Duration::from_micros(max_wait.load(Ordering::Relaxed))),
        ..timed.result("counter_contended", tasks, n, 1)
    })
}

/// Reads the counter at `key` back (outside the measurement); fails loudly unless it is `n`.
async fn check_counter(
    storage: &PluginStorage,
    phase: &str,
    key: &s3db_core::Key,
    n: usize,
) -> Result<i64, BoxError> {
    let value = storage.counter(key).await?;
    if value == n as i64 {
        Ok(value)
    } else {
        Err(
            format!("{phase}: LOST UPDATES: the counter reads {value} after {n} increments of 1")
                .into(),
        )
    }
}

/// N sequential acquire + release of one lock.
async fn lock_1task(storage: &PluginStorage, n: usize) -> Result<PhaseResult, BoxError> {
    let options = lock_options("bench-sequential");
    let before = storage.store().requests();
    let started = Instant::now();
    for i in 0..n {
        let guard = storage
            .acquire_lock("sequential", options.clone())
            .await?
            .ok_or_else(|| {
                format!(
                    "lock_1task: acquisition {i} of a free lock timed out after {LOCK_TIMEOUT:?}"
                )
            })?;
        guard.release().await?;
    }
    let timed = Timed {
        elapsed: started.elapsed(),
        requests: storage.store().requests().since(&before),
    };
    Ok(timed.result("lock_1task", 1, n, 2))
}

/// T tasks contending for one lock, N acquisitions in all, each released at once; an
/// [`AtomicBool`] held while the lock is held counts overlapping holders, which must be none.
async fn lock_contended(
    storage: &PluginStorage,
    n: usize,
    tasks: usize,
) -> Result<PhaseResult, BoxError> {
    let held = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let max_wait = Arc::new(AtomicU64::new(0));
    let before = storage.store().requests();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let storage = storage.clone();
            let (held, overlaps, max_wait) = (
                Arc::clone(&held),
                Arc::clone(&overlaps),
                Arc::clone(&max_wait),
            );
            let options = lock_options(&format!("bench-task-{task}"));
            tokio::spawn(async move {
                for i in 0..quota(n, tasks, task) {
                    let op = Instant::now();
                    let guard = storage
                        .acquire_lock("contended", options.clone())
                        .await?
                        .ok_or_else(|| {
                            format!(
                                "lock_contended: task {task} waited more than {LOCK_TIMEOUT:?} \
                                 for acquisition {i}"
                            )
                        })?;
                    record_max(&max_wait, op.elapsed());
                    // Critical section: nobody else may be inside.
                    if held.swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    if !held.swap(false, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    guard.release().await?;
                }
                Ok::<(), BoxError>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    let timed = Timed {
        elapsed: started.elapsed(),
        requests: storage.store().requests().since(&before),
    };
    let overlaps = overlaps.load(Ordering::SeqCst);
    if overlaps != 0 {
        return Err(format!(
            "lock_contended: MUTUAL EXCLUSION VIOLATED: {overlaps} overlaps of two holders in {n} \
             acquisitions by {tasks} tasks"
        )
        .into());
    }
    Ok(PhaseResult {
        overlaps: Some(overlaps),
        max_wait: Some(Duration::from_micros(max_wait.load(Ordering::Relaxed))),
        ..timed.result("lock_contended", tasks, n, 2)
    })
}

/// Raises `max` (microseconds) to `elapsed` if it is longer.
fn record_max(max: &AtomicU64, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    max.fetch_max(micros, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Prepared, prepare};

    #[test]
    fn quotas_add_up() {
        for (n, tasks) in [(2000, 16), (100, 4), (10, 3), (3, 3)] {
            let total: usize = (0..tasks).map(|t| quota(n, tasks, t)).sum();
            assert_eq!(total, n, "n = {n}, tasks = {tasks}");
        }
        assert_eq!(quota(10, 3, 0), 4);
        assert_eq!(quota(10, 3, 2), 3);
    }

    /// Runs the workload with 24 operations and 4 tasks, and checks what every phase did.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_every_phase_on_memory_and_file() -> Result<(), BoxError> {
        const N: u64 = 24;
        for kind in [BackendKind::Memory, BackendKind::File] {
            let Prepared::Ready(target) = prepare(kind, crate::backend::run_id())? else {
                return Err("memory and file are always available".into());
            };
            let result = run(&target, N as usize, 4).await?;
            let names: Vec<_> = result.phases.iter().map(|p| p.name).collect();
            assert_eq!(names, PHASES);
            for phase in &result.phases {
                assert_eq!(phase.measurement.ops, N, "{kind} {}", phase.name);
                let is_counter = phase.name.starts_with("counter");
                assert_eq!(
                    phase.final_value.is_some(),
                    is_counter,
                    "{kind} {}",
                    phase.name
                );
                if is_counter {
                    assert_eq!(phase.final_value, Some(N as i64), "{kind} {}", phase.name);
                }
                let overlaps = (phase.name == "lock_contended").then_some(0);
                assert_eq!(phase.overlaps, overlaps, "{kind} {}", phase.name);
            }
            let phase = |name| result.phase(name).ok_or("missing phase");
            // Alone, an increment is one GET and one conditional PUT.
            let counter = phase("counter_1task")?;
            assert_eq!(counter.measurement.requests, 2 * N, "{kind}");
            assert_eq!(counter.failed_writes, 0, "{kind}");
            // Alone, an acquisition and its release write twice, and read at most once more
            // after a failed create.
            let lock = phase("lock_1task")?;
            assert!(
                (2 * N..=4 * N).contains(&lock.measurement.requests),
                "{kind}: {} requests",
                lock.measurement.requests
            );
            // Contended, every increment still writes once, plus one read per try.
            let contended = phase("counter_contended")?;
            assert!(contended.measurement.requests >= 2 * N, "{kind}");
            assert_eq!(contended.tasks, 4);
            assert!(phase("lock_contended")?.measurement.requests >= 2 * N);
        }
        Ok(())
    }
}
