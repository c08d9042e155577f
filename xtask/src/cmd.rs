//! Running child processes (mostly cargo) and mirroring their exit status.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus};

/// A `cargo` command run in the workspace root.
///
/// Uses the binary named by `$CARGO` (cargo sets it for the programs it runs,
/// so `cargo xtask` reuses the very same toolchain), else `cargo` from `PATH`.
pub(crate) fn cargo(root: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command.current_dir(root);
    command
}

/// Runs `command` with inherited stdio and returns how it ended.
///
/// `shown` is the command line as printed in progress and error messages.
pub(crate) fn status(command: &mut Command, shown: &str) -> Result<ExitStatus, String> {
    eprintln!("xtask: running `{shown}`");
    command.status().map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => format!(
            "cannot run `{shown}`: {:?} not found on PATH",
            command.get_program()
        ),
        _ => format!("cannot run `{shown}`: {err}"),
    })
}

/// The exit status for xtask that mirrors a child's status.
///
/// A child killed by signal N maps to 128 + N, as shells do; codes that do not
/// fit into a `u8` map to 1.
pub(crate) fn exit_code(status: ExitStatus) -> ExitCode {
    if status.success() {
        return ExitCode::SUCCESS;
    }
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .and_then(|code| u8::try_from(code).ok())
        .filter(|&code| code != 0)
        .map_or(ExitCode::FAILURE, ExitCode::from)
}

/// A command line for messages: `base` followed by the extra arguments.
pub(crate) fn shown(base: &str, extra: &[String]) -> String {
    std::iter::once(base.to_owned())
        .chain(extra.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_mirrors_the_child() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), ExitCode::SUCCESS);
        // Raw wait statuses: exit code in the high byte, signal in the low bits.
        assert_eq!(
            exit_code(ExitStatus::from_raw(101 << 8)),
            ExitCode::from(101)
        );
        assert_eq!(exit_code(ExitStatus::from_raw(9)), ExitCode::from(137));
    }

    #[test]
    fn shows_the_command_line() {
        assert_eq!(shown("cargo test", &[]), "cargo test");
        assert_eq!(
            shown("cargo test", &["--".to_owned(), "--nocapture".to_owned()]),
            "cargo test -- --nocapture"
        );
    }
}
