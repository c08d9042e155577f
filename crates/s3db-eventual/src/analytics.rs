//! Analytics over the transaction log: per hour, day or month, and top records.
//!
//! Computed on demand from the transactions still in the log (those within the retention;
//! garbage collection folds older ones into checkpoints, which analytics leave out), so they are
//! exact, cost nothing on the write path and cannot drift from the log. `add` counts its amount,
//! `sub` its negation; `set` transactions are not amounts and are left out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::transaction::{Operation, Transaction};

/// A cohort granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// `2024-05-01T13` (UTC).
    Hour,
    /// `2024-05-01`.
    Day,
    /// `2024-05`.
    Month,
}

impl Period {
    pub(crate) fn cohort(self, tx: &Transaction) -> &str {
        match self {
            Period::Hour => &tx.cohort_hour,
            Period::Day => &tx.cohort_day,
            Period::Month => &tx.cohort_month,
        }
    }
}

/// The amounts of one cohort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bucket {
    /// The cohort (`2024-05-01T13`, `2024-05-01` or `2024-05`).
    pub cohort: String,
    /// Transactions.
    pub count: u64,
    /// Sum of the signed amounts.
    pub sum: f64,
    /// Mean signed amount.
    pub avg: f64,
    /// Smallest signed amount.
    pub min: f64,
    /// Largest signed amount.
    pub max: f64,
    /// Distinct records.
    pub records: u64,
}

/// One record's amounts in a cohort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecordTotal {
    /// The record.
    pub record_id: String,
    /// Transactions.
    pub count: u64,
    /// Sum of the signed amounts.
    pub sum: f64,
}

fn amount(tx: &Transaction) -> Option<f64> {
    if tx.checkpoint {
        return None;
    }
    match tx.operation {
        Operation::Add => Some(tx.value),
        Operation::Sub => Some(-tx.value),
        Operation::Set => None,
    }
}

/// Buckets per cohort of `period`, in cohort order.
pub(crate) fn buckets(period: Period, txs: &[Transaction]) -> Vec<Bucket> {
    let mut out: BTreeMap<&str, (Bucket, BTreeMap<&str, ()>)> = BTreeMap::new();
    for tx in txs {
        let Some(v) = amount(tx) else { continue };
        let cohort = period.cohort(tx);
        let (b, records) = out.entry(cohort).or_insert_with(|| {
            (
                Bucket {
                    cohort: cohort.to_owned(),
                    count: 0,
                    sum: 0.0,
                    avg: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    records: 0,
                },
                BTreeMap::new(),
            )
        });
        b.count += 1;
        b.sum += v;
        b.min = b.min.min(v);
        b.max = b.max.max(v);
        records.insert(&tx.record_id, ());
    }
    out.into_values()
        .map(|(mut b, records)| {
            #[allow(clippy::cast_precision_loss)]
            let n = b.count as f64;
            b.avg = b.sum / n;
            b.records = records.len() as u64;
            b
        })
        .collect()
}

/// Records of one cohort by descending sum (ties by id), at most `limit`.
pub(crate) fn top_records(
    period: Period,
    cohort: &str,
    limit: usize,
    txs: &[Transaction],
) -> Vec<RecordTotal> {
    let mut totals: BTreeMap<&str, RecordTotal> = BTreeMap::new();
    for tx in txs.iter().filter(|t| period.cohort(t) == cohort) {
        let Some(v) = amount(tx) else { continue };
        let t = totals.entry(&tx.record_id).or_insert_with(|| RecordTotal {
            record_id: tx.record_id.clone(),
            count: 0,
            sum: 0.0,
        });
        t.count += 1;
        t.sum += v;
    }
    let mut out: Vec<RecordTotal> = totals.into_values().collect();
    out.sort_by(|a, b| {
        b.sum
            .total_cmp(&a.sum)
            .then_with(|| a.record_id.cmp(&b.record_id))
    });
    out.truncate(limit);
    out
}
