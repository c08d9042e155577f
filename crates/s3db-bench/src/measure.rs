//! Measurements: wall-clock time of a phase, operations and requests, and the concurrent driver.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Error type of the harness.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Tasks of the concurrent phases (of both workloads).
pub const CONCURRENCY: usize = 32;

/// What one phase cost on one side (storage layer or raw `object_store`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Operations done (for a listing: keys listed).
    pub ops: u64,
    /// Wall-clock time of the phase.
    pub elapsed: Duration,
    /// Requests made to the store (counted by the layer; for raw, operations issued).
    pub requests: u64,
}

impl Measurement {
    /// A measurement of `ops` operations that took `elapsed` and made `requests` requests.
    pub fn new(ops: usize, elapsed: Duration, requests: u64) -> Self {
        Self {
            ops: ops as u64,
            elapsed,
            requests,
        }
    }

    /// Operations per second.
    pub fn ops_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            f64::INFINITY
        }
    }

    /// Wall-clock milliseconds.
    pub fn ms(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1000.0
    }

    /// Requests per operation.
    pub fn requests_per_op(&self) -> f64 {
        if self.ops == 0 {
            0.0
        } else {
            self.requests as f64 / self.ops as f64
        }
    }
}

/// Runs `op(0)`, …, `op(n - 1)` on `tasks` spawned tasks that each take the next index until none
/// is left; returns the wall-clock time. The first error ends the run.
pub async fn concurrently<F, Fut>(n: usize, tasks: usize, op: F) -> Result<Duration, BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks.max(1))
        .map(|_| {
            let next = Arc::clone(&next);
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<(), BoxError>(());
                    }
                    op(i).await?;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let m = Measurement::new(500, Duration::from_millis(250), 1000);
        assert!((m.ops_per_s() - 2000.0).abs() < 1e-6);
        assert!((m.ms() - 250.0).abs() < 1e-6);
        assert!((m.requests_per_op() - 2.0).abs() < 1e-9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrently_runs_every_index_once() -> Result<(), BoxError> {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        concurrently(100, 8, move |i| {
            let recorder = Arc::clone(&recorder);
            async move {
                recorder.lock().map_err(|_| "poisoned")?.push(i);
                Ok(())
            }
        })
        .await?;
        let mut seen = seen.lock().map_err(|_| "poisoned")?.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        Ok(())
    }
}
