//! The plugin's own events, broadcast as `Event::Plugin { plugin: "eventual-consistency", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with [`EventualEvent::from_event`].

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

/// What the eventual consistency plugin reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventualEvent {
    /// A record was consolidated.
    Consolidated {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
        /// The record.
        id: String,
        /// Its value afterwards.
        value: f64,
        /// Transactions folded in.
        applied: usize,
        /// Transactions of an interrupted consolidation only marked applied.
        recovered: usize,
    },
    /// An interrupted consolidation was finished (its record write had happened; its
    /// transactions were marked applied without being folded again).
    Recovered {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
        /// The record.
        id: String,
        /// The interrupted consolidation's number.
        batch: u64,
        /// Transactions marked.
        transactions: usize,
    },
    /// A consolidation failed; its transactions stay pending for the next round.
    ConsolidationFailed {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
        /// The record.
        id: String,
        /// The error.
        error: String,
    },
    /// The transaction log of a deleted record (or of a cleared resource) could not be deleted
    /// completely. The user's delete succeeded; what is left is fenced off (ignored by
    /// consolidation and recalculation) when the fence could be written, and deleted by the
    /// background consolidation or `purge(id)`.
    CleanupFailed {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
        /// The record (`None`: listing the resource's logs after `delete_all` failed).
        id: Option<String>,
        /// The error.
        error: String,
    },
    /// Garbage collection folded old applied transactions into checkpoints.
    GarbageCollected {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
        /// Transactions deleted.
        deleted: u64,
        /// Checkpoints written (one per record collected).
        checkpoints: u64,
    },
}

impl CustomEvent for EventualEvent {
    /// The custom event name (`eventual.consolidated`, …).
    fn name(&self) -> &'static str {
        match self {
            EventualEvent::Consolidated { .. } => "eventual.consolidated",
            EventualEvent::Recovered { .. } => "eventual.recovered",
            EventualEvent::ConsolidationFailed { .. } => "eventual.consolidation_failed",
            EventualEvent::GarbageCollected { .. } => "eventual.garbage_collected",
            EventualEvent::CleanupFailed { .. } => "eventual.cleanup_failed",
        }
    }
}
