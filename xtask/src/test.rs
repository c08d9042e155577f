//! `cargo xtask test [ARGS...]`: the whole test suite against a real S3/SQS
//! test server, the one command to run on a fresh machine.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use crate::{Error, cmd, services};

/// Starts the test server, runs `cargo test --workspace --all-features ARGS`
/// with the variables of `services.env` in its environment, always stops the
/// server again, and exits with the status of the test run.
///
/// When the server cannot start, `CI=true` makes that an error; otherwise a
/// warning says that server-backed tests will skip, and the tests run anyway.
pub(crate) fn run(root: &Path, extra: &[String]) -> Result<ExitCode, Error> {
    let server = match services::up(root) {
        Ok(up) => Some(up),
        Err(err) if is_ci() => {
            return Err(Error::Failed(format!(
                "cannot start the S3/SQS test server (CI=true makes this fatal): {err}"
            )));
        }
        Err(err) => {
            eprintln!("xtask: warning: cannot start the S3/SQS test server: {err}");
            eprintln!(
                "xtask: warning: tests that need the server will SKIP \
                 (with CI=true this is an error)"
            );
            None
        }
    };

    let mut command = cmd::cargo(root);
    command
        .args(["test", "--workspace", "--all-features"])
        .args(extra)
        .envs(
            server
                .iter()
                .flat_map(|up| up.env.iter())
                .map(|(key, value)| (key, value)),
        );
    let shown = cmd::shown("cargo test --workspace --all-features", extra);
    let started = Instant::now();
    let status = cmd::status(&mut command, &shown);

    // Always stop a server this run started, whatever the tests did.
    if server.as_ref().is_some_and(|up| up.started_here)
        && let Err(err) = services::down(root)
    {
        eprintln!("xtask: warning: cannot stop the S3/SQS test server: {err}");
    }

    let status = status?;
    let server = if server.is_some() {
        format!(
            "against moto {} (bucket `{}`)",
            services::MOTO_VERSION,
            services::BUCKET
        )
    } else {
        "WITHOUT the test server (server-backed tests skipped)".to_owned()
    };
    let outcome = if status.success() {
        "passed".to_owned()
    } else {
        format!("FAILED ({status})")
    };
    eprintln!(
        "xtask: tests {outcome} in {:.0} s, {server}",
        started.elapsed().as_secs_f64()
    );
    Ok(cmd::exit_code(status))
}

/// Whether this runs in CI: `CI` is `true` (any case) or `1`.
fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}
