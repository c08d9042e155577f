//! `cargo xtask bench <store|resources|plugin-storage|plugins> [ARGS...]`: the benchmarks of the
//! `s3db-bench` crate against the S3/SQS test server.

use std::path::Path;
use std::process::ExitCode;

use crate::{Error, cmd, services};

/// The benchmarks `s3db-bench` offers.
const KINDS: [&str; 4] = ["store", "resources", "plugin-storage", "plugins"];

/// Starts the test server, runs `cargo run --release -p s3db-bench -- KIND
/// ARGS` with the variables of `services.env` in its environment, always
/// stops the server again, and exits with the benchmark's status.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<ExitCode, Error> {
    let Some((kind, _)) = args.split_first() else {
        return Err(Error::Usage(
            "usage: cargo xtask bench <store|resources|plugin-storage|plugins> [ARGS...]"
                .to_owned(),
        ));
    };
    if !KINDS.contains(&kind.as_str()) {
        return Err(Error::Usage(format!(
            "unknown benchmark `{kind}`; expected one of: {}",
            KINDS.join(", ")
        )));
    }

    let server = services::up(root)
        .map_err(|err| format!("cannot start the S3/SQS test server for the benchmark: {err}"))?;
    let mut command = cmd::cargo(root);
    command
        .args(["run", "--release", "-p", "s3db-bench", "--"])
        .args(args)
        .envs(server.env.iter().map(|(key, value)| (key, value)));
    let shown = cmd::shown("cargo run --release -p s3db-bench --", args);
    let status = cmd::status(&mut command, &shown);

    // Always stop a server this run started, whatever the benchmark did.
    if server.started_here
        && let Err(err) = services::down(root)
    {
        eprintln!("xtask: warning: cannot stop the S3/SQS test server: {err}");
    }
    Ok(cmd::exit_code(status?))
}
