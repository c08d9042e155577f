//! Command line: which workload, which backends, how many objects, which output.

use std::fmt;

use crate::backend::BackendKind;

/// Usage text, printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage: s3db-bench <workload> [options]
       (through cargo: cargo run --release -p s3db-bench -- <workload> [options];
        cargo xtask bench <workload>  runs it with the S3 test server up)

workloads:
  store       the storage layer (s3db_core::Store) next to the raw object_store of the same
              backend: put, get, list, put_conc, get_conc (32 tasks), update
  resources   the resource model, the standard workload of the original s3db.js
              (docs/benchmarks.md): insert_seq, get_seq, update_seq, count, list,
              query_partition, delete_seq, insert_conc, get_conc (32 tasks)
  plugin-storage
              PluginStorage counters and locks under contention: counter_1task,
              counter_contended, lock_1task, lock_contended (T tasks on one counter or lock;
              checks the final count and mutual exclusion)
  plugins     the cache, costs and metrics plugins: sequential gets without cache vs with the
              cache's memory driver (2nd pass = hits), and on memory the insert overhead of each
              plugin alone and of all three (median over 15 rounds of the ratio to the
              same round without plugin)

options (every workload):
  --backend memory|file|s3   run one backend only (default: all three; s3 needs S3DB_TEST_S3,
                             e.g. http://KEY:SECRET@127.0.0.1:PORT/bucket)
  --n N                      objects (store), records (resources) or increments and
                             acquisitions (plugin-storage) per phase; default:
                             store 20000 on memory, 2000 on file, 200 on s3;
                             resources 2000 on memory and file, 200 on s3;
                             plugin-storage 2000 on memory, 1000 on file, 100 on s3;
                             plugins 2000 on memory and file, 200 on s3
  --tasks T                  plugin-storage only: contending tasks (default 16; 4 on s3)
  --json                     one JSON object per backend instead of the markdown table
  -h, --help                 this text";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the usage and exit successfully.
    Help,
    /// Run a workload.
    Run(Workload, Options),
}

/// A workload of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// The storage layer next to raw `object_store` ([`crate::store_workload`]).
    Store,
    /// The resource model, the original's standard workload ([`crate::resources_workload`]).
    Resources,
    /// `PluginStorage` counters and locks under contention ([`crate::plugin_storage_workload`]).
    PluginStorage,
    /// The cache, costs and metrics plugins ([`crate::plugins_workload`]).
    Plugins,
}

impl Workload {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Resources => "resources",
            Self::PluginStorage => "plugin-storage",
            Self::Plugins => "plugins",
        }
    }

    /// Objects (or records) per phase on `kind` when `--n` is not given.
    pub fn default_n(self, kind: BackendKind) -> usize {
        match self {
            Self::Store => kind.default_n(),
            // The sizes of the original's standard workload (BENCH.md).
            Self::Resources | Self::Plugins => match kind {
                BackendKind::Memory | BackendKind::File => 2000,
                BackendKind::S3 => 200,
            },
            // The S3 test server does ~400 requests/s: 100 keeps each contended phase to a few
            // seconds there.
            Self::PluginStorage => match kind {
                BackendKind::Memory => 2000,
                BackendKind::File => 1000,
                BackendKind::S3 => 100,
            },
        }
    }

    /// Contending tasks of the `plugin-storage` workload on `kind` when `--tasks` is not given.
    pub fn default_tasks(self, kind: BackendKind) -> usize {
        match kind {
            BackendKind::Memory | BackendKind::File => 16,
            BackendKind::S3 => 4,
        }
    }
}

/// Options of a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Run this backend only (`None`: all of them).
    pub backend: Option<BackendKind>,
    /// Objects per phase for every backend (`None`: the backend's default).
    pub n: Option<usize>,
    /// Contending tasks of the `plugin-storage` workload (`None`: the backend's default).
    pub tasks: Option<usize>,
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
        "store" => parse_options(rest).map(|o| Command::Run(Workload::Store, o)),
        "resources" => parse_options(rest).map(|o| Command::Run(Workload::Resources, o)),
        "plugins" => parse_options(rest).map(|o| Command::Run(Workload::Plugins, o)),
        "plugin-storage" => {
            let options = parse_options(rest)?;
            Ok(Command::Run(Workload::PluginStorage, options))
        }
        other => Err(UsageError(format!(
            "unknown workload `{other}`; expected `store`, `resources`, `plugin-storage` or \
             `plugins`"
        ))),
    }
}

/// Parses the options of a workload.
fn parse_options(args: &[String]) -> Result<Options, UsageError> {
    let mut options = Options::default();
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
            "--n" => options.n = Some(positive(name, &value()?)?),
            "--tasks" => options.tasks = Some(positive(name, &value()?)?),
            "--json" if inline.is_none() => options.json = true,
            other => return Err(UsageError(format!("unknown option `{other}`"))),
        }
    }
    Ok(options)
}

/// `value` as a positive integer, for option `name`.
fn positive(name: &str, value: &str) -> Result<usize, UsageError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| UsageError(format!("`{name}` needs a positive integer, got `{value}`")))
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
            Ok(Command::Run(
                Workload::Store,
                Options {
                    backend: Some(BackendKind::File),
                    n: Some(50),
                    tasks: None,
                    json: true,
                }
            ))
        );
        assert_eq!(
            parse(&args("store --n=7")),
            Ok(Command::Run(
                Workload::Store,
                Options {
                    n: Some(7),
                    ..Options::default()
                }
            ))
        );
        assert_eq!(
            parse(&args("resources --backend s3 --json")),
            Ok(Command::Run(
                Workload::Resources,
                Options {
                    backend: Some(BackendKind::S3),
                    n: None,
                    tasks: None,
                    json: true,
                }
            ))
        );
        assert_eq!(
            parse(&args("plugin-storage --backend memory --n 64 --tasks 8")),
            Ok(Command::Run(
                Workload::PluginStorage,
                Options {
                    backend: Some(BackendKind::Memory),
                    n: Some(64),
                    tasks: Some(8),
                    json: false,
                }
            ))
        );
        assert_eq!(Workload::PluginStorage.default_n(BackendKind::File), 1000);
        assert_eq!(Workload::PluginStorage.default_n(BackendKind::S3), 100);
        assert_eq!(
            Workload::PluginStorage.default_tasks(BackendKind::Memory),
            16
        );
        assert_eq!(Workload::PluginStorage.default_tasks(BackendKind::S3), 4);
        assert_eq!(Workload::Resources.default_n(BackendKind::Memory), 2000);
        assert_eq!(Workload::Resources.default_n(BackendKind::S3), 200);
        assert_eq!(Workload::Store.default_n(BackendKind::Memory), 20_000);
        assert_eq!(
            parse(&args("plugins --backend s3")),
            Ok(Command::Run(
                Workload::Plugins,
                Options {
                    backend: Some(BackendKind::S3),
                    ..Options::default()
                }
            ))
        );
        assert_eq!(Workload::Plugins.default_n(BackendKind::S3), 200);
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(parse(&args("store --help")), Ok(Command::Help));
        assert_eq!(
            parse(&args("resources")),
            Ok(Command::Run(Workload::Resources, Options::default()))
        );
        assert!(parse(&args("resources --bogus")).is_err());
        assert!(parse(&args("")).is_err());
        assert!(parse(&args("nope")).is_err());
        assert!(parse(&args("store --n 0")).is_err());
        assert!(parse(&args("store --n")).is_err());
        assert!(parse(&args("store --backend ftp")).is_err());
        assert!(parse(&args("store --bogus")).is_err());
        assert!(parse(&args("plugin-storage --tasks 0")).is_err());
    }
}
