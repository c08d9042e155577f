//! Reports: a markdown table or one JSON object per backend, for either workload.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::backend::BackendKind;
use crate::measure::{CONCURRENCY, Measurement};
use crate::original::{self, Baseline};
use crate::plugin_storage_workload::{
    LOCK_MAX_BACKOFF, LOCK_TIMEOUT, LOCK_TTL, PhaseResult as StoragePhase, PluginStorageResult,
};
use crate::resources_workload::{BIO_CHARS, RAW_PUT_ROUNDS, ResourcesResult};
use crate::store_workload::{BackendResult, Phase};

/// Version of this implementation, as the `resources` JSON reports it (`"impl":"s3db-rs"`).
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `insert_seq` ÷ raw put ratio the resource model aims at on memory.
pub const INSERT_VS_RAW_PUT_TARGET: f64 = 0.5;

/// What every report starts with: when, on what machine, with which command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Date and time of the run (UTC).
    pub date: String,
    /// Available parallelism (what `nproc` prints).
    pub cores: usize,
    /// The command that produced the report.
    pub command: String,
}

impl Header {
    /// The header of a run starting now.
    pub fn now(command: &str) -> Self {
        Self {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            command: command.to_owned(),
        }
    }
}

/// The markdown report of one backend: a header line and one table row per phase.
pub fn markdown(header: &Header, result: &BackendResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} (`{}`)\n\n{} · machine: {} cores · N = {} (200-byte bodies, 3 metadata \
         entries; concurrent phases: {CONCURRENCY} tasks) · `{}`\n",
        result.backend, result.connection, header.date, header.cores, result.n, header.command
    );
    out.push_str(
        "| phase | s3db ops/s | raw object_store ops/s | ratio | req/op | s3db ms | raw ms | requests s3db / raw |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for phase in &result.phases {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} / {} |",
            phase_label(phase),
            rate(phase.layer.ops_per_s()),
            phase.raw.map_or_else(dash, |r| rate(r.ops_per_s())),
            phase.ratio().map_or_else(dash, |r| format!("{r:.2}")),
            per_op(phase.layer.requests_per_op()),
            phase.layer.ms(),
            phase.raw.map_or_else(dash, |r| format!("{:.1}", r.ms())),
            phase.layer.requests,
            phase.raw.map_or_else(dash, |r| r.requests.to_string()),
        );
    }
    out
}

/// The JSON report of one backend (one line).
pub fn json(header: &Header, result: &BackendResult) -> Value {
    json!({
        "workload": "store",
        "backend": result.backend.name(),
        "connection": result.connection,
        "n": result.n,
        "concurrency": CONCURRENCY,
        "date": header.date,
        "cores": header.cores,
        "command": header.command,
        "phases": result.phases.iter().map(|phase| json!({
            "phase": phase.name,
            "s3db": side(&phase.layer),
            "raw": phase.raw.as_ref().map(side),
            "ratio": phase.ratio(),
        })).collect::<Vec<_>>(),
    })
}

/// The markdown report of the `resources` workload on one backend: a header line, one table row
/// per phase next to the original's figure, and notes (raw put on memory, baseline on file).
pub fn resources_markdown(header: &Header, result: &ResourcesResult) -> String {
    let baseline = Baseline::of(result.backend);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} (`{}`)\n\n{} · machine: {} cores · N = {} (body-overflow, partition byRegion, \
         {BIO_CHARS}-character bio; concurrent phases: {CONCURRENCY} tasks) · `{}`\n",
        result.backend, result.connection, header.date, header.cores, result.n, header.command
    );
    out.push_str(
        "| phase | ops/s | ms | requests | req/op | original ops/s | speed-up (ours/original) | original req/op | requests by kind |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for phase in &result.phases {
        let m = &phase.measurement;
        let figure = original::figure(baseline, phase.name);
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
            phase.name,
            rate(m.ops_per_s()),
            m.ms(),
            m.requests,
            per_op(m.requests_per_op()),
            figure.map_or_else(dash, |f| rate(f.ops_per_s)),
            figure.map_or_else(dash, |f| format!("{:.1}×", m.ops_per_s() / f.ops_per_s)),
            figure.map_or_else(dash, |f| format!("{:.1}", f.req_per_op)),
            by_kind(&phase.requests),
        );
    }
    let _ = writeln!(
        out,
        "\n`list` and `query_partition` count records as operations (ops/s = records/s), as the \
         original does; `count` is one operation, and the original published no figure for it. \
         Original: {}, {} column{}.",
        original::ORIGINAL,
        baseline.describe(),
        if result.backend == BackendKind::File {
            " (it has no figures on a local folder)"
        } else {
            ""
        }
    );
    if let (Some(ratio), Some(per_put), Some(same)) = (
        result.insert_vs_raw_put(),
        result.insert_put_vs_raw_put(),
        result.insert_vs_raw_same_objects(),
    ) {
        let rounds: Vec<String> = result
            .insert_rounds
            .iter()
            .map(|r| {
                format!(
                    "{} / {}",
                    rate(r.insert.ops_per_s()),
                    rate(r.raw_put.ops_per_s())
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\nInsert vs raw `object_store` put on the same memory bucket, {RAW_PUT_ROUNDS} rounds \
             of {} inserts into a new resource of the same definition, then {} raw puts of a \
             200-byte body with 3 metadata entries (inserts/s / raw puts/s: {}). Median ratio \
             per insert = **{ratio:.2}** (target ≥ {INSERT_VS_RAW_PUT_TARGET}); per object \
             written (an insert here is 2 PUTs: the record and its partition reference) = \
             **{per_put:.2}**; against raw puts of the very objects the inserts wrote (same \
             paths, metadata and bodies) = **{same:.2}**.",
            result.n,
            result.n,
            rounds.join(", "),
        );
    }
    out
}

/// The JSON report of the `resources` workload on one backend (one line): the object of the
/// workload's specification, plus the run's details.
pub fn resources_json(header: &Header, result: &ResourcesResult) -> Value {
    let baseline = Baseline::of(result.backend);
    let phases: Map<String, Value> = result
        .phases
        .iter()
        .map(|phase| {
            let m = &phase.measurement;
            let figure = original::figure(baseline, phase.name);
            let kinds: Map<String, Value> = phase
                .requests
                .iter()
                .map(|(kind, n)| (kind.as_str().to_owned(), json!(n)))
                .collect();
            (
                phase.name.to_owned(),
                json!({
                    "ops_per_s": m.ops_per_s(),
                    "ms": m.ms(),
                    "requests": m.requests,
                    "req_per_op": m.requests_per_op(),
                    "ops": m.ops,
                    "requests_by_kind": kinds,
                    "original_ops_per_s": figure.map(|f| f.ops_per_s),
                    "original_req_per_op": figure.map(|f| f.req_per_op),
                    "speed_up": figure.map(|f| m.ops_per_s() / f.ops_per_s),
                }),
            )
        })
        .collect();
    json!({
        "impl": "s3db-rs",
        "version": VERSION,
        "conn": result.backend.name(),
        "n": result.n,
        "phases": phases,
        "workload": "resources",
        "connection": result.connection,
        "concurrency": CONCURRENCY,
        "original": original::ORIGINAL,
        "original_column": baseline.describe(),
        "insert_rounds": result.insert_rounds.iter().map(|r| json!({
            "insert": side(&r.insert),
            "raw_put": side(&r.raw_put),
            "per_insert": r.per_insert(),
            "per_put": r.per_put(),
            "raw_same_objects": side(&r.raw_same_objects),
            "per_same_objects": r.per_same_objects(),
        })).collect::<Vec<_>>(),
        "insert_vs_raw_put": result.insert_vs_raw_put(),
        "insert_put_vs_raw_put": result.insert_put_vs_raw_put(),
        "insert_vs_raw_same_objects": result.insert_vs_raw_same_objects(),
        "date": header.date,
        "cores": header.cores,
        "command": header.command,
    })
}

/// The markdown report of the `plugin-storage` workload on one backend: a header line and one
/// table row per phase.
pub fn plugin_storage_markdown(header: &Header, result: &PluginStorageResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} (`{}`)\n\n{} · machine: {} cores · N = {} per phase · contended phases: {} tasks \
         · locks: ttl {:?}, timeout {:?}, max backoff {:?} · `{}`\n",
        result.backend,
        result.connection,
        header.date,
        header.cores,
        result.n,
        result.tasks,
        LOCK_TTL,
        LOCK_TIMEOUT,
        LOCK_MAX_BACKOFF,
        header.command
    );
    out.push_str("| phase | ops/s | ms | requests | req/op | notes |\n");
    out.push_str("|---|---:|---:|---:|---:|---|\n");
    for phase in &result.phases {
        let m = &phase.measurement;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} |",
            phase.name,
            rate(m.ops_per_s()),
            m.ms(),
            m.requests,
            per_op(m.requests_per_op()),
            storage_notes(phase),
        );
    }
    out.push_str(
        "\nops are increments (counter phases) or acquire + release pairs (lock phases); failed \
         conditional PUTs are the PUTs beyond one per increment or two per acquisition (a lost \
         compare-and-swap, a create of a lease that exists, a lost takeover).\n",
    );
    out
}

/// The notes of a `plugin-storage` phase: tasks, requests by kind, failed writes, checks.
fn storage_notes(phase: &StoragePhase) -> String {
    let mut notes = vec![if phase.tasks == 1 {
        "1 task".to_owned()
    } else {
        format!("{} tasks", phase.tasks)
    }];
    notes.push(by_kind(&phase.requests));
    notes.push(format!("{} failed conditional PUTs", phase.failed_writes));
    if let Some(value) = phase.final_value {
        notes.push(format!("final value {value} ✓"));
    }
    if let Some(overlaps) = phase.overlaps {
        notes.push(format!("overlaps {overlaps} ✓"));
    }
    if let Some(wait) = phase.max_wait {
        notes.push(format!("longest op {:.1} ms", wait.as_secs_f64() * 1000.0));
    }
    notes.join("; ")
}

/// The JSON report of the `plugin-storage` workload on one backend (one line).
pub fn plugin_storage_json(header: &Header, result: &PluginStorageResult) -> Value {
    json!({
        "workload": "plugin-storage",
        "backend": result.backend.name(),
        "connection": result.connection,
        "n": result.n,
        "tasks": result.tasks,
        "lock_ttl_ms": LOCK_TTL.as_millis(),
        "lock_timeout_ms": LOCK_TIMEOUT.as_millis(),
        "lock_max_backoff_ms": LOCK_MAX_BACKOFF.as_millis(),
        "date": header.date,
        "cores": header.cores,
        "command": header.command,
        "phases": result.phases.iter().map(|phase| {
            let m = &phase.measurement;
            let kinds: Map<String, Value> = phase
                .requests
                .iter()
                .map(|(kind, n)| (kind.as_str().to_owned(), json!(n)))
                .collect();
            json!({
                "phase": phase.name,
                "tasks": phase.tasks,
                "ops": m.ops,
                "ms": m.ms(),
                "ops_per_s": m.ops_per_s(),
                "requests": m.requests,
                "requests_per_op": m.requests_per_op(),
                "requests_by_kind": kinds,
                "failed_conditional_puts": phase.failed_writes,
                "final_value": phase.final_value,
                "overlaps": phase.overlaps,
                "max_op_ms": phase.max_wait.map(|w| w.as_secs_f64() * 1000.0),
            })
        }).collect::<Vec<_>>(),
    })
}

/// Requests by kind: `2000 GET + 2000 PUT`.
fn by_kind(stats: &s3db_core::RequestStats) -> String {
    let parts: Vec<String> = stats
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if parts.is_empty() {
        dash()
    } else {
        parts.join(" + ")
    }
}

/// One side of a phase in JSON.
fn side(m: &Measurement) -> Value {
    json!({
        "ops": m.ops,
        "ms": m.ms(),
        "ops_per_s": m.ops_per_s(),
        "requests": m.requests,
        "requests_per_op": m.requests_per_op(),
    })
}

/// The phase name, with the unit when it is not operations.
fn phase_label(phase: &Phase) -> String {
    if phase.name == "list" {
        "list (keys/s)".to_owned()
    } else {
        phase.name.to_owned()
    }
}

/// A rate with thousands separators, no decimals (one decimal below 100).
pub fn rate(value: f64) -> String {
    if !value.is_finite() {
        return "∞".to_owned();
    }
    if value < 100.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{value:.0}");
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Requests per operation: two decimals, more for tiny values (a listing's per-key cost).
pub fn per_op(value: f64) -> String {
    if value >= 0.1 || value == 0.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// The placeholder of a missing value.
fn dash() -> String {
    "—".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(rate(1_234_567.4), "1,234,567");
        assert_eq!(rate(123.4), "123");
        assert_eq!(rate(99.44), "99.4");
        assert_eq!(per_op(1.0), "1.00");
        assert_eq!(per_op(0.0005), "0.0005");
    }
}
