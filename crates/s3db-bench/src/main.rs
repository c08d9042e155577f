//! `s3db-bench`: the benchmark harness of s3db (plain binary, no criterion).
//!
//! ```text
//! cargo run --release -p s3db-bench -- store [--backend memory|file|s3] [--n N] [--json]
//! cargo run --release -p s3db-bench -- resources [--backend memory|file|s3] [--n N] [--json]
//! cargo run --release -p s3db-bench -- plugin-storage [--backend …] [--n N] [--tasks T] [--json]
//! cargo run --release -p s3db-bench -- plugins [--backend memory|file|s3] [--n N] [--json]
//! ```
//!
//! `cargo xtask bench <workload>` runs the same command with `S3DB_TEST_S3` pointing at the S3
//! test server. The `store` workload measures the storage layer ([`s3db_core::Store`]) next to the
//! raw `object_store` of the same backend (see [`store_workload`]); the `resources` workload runs
//! the original s3db.js's standard workload on the resource model (see [`resources_workload`] and
//! [`original`]); the `plugin-storage` workload measures `PluginStorage` counters and locks alone
//! and under contention (see [`plugin_storage_workload`]); the `plugins` workload measures the
//! cache, costs and metrics plugins (see [`plugins_workload`]). [`report`] prints any of them.

mod backend;
mod cli;
mod measure;
mod original;
mod plugin_storage_workload;
mod plugins_workload;
mod report;
mod resources_workload;
mod store_workload;

use std::process::ExitCode;

use crate::backend::{BackendKind, Prepared};
use crate::cli::{Command, Options, USAGE, Workload};
use crate::measure::BoxError;

/// Exit status for usage errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("s3db-bench: {err}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Run(workload, options) => match run(workload, &options, &args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("s3db-bench: error: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs `workload` on every selected backend and prints one report per backend.
fn run(workload: Workload, options: &Options, args: &[String]) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let command = format!("cargo run --release -p s3db-bench -- {}", args.join(" "));
    let backends: Vec<BackendKind> = match options.backend {
        Some(kind) => vec![kind],
        None => BackendKind::ALL.to_vec(),
    };
    let run_id = backend::run_id();
    for kind in backends {
        let n = options.n.unwrap_or_else(|| workload.default_n(kind));
        let tasks = options
            .tasks
            .unwrap_or_else(|| workload.default_tasks(kind));
        let target = match backend::prepare(kind, run_id)? {
            Prepared::Ready(target) => target,
            Prepared::Skipped(reason) => {
                eprintln!("s3db-bench: skipping the {kind} backend: {reason}");
                continue;
            }
        };
        eprintln!(
            "s3db-bench: {} workload on {kind} ({}), n = {n} …",
            workload.name(),
            target.description()
        );
        let outcome = runtime.block_on(async {
            match workload {
                Workload::Store => {
                    let result = store_workload::run(&target, n).await?;
                    let header = report::Header::now(&command);
                    Ok::<_, BoxError>(if options.json {
                        report::json(&header, &result).to_string()
                    } else {
                        report::markdown(&header, &result)
                    })
                }
                Workload::Resources => {
                    let result = resources_workload::run(&target, n).await?;
                    let header = report::Header::now(&command);
                    Ok(if options.json {
                        report::resources_json(&header, &result).to_string()
                    } else {
                        report::resources_markdown(&header, &result)
                    })
                }
                Workload::PluginStorage => {
                    let result = plugin_storage_workload::run(&target, n, tasks).await?;
                    let header = report::Header::now(&command);
                    Ok(if options.json {
                        report::plugin_storage_json(&header, &result).to_string()
                    } else {
                        report::plugin_storage_markdown(&header, &result)
                    })
                }
                Workload::Plugins => {
                    let result = plugins_workload::run(&target, n).await?;
                    let header = report::Header::now(&command);
                    Ok(if options.json {
                        plugins_workload::json(&header, &result).to_string()
                    } else {
                        plugins_workload::markdown(&header, &result)
                    })
                }
            }
        });
        // Clean the S3 prefix up whatever the outcome.
        if kind == BackendKind::S3 {
            match runtime.block_on(backend::clean_up(&target)) {
                Ok(deleted) => eprintln!("s3db-bench: deleted the {deleted} benchmark objects"),
                Err(err) => eprintln!("s3db-bench: warning: cannot delete the objects: {err}"),
            }
        }
        println!("{}", outcome?);
    }
    Ok(())
}
