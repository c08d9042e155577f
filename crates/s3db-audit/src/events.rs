//! The plugin's own events, broadcast as `Event::Plugin { plugin: "audit", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with [`AuditEvent::from_event`].

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

use crate::entry::AuditOperation;

/// What the audit plugin reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// An audit entry could not be written. The user's operation succeeded all the same; the
    /// failure is also counted in [`crate::AuditCounters::failed`].
    WriteFailed {
        /// The audited resource.
        resource: String,
        /// The operation that was not recorded.
        operation: AuditOperation,
        /// The record's id, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record_id: Option<String>,
        /// The entry id that was being written.
        entry_id: String,
        /// The error.
        error: String,
    },
    /// Entries older than a cutoff were deleted.
    CleanedUp {
        /// How many.
        deleted: u64,
    },
}

impl CustomEvent for AuditEvent {
    /// The custom event name (`audit.write_failed`, `audit.cleaned_up`).
    fn name(&self) -> &'static str {
        match self {
            AuditEvent::WriteFailed { .. } => "audit.write_failed",
            AuditEvent::CleanedUp { .. } => "audit.cleaned_up",
        }
    }
}
