//! The plugin's own events, broadcast as `Event::Plugin { plugin: "metrics", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with [`MetricsEvent::from_event`].

use s3db_core::plugin::CustomEvent;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::SlowOperation;

/// What the metrics plugin reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MetricsEvent {
    /// An operation took at least the slow threshold. Sent while the plugin runs, one per slow
    /// operation: a burst of more than 1024 at once loses the newest, and a tiny threshold floods
    /// the database's event bus (whose slow subscribers then lose old events).
    SlowOperation(SlowOperation),
    /// A flush wrote its records.
    Flushed {
        /// Aggregate records written to `plg_metrics`.
        records: usize,
        /// Slow operations written to `plg_metrics_slow`.
        slow: usize,
        /// Old records deleted by retention.
        deleted: u64,
    },
    /// A flush failed (what was not written is kept for the next one).
    FlushFailed {
        /// The error.
        error: String,
    },
    /// Records older than a cutoff were deleted.
    CleanedUp {
        /// How many.
        deleted: u64,
    },
    /// The HTTP endpoint is listening.
    Listening {
        /// Its bound address.
        addr: SocketAddr,
    },
}

impl CustomEvent for MetricsEvent {
    /// The custom event name (`metrics.slow_operation`, `metrics.flushed`, …).
    fn name(&self) -> &'static str {
        match self {
            MetricsEvent::SlowOperation(_) => "metrics.slow_operation",
            MetricsEvent::Flushed { .. } => "metrics.flushed",
            MetricsEvent::FlushFailed { .. } => "metrics.flush_failed",
            MetricsEvent::CleanedUp { .. } => "metrics.cleaned_up",
            MetricsEvent::Listening { .. } => "metrics.listening",
        }
    }
}
