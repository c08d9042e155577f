//! The plugin's own events, broadcast as `Event::Plugin { plugin: "backup", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with
//! [`CustomEvent::from_event`] (import the trait `s3db_core::plugin::CustomEvent`).

use std::collections::BTreeMap;

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

use crate::metadata::BackupKind;
use crate::restore::RestoreMode;

/// What the backup plugin reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackupEvent {
    /// A backup started.
    Started {
        /// Its id.
        id: String,
        /// Full or incremental.
        kind: BackupKind,
        /// The resources it covers.
        resources: Vec<String>,
    },
    /// A backup was uploaded and verified.
    Completed {
        /// Its id.
        id: String,
        /// Full or incremental.
        kind: BackupKind,
        /// Archive size in bytes.
        size: u64,
        /// Archive SHA-256.
        checksum: String,
        /// Records archived per resource.
        records: BTreeMap<String, u64>,
        /// How long it took, in milliseconds.
        duration_ms: u64,
    },
    /// A backup failed.
    Failed {
        /// Its id.
        id: String,
        /// Why.
        error: String,
    },
    /// A restore started (after the archive was verified).
    RestoreStarted {
        /// The backup restored.
        id: String,
        /// How existing records are treated.
        mode: RestoreMode,
    },
    /// A restore finished.
    RestoreCompleted {
        /// The backup restored.
        id: String,
        /// Records written.
        written: u64,
        /// Records kept as they were (`skip`).
        skipped: u64,
        /// Records deleted.
        deleted: u64,
        /// Records that could not be written.
        failed: u64,
    },
    /// A restore failed before writing (bad checksum, unreadable archive) or while writing.
    RestoreFailed {
        /// The backup.
        id: String,
        /// Why.
        error: String,
    },
    /// Retention pruned backups.
    Pruned {
        /// The ids removed.
        ids: Vec<String>,
    },
}

impl CustomEvent for BackupEvent {
    /// The custom event name (`backup.started`, `backup.completed`, `backup.failed`,
    /// `backup.restore_started`, `backup.restore_completed`, `backup.restore_failed`,
    /// `backup.pruned`).
    fn name(&self) -> &'static str {
        match self {
            BackupEvent::Started { .. } => "backup.started",
            BackupEvent::Completed { .. } => "backup.completed",
            BackupEvent::Failed { .. } => "backup.failed",
            BackupEvent::RestoreStarted { .. } => "backup.restore_started",
            BackupEvent::RestoreCompleted { .. } => "backup.restore_completed",
            BackupEvent::RestoreFailed { .. } => "backup.restore_failed",
            BackupEvent::Pruned { .. } => "backup.pruned",
        }
    }
}
