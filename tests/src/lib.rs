//! Helpers for the workspace-level tests: running several OS processes against one bucket.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Child processes that are killed if the test ends (or panics) before they exit.
#[derive(Debug, Default)]
pub struct Workers {
    children: Vec<(String, Child)>,
}

impl Workers {
    /// No workers yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `program` with `args`; its output goes to the test's output.
    ///
    /// # Panics
    /// If the program cannot be started.
    pub fn spawn(&mut self, name: &str, program: &str, args: &[&str]) {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({program}): {e}"));
        self.children.push((name.to_owned(), child));
    }

    /// Waits for every worker to exit, up to `timeout` in all; returns each one's status.
    ///
    /// # Panics
    /// If a worker is still running at the deadline (all are killed first) or cannot be waited on.
    pub fn wait_all(mut self, timeout: Duration) -> Vec<(String, ExitStatus)> {
        let deadline = Instant::now() + timeout;
        let mut done = Vec::new();
        while !self.children.is_empty() {
            let mut i = 0;
            while i < self.children.len() {
                match self.children[i].1.try_wait() {
                    Ok(Some(status)) => {
                        let (name, _) = self.children.swap_remove(i);
                        done.push((name, status));
                    }
                    Ok(None) => i += 1,
                    Err(e) => panic!("waiting for {}: {e}", self.children[i].0),
                }
            }
            if self.children.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let names: Vec<_> = self.children.iter().map(|(n, _)| n.clone()).collect();
                drop(self); // kills them
                panic!("workers {names:?} still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
