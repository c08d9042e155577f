//! The status record of each backup, kept in `plg_backup_metadata`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use s3db_core::plugin::{Record, ResourceConfig};
use s3db_core::{Behavior, Document};
use serde::{Deserialize, Serialize};

use crate::error::{BackupError, BackupResult};

/// The internal resource holding one status record per backup.
pub const METADATA_RESOURCE: &str = "plg_backup_metadata";

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// Every record of each resource.
    Full,
    /// The records changed since the resource's previous backup, and the ids deleted since.
    Incremental,
}

impl BackupKind {
    /// `full` or `incremental`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
        }
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a backup is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Being made (or its process died while making it).
    InProgress,
    /// Uploaded and verified: restorable.
    Completed,
    /// Failed; `error` says why.
    Failed,
}

impl BackupStatus {
    /// `in_progress`, `completed` or `failed`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::InProgress => "in_progress",
            BackupStatus::Completed => "completed",
            BackupStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a backup's archive holds `secret` attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretsMode {
    /// No resource in the archive has secret attributes.
    #[default]
    None,
    /// Secrets are in clear ([`crate::BackupBuilder::plaintext_secrets`]): whoever reads the
    /// archive reads them.
    Plaintext,
    /// Secrets are encrypted under the backup passphrase
    /// ([`crate::BackupBuilder::secrets_passphrase`]); restoring them needs it.
    Encrypted,
}

impl SecretsMode {
    /// `none`, `plaintext` or `encrypted`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SecretsMode::None => "none",
            SecretsMode::Plaintext => "plaintext",
            SecretsMode::Encrypted => "encrypted",
        }
    }
}

impl fmt::Display for SecretsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one destination did with one archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverResult {
    /// The destination's label (`filesystem`, `s3`, or `multi[i]:<kind>` inside a multi driver).
    pub destination: String,
    /// Where the archive is at that destination (a path, or a key prefix), when uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Whether the upload (and its verification) succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one resource contributed to a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSummary {
    /// Records in the archive.
    pub records: u64,
    /// Records present when the resource was listed (the archive keeps their ids).
    pub present: u64,
    /// Ids deleted since the base (incremental backups).
    pub deleted: u64,
    /// The backup this one is incremental to, for this resource (none: every record is in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Records whose store time is at or after this instant are in the archive (incremental
    /// backups with a base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_since: Option<DateTime<Utc>>,
}

/// The status record of one backup (a row of [`METADATA_RESOURCE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The backup's id.
    #[serde(default)]
    pub id: String,
    /// Full or incremental.
    pub kind: BackupKind,
    /// Where it is.
    pub status: BackupStatus,
    /// The resources it holds, with what each contributed.
    pub resources: BTreeMap<String, ResourceSummary>,
    /// The archive's size in bytes (when made).
    #[serde(default)]
    pub size: u64,
    /// The archive's SHA-256, lower-case hex (when made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// When it started, by the plugin's clock (what retention and `{date}` use).
    pub started_at: DateTime<Utc>,
    /// When it finished, by the plugin's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When it started, by the store's clock: the next incremental backup takes the records
    /// written at or after this instant.
    pub store_started_at: DateTime<Utc>,
    /// What each destination did.
    #[serde(default)]
    pub drivers: Vec<DriverResult>,
    /// How the archive holds `secret` attributes (known once the archive is written).
    #[serde(default)]
    pub secrets: SecretsMode,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BackupInfo {
    /// Whether it can be restored.
    #[must_use]
    pub fn is_completed(&self) -> bool {
        self.status == BackupStatus::Completed
    }

    /// The resource names.
    #[must_use]
    pub fn resource_names(&self) -> Vec<String> {
        self.resources.keys().cloned().collect()
    }

    pub(crate) fn from_record(record: &Record) -> BackupResult<Self> {
        let mut info: BackupInfo = record.deserialize().map_err(BackupError::Core)?;
        info.id = record.id().to_owned();
        Ok(info)
    }

    pub(crate) fn to_document(&self) -> BackupResult<Document> {
        let mut doc = s3db_core::resource::to_document(self)?;
        doc.remove("id");
        Ok(doc)
    }
}

pub(crate) fn definition() -> ResourceConfig {
    ResourceConfig::new(METADATA_RESOURCE)
        .attribute("kind", "string|required")
        .attribute("status", "string|required")
        .attribute("resources", "json")
        .attribute("size", "number")
        .attribute("checksum", "string")
        .attribute("started_at", "date|required")
        .attribute("finished_at", "date")
        .attribute("store_started_at", "date|required")
        .attribute("drivers", "json")
        .attribute("secrets", "string")
        .attribute("error", "string")
        .behavior(Behavior::BodyOverflow)
}
