//! The plugin's own events, broadcast as `Event::Plugin { plugin: "replicator", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with
//! [`ReplicatorEvent::from_event`](s3db_core::plugin::CustomEvent::from_event).

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

use crate::change::Action;

/// What the replicator reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplicatorEvent {
    /// A change was delivered to a target.
    Replicated {
        /// The replicator.
        replicator: String,
        /// The source resource.
        resource: String,
        /// What was sent (an update that left a filter is sent as a delete).
        action: Action,
        /// The record's id on the target's side.
        id: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// A change could not be delivered after its retries. The user's write succeeded anyway.
    Failed {
        /// The replicator.
        replicator: String,
        /// The source resource.
        resource: String,
        /// What was not sent.
        action: Action,
        /// The record's id on the target's side.
        id: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
        /// The id of its entry in `plg_replicator_logs`, if it was logged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_entry: Option<String>,
    },
    /// A logged failure was delivered by `retry_failed` and marked resolved.
    Resolved {
        /// The replicator.
        replicator: String,
        /// The source resource.
        resource: String,
        /// The record's id on the target's side.
        id: String,
        /// The log entry.
        log_entry: String,
    },
    /// `sync_all` finished copying a resource.
    Synced {
        /// The source resource.
        resource: String,
        /// Records read.
        records: u64,
        /// Deliveries made (one per record and replicator that follows it).
        replicated: u64,
        /// Deliveries that failed.
        failed: u64,
    },
}

impl CustomEvent for ReplicatorEvent {
    /// The custom event name (`replicator.replicated`, `replicator.failed`,
    /// `replicator.resolved`, `replicator.synced`).
    fn name(&self) -> &'static str {
        match self {
            ReplicatorEvent::Replicated { .. } => "replicator.replicated",
            ReplicatorEvent::Failed { .. } => "replicator.failed",
            ReplicatorEvent::Resolved { .. } => "replicator.resolved",
            ReplicatorEvent::Synced { .. } => "replicator.synced",
        }
    }
}
