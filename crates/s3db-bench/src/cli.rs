//! Command line: which workload, which backends, how many objects, which output.

use std::fmt;

use crate::backend::BackendKind;

/// Usage text, printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage: s3db-bench <workload> [options]
       (through cargo: cargo run --release -p s3db-bench -- <workload> [options];
        cargo xtask bench store  runs it with the S3 test server up)

workloads:
  store       the storage layer (s3db_core::Store) next to the raw object_store of the same
              backend: put, get, list, put_conc, get_conc (32 tasks), update
  resources   the resource model (not available yet)

options of `store`:
  --backend memory|file|s3   run one backend only (default: all three; s3 needs S3DB_TEST_S3,
                             e.g. http://KEY:SECRET@127.0.0.1:PORT/bucket)
  --n N                      objects per phase (default: 20000 on memory, 2000 on file, 200 on s3)
  --json                     one JSON object per backend instead of the markdown table
  -h, --help                 this text";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the usage and exit successfully.
    Help,
    /// The storage-layer workload.
    Store(StoreOptions),
    /// The resource-model workload (not available yet).
    Resources,
}

/// Options of the `store` workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Run this backend only (`None`: all of them).
    pub backend: Option<BackendKind>,
    /// Objects per phase for every backend (`None`: the backend's default).
    pub n: Option<usize>,
    /// Print JSON instead of markdown.
    pub json: bool,
}

/// A command line the harness does not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    let Some((workload, rest)) = args.split_first() else {
        return Err(UsageError("missing workload".to_owned()));
    };
    match workload.as_str() {
        "help" => Ok(Command::Help),
        "store" => parse_store(rest).map(Command::Store),
        "resources" => match rest.first() {
            Some(extra) => Err(UsageError(format!(
                "the resources workload takes no option (got `{extra}`)"
            ))),
            None => Ok(Command::Resources),
        },
        other => Err(UsageError(format!(
            "unknown workload `{other}`; expected `store` or `resources`"
        ))),
    }
}

/// Parses the options of the `store` workload.
fn parse_store(args: &[String]) -> Result<StoreOptions, UsageError> {
    let mut options = StoreOptions::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| UsageError(format!("`{name}` needs a value")))
        };
        match name {
            "--backend" => {
                let value = value()?;
                let kind = value.parse().map_err(|()| {
                    UsageError(format!(
                        "unknown backend `{value}`; expected memory, file or s3"
                    ))
                })?;
                options.backend = Some(kind);
            }
            "--n" => {
                let value = value()?;
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        UsageError(format!("`--n` needs a positive integer, got `{value}`"))
                    })?;
                options.n = Some(n);
            }
            "--json" if inline.is_none() => options.json = true,
            other => return Err(UsageError(format!("unknown option `{other}`"))),
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_store_options() {
        assert_eq!(
            parse(&args("store --backend file --n 50 --json")),
            Ok(Command::Store(StoreOptions {
                backend: Some(BackendKind::File),
                n: Some(50),
                json: true,
            }))
        );
        assert_eq!(
            parse(&args("store --n=7")),
            Ok(Command::Store(StoreOptions {
                n: Some(7),
                ..StoreOptions::default()
            }))
        );
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(parse(&args("store --help")), Ok(Command::Help));
        assert_eq!(parse(&args("resources")), Ok(Command::Resources));
        assert!(parse(&args("")).is_err());
        assert!(parse(&args("nope")).is_err());
        assert!(parse(&args("store --n 0")).is_err());
        assert!(parse(&args("store --n")).is_err());
        assert!(parse(&args("store --backend ftp")).is_err());
        assert!(parse(&args("store --bogus")).is_err());
    }
}
