//! Worker processes for cross-process tests: a test binary re-runs itself to run one of its own
//! tests as a separate OS process (Linux and macOS).
//!
//! The parent test starts workers with [`TestWorker::spawn`], naming the worker "test" and the
//! environment variables that tell it what to do; the worker test returns at once unless its
//! variables are set, so it passes when the whole binary runs. The parent then collects each
//! worker with [`TestWorker::finish`] (or [`TestWorker::wait`] after a [`TestWorker::kill`]), and
//! reads what the worker printed with [`WorkerOutput::reports`].
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use s3db_core::testing::{TestWorker, worker_var};
//!
//! const COUNT: &str = "MY_WORKER_COUNT";
//!
//! // The worker "test" (`#[tokio::test] async fn worker_process()`):
//! let Some(count) = worker_var::<u32>(COUNT) else {
//!     return Ok(()); // not started as a worker
//! };
//! println!("RESULT {}", count * 2);
//!
//! // The parent test:
//! let worker = TestWorker::spawn("worker_process", [(COUNT, "21")])?;
//! let output = worker.finish(Duration::from_secs(60)).await?;
//! assert_eq!(output.reports("RESULT ").collect::<Vec<_>>(), ["42"]);
//! # Ok(())
//! # }
//! ```

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often a waiting worker is checked for exit.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait, after a worker exited, for the end of its stdout.
const STDOUT_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for a killed worker to be reaped.
const REAP_LIMIT: Duration = Duration::from_secs(10);

/// A child process running one test of the current test binary (or any command, see
/// [`TestWorker::from_command`]), its stdout collected as it is written and its stderr inherited.
///
/// Dropping a worker that still runs kills it (`SIGKILL`) and reaps it, so no process outlives a
/// failed test.
#[derive(Debug)]
pub struct TestWorker {
    child: Child,
    pid: u32,
    stdout: Arc<Mutex<Vec<u8>>>,
    stdout_done: Option<oneshot::Receiver<()>>,
}

/// What a worker left behind: its exit status and everything it wrote to stdout.
#[derive(Debug, Clone)]
pub struct WorkerOutput {
    /// The worker's process id.
    pub pid: u32,
    /// How it exited.
    pub status: ExitStatus,
    /// Its stdout (invalid UTF-8 replaced).
    pub stdout: String,
}

/// Why a worker did not finish as expected.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker was still running at the time limit; it was killed.
    #[error("worker {pid} did not finish within {limit:?} and was killed; its stdout:\n{stdout}")]
    TimedOut {
        /// The worker's process id.
        pid: u32,
        /// The time limit it exceeded.
        limit: Duration,
        /// What it wrote to stdout before it was killed.
        stdout: String,
    },
    /// The worker exited unsuccessfully (a failing test, a panic, a signal).
    #[error("worker {} failed ({}); its stdout:\n{}", .0.pid, .0.status, .0.stdout)]
    Failed(WorkerOutput),
    /// Waiting for or killing the worker failed.
    #[error("worker {pid}: {source}")]
    Io {
        /// The worker's process id.
        pid: u32,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl TestWorker {
    /// Re-runs the current test binary as a worker that runs only the test `worker_test`
    /// (`--exact <worker_test> --nocapture --test-threads=1`), with the variables `env` added to
    /// this process's environment.
    ///
    /// # Errors
    /// When the current executable cannot be found or the process cannot be started.
    pub fn spawn<I, K, V>(worker_test: &str, env: I) -> std::io::Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["--exact", worker_test, "--nocapture", "--test-threads=1"])
            .envs(env);
        Self::from_command(command)
    }

    /// Starts `command` as a worker: its stdout piped and collected from now on (so a worker that
    /// writes a lot never blocks on a full pipe), its stderr inherited.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn from_command(mut command: Command) -> std::io::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = child.id();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (done, stdout_done) = oneshot::channel();
        if let Some(mut pipe) = child.stdout.take() {
            let sink = Arc::clone(&stdout);
            let reader = std::thread::Builder::new()
                .name(format!("worker-{pid}-stdout"))
                .spawn(move || {
                    let mut chunk = [0_u8; 8192];
                    loop {
                        match pipe.read(&mut chunk) {
                            Ok(0) => break,
                            Ok(n) => sink
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .extend_from_slice(&chunk[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                    let _ = done.send(());
                });
            if let Err(e) = reader {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
        Ok(Self {
            child,
            pid,
            stdout,
            stdout_done: Some(stdout_done),
        })
    }

    /// The worker's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills the worker at once (`SIGKILL`: no clean-up runs in it), e.g. mid-work; collect it
    /// afterwards with [`TestWorker::wait`]. Killing a worker that already exited does nothing.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()
    }

    /// Waits for the worker to exit, without blocking the async runtime, and returns its output
    /// whatever its exit status. A worker still running after `limit` is killed. The limit is
    /// measured on tokio's clock, so do not wait under a paused clock (`tokio::time::pause`).
    ///
    /// # Errors
    /// [`WorkerError::TimedOut`] when the worker had to be killed, [`WorkerError::Io`] when it
    /// could not be waited for.
    pub async fn wait(mut self, limit: Duration) -> Result<WorkerOutput, WorkerError> {
        let pid = self.pid;
        let io = |source| WorkerError::Io { pid, source };
        let Some(status) = self.exit_by(Instant::now() + limit).await.map_err(io)? else {
            self.child.kill().map_err(io)?;
            // A killed process may not be reaped yet: never hand back a live one.
            let _ = self.exit_by(Instant::now() + REAP_LIMIT).await;
            let stdout = self.take_stdout().await;
            return Err(WorkerError::TimedOut { pid, limit, stdout });
        };
        let stdout = self.take_stdout().await;
        Ok(WorkerOutput {
            pid,
            status,
            stdout,
        })
    }

    /// Waits for the worker like [`TestWorker::wait`] and checks that it succeeded.
    ///
    /// # Errors
    /// As [`TestWorker::wait`], and [`WorkerError::Failed`] (with its output) when the worker
    /// exited unsuccessfully.
    pub async fn finish(self, limit: Duration) -> Result<WorkerOutput, WorkerError> {
        let output = self.wait(limit).await?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(WorkerError::Failed(output))
        }
    }

    /// The exit status once the worker has exited, or `None` if it still runs at `deadline`.
    async fn exit_by(&mut self, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }

    /// Everything the worker wrote to stdout, once the pipe is closed (or after a grace period,
    /// should a process the worker started still hold it open).
    async fn take_stdout(&mut self) -> String {
        if let Some(done) = self.stdout_done.take() {
            let _ = tokio::time::timeout(STDOUT_GRACE, done).await;
        }
        let bytes =
            std::mem::take(&mut *self.stdout.lock().unwrap_or_else(PoisonError::into_inner));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        // Does nothing for a worker already reaped by `wait`.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl WorkerOutput {
    /// The text after `marker` on each stdout line that contains it, in order: a worker reports
    /// results as lines such as `RESULT e1 1 0`, read with `reports("RESULT ")`.
    ///
    /// The marker may be anywhere in a line, since the test harness can print
    /// `test worker_process ... ` just before a worker's first line.
    pub fn reports<'a>(&'a self, marker: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.stdout
            .lines()
            .filter_map(move |line| line.find(marker).map(|at| &line[at + marker.len()..]))
    }
}

/// The environment variable `name` parsed as `T`, or `None` when it is unset or does not parse:
/// how a worker test reads its instructions (`worker_var::<String>(CONN)` for text).
#[must_use]
pub fn worker_var<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> TestWorker {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        TestWorker::from_command(command).unwrap_or_else(|e| panic!("spawning sh: {e}"))
    }

    /// Whether a process with this id exists (`kill -0`).
    fn alive(pid: u32) -> bool {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until the worker has written something to stdout.
    async fn until_written(worker: &TestWorker) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker
            .stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
        {
            assert!(Instant::now() < deadline, "the worker wrote nothing");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn finish_returns_stdout_and_its_reports() {
        let worker = sh("echo hello; printf 'test w ... RESULT a 1\\n'; echo RESULT b 2");
        let pid = worker.pid();
        let out = worker
            .finish(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.pid, pid);
        assert!(out.status.success());
        assert!(out.stdout.starts_with("hello\n"), "{}", out.stdout);
        assert_eq!(out.reports("RESULT ").collect::<Vec<_>>(), ["a 1", "b 2"]);
        assert_eq!(out.reports("NOTHING ").count(), 0);
    }

    #[tokio::test]
    async fn an_unsuccessful_exit_is_an_error_with_the_output_for_finish_only() {
        let err = sh("echo partial; exit 3")
            .finish(Duration::from_secs(30))
            .await
            .err();
        match err {
            Some(WorkerError::Failed(out)) => {
                assert_eq!(out.status.code(), Some(3));
                assert_eq!(out.stdout, "partial\n");
                let text = WorkerError::Failed(out).to_string();
                assert!(
                    text.contains("failed") && text.contains("partial"),
                    "{text}"
                );
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        let out = sh("exit 4")
            .wait(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(4));
    }

    #[tokio::test]
    async fn a_worker_past_its_limit_is_killed() {
        let worker = sh("echo started; exec sleep 30");
        let pid = worker.pid();
        until_written(&worker).await;
        let started = std::time::Instant::now();
        match worker.finish(Duration::from_millis(500)).await {
            Err(WorkerError::TimedOut {
                pid: p,
                limit,
                stdout,
            }) => {
                assert_eq!((p, limit), (pid, Duration::from_millis(500)));
                assert_eq!(stdout, "started\n");
            }
            other => panic!("expected TimedOut, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!alive(pid), "the worker was killed and reaped");
    }

    #[tokio::test]
    async fn kill_stops_a_worker_mid_work_and_wait_collects_it() {
        use std::os::unix::process::ExitStatusExt;
        let mut worker = sh("echo working; exec sleep 30");
        until_written(&worker).await;
        worker.kill().unwrap_or_else(|e| panic!("kill: {e}"));
        let out = worker
            .wait(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.status.success());
        assert_eq!(out.status.signal(), Some(9), "SIGKILL");
        assert_eq!(out.stdout, "working\n");
    }

    #[tokio::test]
    async fn dropping_a_running_worker_kills_and_reaps_it() {
        let worker = sh("exec sleep 30");
        let pid = worker.pid();
        assert!(alive(pid));
        drop(worker);
        assert!(!alive(pid));
    }

    #[tokio::test]
    async fn a_large_output_never_blocks_the_worker() {
        // More than a pipe buffer, written before anyone waits for the worker.
        let worker = sh(
            "i=0; while [ $i -lt 5000 ]; do echo 'RESULT 0123456789012345678901234567890123456789'; i=$((i+1)); done",
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let out = worker
            .finish(Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.reports("RESULT ").count(), 5000);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiting_does_not_block_the_runtime() {
        let start = std::time::Instant::now();
        let ticker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            start.elapsed()
        });
        let out = sh("sleep 1; echo done")
            .finish(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let finished = start.elapsed();
        let ticked = ticker.await.unwrap_or_else(|e| panic!("{e}"));
        // Had waiting blocked the only runtime thread, the ticker would have run after it.
        assert!(ticked < finished, "{ticked:?} < {finished:?}");
        assert_eq!(out.stdout, "done\n");
    }

    #[test]
    fn worker_var_parses_or_is_none() {
        // Variables no other test sets.
        assert_eq!(worker_var::<u32>("S3DB_TEST_WORKER_VAR_UNSET_XYZ"), None);
        let path: Option<String> = worker_var("PATH");
        assert_eq!(path, std::env::var("PATH").ok());
        assert_eq!(worker_var::<u32>("PATH"), None, "not a number");
    }
}
