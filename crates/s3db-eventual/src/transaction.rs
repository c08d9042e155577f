//! Transactions: what `add`, `sub` and `set` write to `plg_<r>_tx_<f>`, their ids, cohorts, and
//! the fold that turns them into a value.

use std::cmp::Ordering;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};
use s3db_core::plugin::{Record, ResourceConfig};
use s3db_core::{Behavior, ETag, Error, Result};
use serde_json::{Map, Value, json};

use crate::config::FieldConfig;

/// The partition of transactions by record (consolidation reads only its record's prefix).
pub(crate) const BY_RECORD: &str = "byRecord";

/// What a transaction does to the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Adds the amount (through the field's reducer).
    Add,
    /// Subtracts the amount (the reducer gets the negated amount).
    Sub,
    /// Replaces the value.
    Set,
}

impl Operation {
    /// `add`, `sub` or `set`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Add => "add",
            Operation::Sub => "sub",
            Operation::Set => "set",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "add" => Some(Operation::Add),
            "sub" => Some(Operation::Sub),
            "set" => Some(Operation::Set),
            _ => None,
        }
    }
}

/// One transaction as stored.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transaction {
    /// Its id: a ULID, time-ordered (monotonic within a process).
    pub id: String,
    /// The record it changes.
    pub record_id: String,
    /// The amount (or the new value for `set`).
    pub value: f64,
    /// What it does.
    pub operation: Operation,
    /// When it was written.
    pub timestamp: DateTime<Utc>,
    /// Its hour (`2024-05-01T13`, UTC).
    pub cohort_hour: String,
    /// Its day (`2024-05-01`).
    pub cohort_day: String,
    /// Its month (`2024-05`).
    pub cohort_month: String,
    /// Whether it was folded into the record.
    pub applied: bool,
    /// The consolidation (per record, increasing) that folded it.
    pub batch: Option<u64>,
    /// When it was marked applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// Whether garbage collection turned it into a checkpoint (`set` to the value of everything
    /// up to it); checkpoints are left out of analytics.
    pub checkpoint: bool,
    /// The stored version, for conditional updates.
    pub(crate) etag: ETag,
}

impl Transaction {
    /// The order in which consolidation folded (or will fold) transactions: applied ones by
    /// batch, then id; unapplied ones after, by id.
    pub(crate) fn fold_order(a: &Self, b: &Self) -> Ordering {
        let key = |t: &Self| (!t.applied, t.batch.unwrap_or(u64::MAX));
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
    }

    pub(crate) fn from_record(record: &Record) -> Result<Self> {
        let corrupt = |what: &str| Error::Corrupt {
            key: record.id().to_owned(),
            reason: format!("transaction with a missing or invalid {what}"),
        };
        let str_field = |name: &str| record.get(name).and_then(Value::as_str);
        let time = |name: &str| -> Result<Option<DateTime<Utc>>> {
            str_field(name)
                .map(|s| {
                    DateTime::parse_from_rfc3339(s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| corrupt(name))
                })
                .transpose()
        };
        Ok(Self {
            id: record.id().to_owned(),
            record_id: str_field("record_id")
                .ok_or_else(|| corrupt("record_id"))?
                .to_owned(),
            value: record
                .get("value")
                .and_then(Value::as_f64)
                .ok_or_else(|| corrupt("value"))?,
            operation: str_field("operation")
                .and_then(Operation::parse)
                .ok_or_else(|| corrupt("operation"))?,
            timestamp: time("timestamp")?.ok_or_else(|| corrupt("timestamp"))?,
            cohort_hour: str_field("cohort_hour").unwrap_or_default().to_owned(),
            cohort_day: str_field("cohort_day").unwrap_or_default().to_owned(),
            cohort_month: str_field("cohort_month").unwrap_or_default().to_owned(),
            applied: record
                .get("applied")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            batch: record.get("batch").and_then(Value::as_u64),
            applied_at: time("applied_at")?,
            checkpoint: record
                .get("checkpoint")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            etag: record.etag().clone(),
        })
    }
}

/// The definition of `plg_<r>_tx_<f>`.
pub(crate) fn resource_config(field: &FieldConfig) -> ResourceConfig {
    ResourceConfig::new(field.transaction_resource())
        .attribute("record_id", "string|required")
        .attribute("value", "number|required")
        .attribute("operation", "enum:add,sub,set")
        .attribute("timestamp", "string|required")
        .attribute("cohort_hour", "string|required")
        .attribute("cohort_day", "string|required")
        .attribute("cohort_month", "string|required")
        .attribute("applied", "boolean|default:false")
        .attribute("batch", "integer")
        .attribute("applied_at", "string")
        .attribute("checkpoint", "boolean")
        .partition(BY_RECORD, ["record_id"])
        .behavior(Behavior::BodyOverflow)
}

/// A new transaction's id: a ULID, monotonic within this process (two writes in the same
/// millisecond keep their order).
pub(crate) fn next_id() -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut generator = GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
    let generator = generator.get_or_insert_with(ulid::Generator::new);
    generator
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The document of a new transaction.
pub(crate) fn new_document(
    record_id: &str,
    operation: Operation,
    value: f64,
    at: DateTime<Utc>,
) -> Map<String, Value> {
    let doc = json!({
        "record_id": record_id,
        "value": value,
        "operation": operation.as_str(),
        "timestamp": rfc3339(at),
        "cohort_hour": at.format("%Y-%m-%dT%H").to_string(),
        "cohort_day": at.format("%Y-%m-%d").to_string(),
        "cohort_month": at.format("%Y-%m").to_string(),
        "applied": false,
    });
    match doc {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Folds transactions (in the given order) into `base`.
pub(crate) fn fold<'a>(
    field: &FieldConfig,
    base: f64,
    transactions: impl IntoIterator<Item = &'a Transaction>,
) -> f64 {
    transactions
        .into_iter()
        .fold(base, |acc, tx| match tx.operation {
            Operation::Set => tx.value,
            Operation::Add => field.reduce(acc, tx.value),
            Operation::Sub => field.reduce(acc, -tx.value),
        })
}

/// Whether two values are the same number (bit-exact, `-0 == 0`).
pub(crate) fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(id: &str, op: Operation, value: f64, batch: Option<u64>) -> Transaction {
        Transaction {
            id: id.to_owned(),
            record_id: "r".to_owned(),
            value,
            operation: op,
            timestamp: Utc::now(),
            cohort_hour: String::new(),
            cohort_day: String::new(),
            cohort_month: String::new(),
            applied: batch.is_some(),
            batch,
            applied_at: None,
            checkpoint: false,
            etag: ETag::new("e"),
        }
    }

    #[test]
    fn ids_are_monotonic() {
        let ids: Vec<String> = (0..1000).map(|_| next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn fold_uses_the_last_set_and_the_reducer() {
        let f = FieldConfig::new("r", "f");
        let txs = [
            tx("a", Operation::Add, 5.0, None),
            tx("b", Operation::Set, 100.0, None),
            tx("c", Operation::Sub, 3.0, None),
            tx("d", Operation::Add, 1.0, None),
        ];
        assert_eq!(fold(&f, 7.0, &txs), 98.0);
        let max = FieldConfig::new("r", "f").reducer(f64::max);
        assert_eq!(fold(&max, 0.0, &txs[2..]), 1.0);
    }

    #[test]
    fn fold_order_is_batch_then_id_with_unapplied_last() {
        let mut txs = [
            tx("z", Operation::Add, 1.0, None),
            tx("b", Operation::Add, 1.0, Some(2)),
            tx("c", Operation::Add, 1.0, Some(1)),
            tx("a", Operation::Add, 1.0, None),
            tx("d", Operation::Add, 1.0, Some(1)),
        ];
        txs.sort_by(Transaction::fold_order);
        let ids: Vec<&str> = txs.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "b", "a", "z"]);
    }

    #[test]
    fn documents_carry_cohorts() -> Result<()> {
        let at = DateTime::parse_from_rfc3339("2024-05-01T13:14:15.123Z")
            .map_err(|e| Error::Refused {
                operation: "test",
                reason: e.to_string(),
            })?
            .with_timezone(&Utc);
        let doc = new_document("w", Operation::Sub, 2.5, at);
        assert_eq!(doc["cohort_hour"], "2024-05-01T13");
        assert_eq!(doc["cohort_day"], "2024-05-01");
        assert_eq!(doc["cohort_month"], "2024-05");
        assert_eq!(doc["operation"], "sub");
        assert_eq!(doc["timestamp"], "2024-05-01T13:14:15.123Z");
        Ok(())
    }
}
