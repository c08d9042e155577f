//! `s3db-bench`: the benchmark harness of s3db (plain binary, no criterion).
//!
//! ```text
//! cargo run --release -p s3db-bench -- store [--backend memory|file|s3] [--n N] [--json]
//! cargo run --release -p s3db-bench -- resources
//! ```
//!
//! `cargo xtask bench store` runs the same command with `S3DB_TEST_S3` pointing at the S3 test
//! server. The `store` workload measures the storage layer ([`s3db_core::Store`]) next to the raw
//! `object_store` of the same backend; see [`store_workload`] for the phases and [`report`] for the
//! output.

mod backend;
mod cli;
mod measure;
mod report;
mod store_workload;

use std::process::ExitCode;

use crate::backend::{BackendKind, Prepared};
use crate::cli::{Command, StoreOptions, USAGE};
use crate::measure::BoxError;

/// Exit status for usage errors and for workloads that cannot run yet.
const EXIT_USAGE: u8 = 2;

/// Message of the `resources` workload until the resource model exists.
const RESOURCES_UNAVAILABLE: &str = "the resources workload needs the resource model (issue 3: Database, create_resource); not available yet";

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
        Command::Resources => {
            eprintln!("{RESOURCES_UNAVAILABLE}");
            ExitCode::from(EXIT_USAGE)
        }
        Command::Store(options) => match run_store(&options, &args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("s3db-bench: error: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs the `store` workload on every selected backend and prints one report per backend.
fn run_store(options: &StoreOptions, args: &[String]) -> Result<(), BoxError> {
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
        let n = options.n.unwrap_or_else(|| kind.default_n());
        let target = match backend::prepare(kind, run_id)? {
            Prepared::Ready(target) => target,
            Prepared::Skipped(reason) => {
                eprintln!("s3db-bench: skipping the {kind} backend: {reason}");
                continue;
            }
        };
        eprintln!(
            "s3db-bench: store workload on {kind} ({}), n = {n} …",
            target.description()
        );
        let result = runtime.block_on(store_workload::run(&target, n))?;
        let header = report::Header::now(&command);
        if options.json {
            println!("{}", report::json(&header, &result));
        } else {
            println!("{}", report::markdown(&header, &result));
        }
        if kind == BackendKind::S3 {
            match runtime.block_on(store_workload::clean_up(&target)) {
                Ok(deleted) => eprintln!("s3db-bench: deleted the {deleted} benchmark objects"),
                Err(err) => eprintln!("s3db-bench: warning: cannot delete the objects: {err}"),
            }
        }
    }
    Ok(())
}
