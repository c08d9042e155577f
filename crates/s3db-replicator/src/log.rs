//! The replication log (`plg_replicator_logs`): deliveries that failed after their retries,
//! with their payload, and their replay by `retry_failed`.
//!
//! Replaying is safe with any number of processes at once: an entry is first **claimed** by a
//! conditional update on the ETag that was read (`failed` → `replaying`, with the claimant and a
//! deadline); only the process whose claim succeeded delivers it, and only the claimant's next
//! conditional update (on the claim's ETag) marks it `resolved` (or `failed` again). A claim
//! whose deadline passed (the process died) may be taken over the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use s3db_core::Behavior;
use s3db_core::plugin::{Error, Operation, Outcome, Record, Resource, ResourceConfig, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::change::{Action, Change};

/// The internal resource of the log.
pub const LOGS_RESOURCE: &str = "plg_replicator_logs";
/// Its partition by status.
pub const BY_STATUS: &str = "byStatus";

/// Where a logged failure stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    /// Waiting for [`crate::ReplicatorPlugin::retry_failed`].
    Failed,
    /// Claimed by a process that is replaying it.
    Replaying,
    /// Delivered by a replay.
    Resolved,
}

impl LogStatus {
    /// `failed`, `replaying` or `resolved`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LogStatus::Failed => "failed",
            LogStatus::Replaying => "replaying",
            LogStatus::Resolved => "resolved",
        }
    }
}

/// One entry of `plg_replicator_logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogEntry {
    /// The entry's id (time-ordered).
    pub id: String,
    /// The replicator whose delivery failed.
    pub replicator: String,
    /// The source resource.
    pub resource: String,
    /// The record's id in the source resource.
    pub record_id: String,
    /// The change's action.
    pub action: Action,
    /// Where it stands.
    pub status: LogStatus,
    /// Delivery attempts so far (first delivery and replays).
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// The change as it was to be sent.
    #[serde(rename = "payload")]
    pub change: Change,
    /// The change was logged without its secret values (the resource replicates secrets): a
    /// replay of an insert or update sends the record as it is then.
    #[serde(default)]
    pub secrets_omitted: bool,
    /// The process that claimed it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// Until when that claim holds (epoch milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_until: Option<i64>,
    /// When it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The definition of `plg_replicator_logs`.
pub(crate) fn definition() -> ResourceConfig {
    ResourceConfig::new(LOGS_RESOURCE)
        .attribute("replicator", "string|required")
        .attribute("resource", "string|required")
        .attribute("record_id", "string|required")
        .attribute("action", "string|required")
        .attribute("status", "string|required")
        .attribute("attempts", "integer")
        .attribute("error", "string")
        .attribute("payload", "json")
        .attribute("secrets_omitted", "boolean")
        .attribute("claimed_by", "string")
        .attribute("claimed_until", "integer")
        .attribute("resolved_at", "string")
        .partition(BY_STATUS, ["status"])
        .behavior(Behavior::BodyOverflow)
        .timestamps(true)
        .paranoid(false)
}

/// An entry from its record.
pub(crate) fn parse(record: &Record) -> Result<LogEntry> {
    record.deserialize()
}

/// Writes a new entry.
pub(crate) async fn append(logs: &Resource, entry: &LogEntry) -> Result<()> {
    logs.insert(entry).await.map(|_| ())
}

/// The ids of the entries with `status` (LIST requests on the status partition only).
pub(crate) async fn ids_with_status(logs: &Resource, status: LogStatus) -> Result<Vec<String>> {
    let values: BTreeMap<String, Value> = [("status".to_owned(), json!(status.as_str()))].into();
    match logs
        .run(Operation::ListIds {
            partition: Some((BY_STATUS.to_owned(), values)),
            limit: None,
        })
        .await?
    {
        Outcome::Ids(ids) => Ok(ids),
        other => Err(Error::Corrupt {
            key: LOGS_RESOURCE.to_owned(),
            reason: format!("list_ids answered {other:?}"),
        }),
    }
}

/// What a claim attempt found.
pub(crate) enum Claim {
    /// This process holds the entry now.
    Held {
        entry: Box<LogEntry>,
        etag: s3db_core::ETag,
    },
    /// Someone else holds it, it is resolved, or it is gone.
    Taken,
}

/// Claims an entry for replay: conditional on the version read, so one process wins.
pub(crate) async fn claim(
    logs: &Resource,
    id: &str,
    claimant: &str,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
) -> Result<Claim> {
    let record = match logs.get_from_store(id).await {
        Ok(r) => r,
        Err(Error::NotFound { .. }) => return Ok(Claim::Taken),
        Err(e) => return Err(e),
    };
    let entry = parse(&record)?;
    let now_ms = now.timestamp_millis();
    let claimable = match entry.status {
        LogStatus::Failed => true,
        LogStatus::Replaying => entry.claimed_until.is_none_or(|until| until < now_ms),
        LogStatus::Resolved => false,
    };
    if !claimable {
        return Ok(Claim::Taken);
    }
    let until = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let changes = json!({
        "status": LogStatus::Replaying.as_str(),
        "claimed_by": claimant,
        "claimed_until": until,
    });
    match logs.update_if_match(id, changes, record.etag()).await {
        Ok(claimed) => Ok(Claim::Held {
            entry: Box::new(LogEntry {
                status: LogStatus::Replaying,
                claimed_by: Some(claimant.to_owned()),
                claimed_until: Some(until),
                ..entry
            }),
            etag: claimed.etag().clone(),
        }),
        Err(Error::PreconditionFailed { .. } | Error::NotFound { .. }) => Ok(Claim::Taken),
        Err(e) => Err(e),
    }
}

/// Closes a claim: `resolved`, or back to `failed` with the new error. Conditional on the
/// claim's version: `false` when another process took the entry over meanwhile.
pub(crate) async fn settle(
    logs: &Resource,
    id: &str,
    etag: &s3db_core::ETag,
    attempts: u32,
    outcome: std::result::Result<DateTime<Utc>, String>,
) -> Result<bool> {
    let changes = match outcome {
        Ok(at) => json!({
            "status": LogStatus::Resolved.as_str(),
            "attempts": attempts,
            "resolved_at": at.to_rfc3339(),
        }),
        Err(error) => json!({
            "status": LogStatus::Failed.as_str(),
            "attempts": attempts,
            "error": error,
        }),
    };
    match logs.update_if_match(id, changes, etag).await {
        Ok(_) => Ok(true),
        Err(Error::PreconditionFailed { .. } | Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
