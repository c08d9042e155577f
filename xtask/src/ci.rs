//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.

use std::path::Path;
use std::process::ExitCode;

use crate::{Error, cmd, test};

/// The cargo invocations run before the tests, in order.
const CHECKS: [&[&str]; 2] = [
    &["fmt", "--all", "--", "--check"],
    &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ],
];

/// Runs the formatting check, clippy, then [`test::run`]; takes no arguments.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<ExitCode, Error> {
    if !args.is_empty() {
        return Err(Error::Usage(format!(
            "`cargo xtask ci` takes no arguments (got {})",
            args.join(" ")
        )));
    }
    for check in CHECKS {
        let shown = format!("cargo {}", check.join(" "));
        let status = cmd::status(cmd::cargo(root).args(check), &shown)?;
        if !status.success() {
            return Err(Error::Failed(format!("`{shown}` failed ({status})")));
        }
    }
    test::run(root, &[])
}
