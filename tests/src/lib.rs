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

/// Appends `line` (a newline is added) to the file at `path`, creating it: opened in append mode
/// for this one line and written with a single `write` call, so lines of concurrent writers (other
/// processes too) never interleave.
///
/// # Errors
/// If the file cannot be opened or the line is not written whole.
pub fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let text = format!("{line}\n");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let written = file.write(text.as_bytes())?;
    if written == text.len() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "short write: {written} of {} bytes",
            text.len()
        )))
    }
}

/// Checks a log of critical sections written by lock holders: lines `start <worker> <n>` and
/// `end <worker> <n>` must strictly alternate, each `end` matching the `start` before it (so no
/// two holders were ever inside at once). Returns the number of critical sections.
///
/// # Errors
/// A description of the first violation (with its line number).
pub fn check_exclusive_log(text: &str) -> Result<usize, String> {
    let mut open: Option<(String, String)> = None;
    let mut sections = 0;
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let &[what, worker, n] = fields.as_slice() else {
            return Err(format!("line {}: malformed {line:?}", i + 1));
        };
        match (what, open.take()) {
            ("start", None) => open = Some((worker.to_owned(), n.to_owned())),
            ("start", Some((w, m))) => {
                return Err(format!(
                    "line {}: {line:?} while {w} {m} was still inside (overlap)",
                    i + 1
                ));
            }
            ("end", Some((w, m))) if w == worker && m == n => sections += 1,
            ("end", Some((w, m))) => {
                return Err(format!(
                    "line {}: {line:?} but {w} {m} was the one inside (overlap)",
                    i + 1
                ));
            }
            ("end", None) => return Err(format!("line {}: {line:?} without a start", i + 1)),
            _ => return Err(format!("line {}: malformed {line:?}", i + 1)),
        }
    }
    match open {
        Some((w, m)) => Err(format!("{w} {m} never ended")),
        None => Ok(sections),
    }
}
