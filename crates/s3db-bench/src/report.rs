//! Reports: a markdown table or one JSON object per backend.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::measure::Measurement;
use crate::store_workload::{BackendResult, CONCURRENCY, Phase};

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
fn rate(value: f64) -> String {
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
fn per_op(value: f64) -> String {
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
