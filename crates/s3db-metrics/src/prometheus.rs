//! Prometheus text exposition (format 0.0.4) of the plugin's own aggregates.
//!
//! Rendering our aggregates, rather than recording into an exporter's recorder, keeps one source
//! of truth: `render()`, `snapshot()` and the flushed records always agree, `reset()` is exact,
//! and no global (or thread-local) recorder is involved.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::stats::{OpStats, STATUS};
use crate::store::StoreTable;
use s3db_core::RequestKind;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The quantiles of the latency summary.
pub(crate) const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.95, "0.95"), (0.99, "0.99")];

/// The metric names, with the configured prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) operations: String,
    pub(crate) errors: String,
    pub(crate) slow: String,
    pub(crate) duration: String,
    pub(crate) threshold: String,
    pub(crate) store_requests: String,
    pub(crate) store_duration: String,
    pub(crate) store_sent: String,
    pub(crate) store_received: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            operations: format!("{prefix}_operations_total"),
            errors: format!("{prefix}_operation_errors_total"),
            slow: format!("{prefix}_slow_operations_total"),
            duration: format!("{prefix}_operation_duration_seconds"),
            threshold: format!("{prefix}_slow_operation_threshold_seconds"),
            store_requests: format!("{prefix}_store_requests_total"),
            store_duration: format!("{prefix}_store_request_duration_seconds"),
            store_sent: format!("{prefix}_store_bytes_sent_total"),
            store_received: format!("{prefix}_store_bytes_received_total"),
        }
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every family. `data` is per resource, per operation.
pub(crate) fn render(
    names: &Names,
    threshold: Duration,
    data: &BTreeMap<String, BTreeMap<&'static str, OpStats>>,
    store: &StoreTable,
) -> String {
    let mut out = String::new();
    let rows: Vec<(String, &'static str, &OpStats)> = data
        .iter()
        .flat_map(|(resource, ops)| {
            let resource = escape(resource);
            ops.iter()
                .filter(|(_, s)| s.by_status.iter().any(|a| a.count > 0))
                .map(move |(op, s)| (resource.clone(), *op, s))
        })
        .collect();

    header(
        &mut out,
        &names.operations,
        "counter",
        "Operations on s3db resources, by resource, operation and status (ok or error).",
    );
    for (resource, op, stats) in &rows {
        for (i, status) in STATUS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{{resource=\"{resource}\",operation=\"{op}\",status=\"{status}\"}} {}",
                names.operations, stats.by_status[i].count
            );
        }
    }

    header(
        &mut out,
        &names.errors,
        "counter",
        "Failed operations on s3db resources, by error kind.",
    );
    for (resource, op, stats) in &rows {
        for (kind, n) in &stats.errors_by_kind {
            let _ = writeln!(
                out,
                "{}{{resource=\"{resource}\",operation=\"{op}\",kind=\"{kind}\"}} {n}",
                names.errors
            );
        }
    }

    header(
        &mut out,
        &names.slow,
        "counter",
        "Operations on s3db resources that took at least the slow threshold.",
    );
    for (resource, op, stats) in &rows {
        let slow: u64 = stats.by_status.iter().map(|a| a.slow).sum();
        let _ = writeln!(
            out,
            "{}{{resource=\"{resource}\",operation=\"{op}\"}} {slow}",
            names.slow
        );
    }

    header(
        &mut out,
        &names.duration,
        "summary",
        "Latency of operations on s3db resources in seconds, since start or reset.",
    );
    for (resource, op, stats) in &rows {
        for (i, status) in STATUS.iter().enumerate() {
            let agg = &stats.by_status[i];
            if agg.count == 0 {
                continue;
            }
            let labels = format!("resource=\"{resource}\",operation=\"{op}\",status=\"{status}\"");
            for (q, text) in QUANTILES {
                let _ = writeln!(
                    out,
                    "{}{{{labels},quantile=\"{text}\"}} {}",
                    names.duration,
                    agg.quantile_seconds(q)
                );
            }
            let _ = writeln!(
                out,
                "{}_sum{{{labels}}} {}",
                names.duration,
                agg.sum_seconds()
            );
            let _ = writeln!(out, "{}_count{{{labels}}} {}", names.duration, agg.count);
        }
    }

    header(
        &mut out,
        &names.threshold,
        "gauge",
        "The slow-operation threshold in seconds.",
    );
    let _ = writeln!(out, "{} {}", names.threshold, threshold.as_secs_f64());
    render_store(&mut out, names, store);
    out
}

/// The store families: requests, latency and bytes per owner and request kind.
fn render_store(out: &mut String, names: &Names, store: &StoreTable) {
    let rows: Vec<(String, RequestKind, &crate::store::KindStats)> = store
        .iter()
        .flat_map(|(owner, kinds)| {
            let labels = format!(
                "scope=\"{}\",name=\"{}\"",
                owner.scope(),
                escape(owner.name())
            );
            kinds
                .iter()
                .zip(RequestKind::ALL)
                .filter(|(s, _)| s.latency.count > 0)
                .map(move |(s, kind)| (format!("{labels},kind=\"{kind}\""), kind, s))
        })
        .collect();
    header(
        out,
        &names.store_requests,
        "counter",
        "Requests to the object store, by owner (scope and name), kind and status.",
    );
    for (labels, _, s) in &rows {
        let ok = s.latency.count - s.failures;
        let _ = writeln!(
            out,
            "{}{{{labels},status=\"ok\"}} {ok}",
            names.store_requests
        );
        let _ = writeln!(
            out,
            "{}{{{labels},status=\"error\"}} {}",
            names.store_requests, s.failures
        );
    }
    header(
        out,
        &names.store_duration,
        "summary",
        "Latency of requests to the object store in seconds, since start or reset.",
    );
    for (labels, _, s) in &rows {
        for (q, text) in QUANTILES {
            let _ = writeln!(
                out,
                "{}{{{labels},quantile=\"{text}\"}} {}",
                names.store_duration,
                s.latency.quantile_seconds(q)
            );
        }
        let _ = writeln!(
            out,
            "{}_sum{{{labels}}} {}",
            names.store_duration,
            s.latency.sum_seconds()
        );
        let _ = writeln!(
            out,
            "{}_count{{{labels}}} {}",
            names.store_duration, s.latency.count
        );
    }
    for (name, help, bytes) in [
        (
            &names.store_sent,
            "Bytes sent to the object store.",
            (|s: &crate::store::KindStats| s.bytes_sent) as fn(&crate::store::KindStats) -> u64,
        ),
        (
            &names.store_received,
            "Bytes received from the object store.",
            |s: &crate::store::KindStats| s.bytes_received,
        ),
    ] {
        header(out, name, "counter", help);
        for (labels, _, s) in &rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", bytes(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), "a\\nb");
    }

    #[test]
    fn empty_render_has_every_family() {
        let text = render(
            &Names::new("s3db"),
            Duration::from_millis(1500),
            &BTreeMap::new(),
            &StoreTable::new(),
        );
        for family in [
            "s3db_operations_total counter",
            "s3db_operation_errors_total counter",
            "s3db_slow_operations_total counter",
            "s3db_operation_duration_seconds summary",
            "s3db_slow_operation_threshold_seconds gauge",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{family}");
        }
        assert!(text.contains("\ns3db_slow_operation_threshold_seconds 1.5\n"));
        assert!(text.contains("# TYPE s3db_store_requests_total counter\n"));
    }
}
