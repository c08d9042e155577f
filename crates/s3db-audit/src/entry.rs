//! Audit entries: what one recorded operation looks like, how it is stored in `plg_audits`, and
//! how its id and data are made.
//!
//! Entry ids start with the entry's time in milliseconds, zero-padded, then the writing plugin
//! instance's token and a sequence number: ids sort by time, never collide between processes, and
//! clean-up or time-range queries select entries by listing ids only (no reads).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use s3db_core::plugin::ResourceConfig;
use s3db_core::{Behavior, Document};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The internal resource holding the audit entries.
pub const AUDITS_RESOURCE: &str = "plg_audits";
/// The partition of `plg_audits` by day (`date`, `YYYY-MM-DD` in UTC).
pub const BY_DATE: &str = "byDate";
/// The partition of `plg_audits` by audited resource (`resource`).
pub const BY_RESOURCE: &str = "byResource";

/// A recorded operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditOperation {
    /// A record was inserted (`insert`, `insert_many`, the insert half of `upsert`).
    Insert,
    /// A record was changed (`update`, `patch`, `replace`, `upsert` of an existing record,
    /// `update_if_match`).
    Update,
    /// A record was deleted (`delete`, `delete_many`).
    Delete,
    /// Every record of the resource was deleted (`delete_all`); the entry has no record id.
    DeleteAll,
}

impl AuditOperation {
    /// Every operation.
    pub const ALL: [AuditOperation; 4] = [
        AuditOperation::Insert,
        AuditOperation::Update,
        AuditOperation::Delete,
        AuditOperation::DeleteAll,
    ];

    /// The name stored in entries: `insert`, `update`, `delete`, `delete_all`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOperation::Insert => "insert",
            AuditOperation::Update => "update",
            AuditOperation::Delete => "delete",
            AuditOperation::DeleteAll => "delete_all",
        }
    }
}

impl fmt::Display for AuditOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation name that is not one of [`AuditOperation`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit operation {0:?} (expected insert, update, delete or delete_all)")]
pub struct UnknownOperation(pub String);

impl FromStr for AuditOperation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditOperation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOperation(s.to_owned()))
    }
}

/// One audit entry, as stored in `plg_audits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The entry's id (`<millis>-<instance>-<seq>`: sorts by time).
    #[serde(default)]
    pub id: String,
    /// The audited resource.
    pub resource: String,
    /// What was done.
    pub operation: AuditOperation,
    /// The record's id (none for [`AuditOperation::DeleteAll`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// Who did it (see [`crate::AuditUser`]).
    pub user: String,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// The day of `timestamp` in UTC (`YYYY-MM-DD`), the `byDate` partition's field.
    pub date: String,
    /// The record before the change (updates and deletes), when data is recorded. Secret
    /// attributes are masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_data: Option<Value>,
    /// The record after the change (inserts and updates), when data is recorded. Secret
    /// attributes are masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_data: Option<Value>,
    /// Whether `old_data` or `new_data` lost fields to the size cap.
    #[serde(default)]
    pub truncated: bool,
    /// The first partition (by name) in which the record has a value, when partitions are
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Every partition of the record with its field values (`{"byRegion": {"region": "eu"}}`),
    /// when partitions are recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_values: Option<Map<String, Value>>,
}

/// What masks a secret attribute's value in recorded data.
pub const SECRET_MASK: &str = "***";

/// The definition of `plg_audits`.
pub(crate) fn definition() -> ResourceConfig {
    ResourceConfig::new(AUDITS_RESOURCE)
        .attribute("resource", "string|required")
        .attribute("operation", "string|required")
        .attribute("record_id", "string")
        .attribute("user", "string|required")
        .attribute("timestamp", "date|required")
        .attribute("date", "string|required")
        .attribute("old_data", "json")
        .attribute("new_data", "json")
        .attribute("truncated", "boolean")
        .attribute("partition", "string")
        .attribute("partition_values", "json")
        .partition(BY_DATE, ["date"])
        .partition(BY_RESOURCE, ["resource"])
        .behavior(Behavior::BodyOverflow)
        // Clean-up deletes entries one by one; nothing else deletes everything.
        .paranoid(true)
}

/// The id of an entry written at `at` by `instance`, its `seq`-th.
pub(crate) fn entry_id(at: DateTime<Utc>, instance: &str, seq: u64) -> String {
    format!("{:013}-{instance}-{seq:08x}", at.timestamp_millis().max(0))
}

/// The time in milliseconds at the start of an entry id.
pub(crate) fn id_millis(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}

/// The day of a time, as the `byDate` partition stores it.
pub(crate) fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// The data as recorded: whole when its JSON fits in `cap` bytes, else the fields that fit (in
/// order) and `true`.
pub(crate) fn capped(data: Document, cap: usize) -> (Value, bool) {
    let whole = Value::Object(data);
    if json_len(&whole) <= cap {
        return (whole, false);
    }
    let Value::Object(data) = whole else {
        return (Value::Object(Map::new()), true);
    };
    let mut kept = Map::new();
    // `{}` plus, per field, `"key":value` and a comma.
    let mut size = 2;
    for (key, value) in data {
        let field = json_len(&Value::String(key.clone()))
            .saturating_add(1)
            .saturating_add(json_len(&value))
            .saturating_add(usize::from(!kept.is_empty()));
        if size + field <= cap {
            size += field;
            kept.insert(key, value);
        }
    }
    (Value::Object(kept), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Document {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn ids_sort_by_time_and_carry_it() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap_or_default();
        let id = entry_id(at, "abcdef", 10);
        assert_eq!(id, "1700000000123-abcdef-0000000a");
        assert_eq!(id_millis(&id), Some(1_700_000_000_123));
        assert_eq!(id_millis("nonsense"), None);
        let early = entry_id(
            DateTime::from_timestamp_millis(5).unwrap_or_default(),
            "abcdef",
            0,
        );
        assert!(early < id);
        assert_eq!(day_of(at), "2023-11-14");
    }

    #[test]
    fn data_within_the_cap_is_kept_whole() {
        let data = doc(json!({"a": 1, "b": "xy"}));
        let size = json_len(&Value::Object(data.clone()));
        let (v, truncated) = capped(data.clone(), size);
        assert!(!truncated);
        assert_eq!(v, Value::Object(data));
    }

    #[test]
    fn data_over_the_cap_keeps_the_fields_that_fit() {
        let big = "x".repeat(100);
        let data = doc(json!({"a": 1, "b": big, "c": true}));
        let (v, truncated) = capped(data, 30);
        assert!(truncated);
        assert_eq!(v, json!({"a": 1, "c": true}));
        assert!(json_len(&v) <= 30);
        // Exactly at the boundary: {"a":1,"c":true} is 16 bytes.
        let (v, truncated) = capped(doc(json!({"a": 1, "b": "yy", "c": true})), 16);
        assert!(truncated);
        assert_eq!(json_len(&v), 16);
        let (v, truncated) = capped(doc(json!({"a": 1})), 1);
        assert!(truncated);
        assert_eq!(v, json!({}));
    }

    #[test]
    fn operations_round_trip() {
        for op in AuditOperation::ALL {
            assert_eq!(op.as_str().parse::<AuditOperation>(), Ok(op));
            assert_eq!(
                serde_json::to_value(op).ok(),
                Some(Value::String(op.as_str().to_owned()))
            );
        }
        assert!("drop".parse::<AuditOperation>().is_err());
    }
}
