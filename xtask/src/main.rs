//! Project automation for s3db, run as `cargo xtask <command>`.
//!
//! The crate is deliberately std-only so that it builds in seconds on a fresh
//! machine. See [`USAGE`] for the commands it offers.

mod bench;
mod ci;
mod cmd;
mod http;
mod services;
mod test;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Usage text printed by `cargo xtask help` and on command-line errors.
const USAGE: &str = "\
Usage: cargo xtask <command> [args]

Commands:
  test [ARGS...]           start the S3/SQS test server, run
                           `cargo test --workspace --all-features [ARGS...]`
                           against it, stop the server if it started it (the command to run the
                           whole suite on a fresh machine)
  ci                       cargo fmt --check, cargo clippy -D warnings, then `test`
  bench <store|resources|plugin-storage|plugins> [ARGS...]
                           start the test server, run
                           `cargo run --release -p s3db-bench -- <workload> [ARGS...]`,
                           stop the server if it started it
  services up              install (first run only) and start moto on 127.0.0.1,
                           create bucket `s3db-test`, write target/services/services.env
  services down            stop the test server
  services status          tell whether the test server runs, and where
  help                     show this text

Environment:
  CI=true                  `test`/`ci` fail when the test server cannot start
                           (otherwise server-backed tests are skipped with a warning)
  CARGO                    cargo binary to run (default: `cargo`)
";

/// Why a command did not succeed; decides the message and the exit status.
#[derive(Debug)]
pub(crate) enum Error {
    /// The command line is wrong: the usage text is printed, exit status 2.
    Usage(String),
    /// The command failed: the message is printed, exit status 1.
    Failed(String),
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// Entry point: runs the command and turns its outcome into an exit status.
fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(Error::Usage(message)) => {
            eprintln!("xtask: {message}\n");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
        Err(Error::Failed(message)) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line and dispatches to the command's module.
fn run() -> Result<ExitCode, Error> {
    let args = std::env::args_os()
        .skip(1)
        .map(OsString::into_string)
        .collect::<Result<Vec<String>, OsString>>()
        .map_err(|arg| Error::Usage(format!("argument {arg:?} is not valid UTF-8")))?;
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    };
    match command.as_str() {
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        "services" => services::cli(&workspace_root()?, rest),
        "test" => test::run(&workspace_root()?, rest),
        "ci" => ci::run(&workspace_root()?, rest),
        "bench" => bench::run(&workspace_root()?, rest),
        other => Err(Error::Usage(format!("unknown command `{other}`"))),
    }
}

/// The workspace root: the parent of this crate's directory (`xtask/` lives at the root).
fn workspace_root() -> Result<PathBuf, Error> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            Error::Failed(format!(
                "cannot find the workspace root above {}",
                env!("CARGO_MANIFEST_DIR")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = workspace_root();
        assert!(
            matches!(&root, Ok(root) if root.join("Cargo.toml").is_file() && root.join("xtask").is_dir()),
            "unexpected workspace root {root:?}"
        );
    }

    #[test]
    fn usage_lists_every_command() {
        for command in [
            "test",
            "ci",
            "bench",
            "services up",
            "services down",
            "services status",
            "help",
        ] {
            assert!(USAGE.contains(command), "usage misses `{command}`");
        }
    }
}
