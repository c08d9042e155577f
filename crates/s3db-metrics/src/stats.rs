//! The plugin's own aggregates: counts, errors and a latency histogram per resource, operation and
//! status, and the snapshot types built from them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two: latencies are kept to within 1/32 (~3 %) of their value, and
/// quantiles are reported at the middle of their bucket (within ~1.6 %).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;

/// A sparse log-linear histogram of nanoseconds: exact below 32 ns, then 32 buckets per power of
/// two. Memory grows with the number of distinct buckets touched (a few dozen in practice), never
/// with the number of samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    buckets: BTreeMap<u16, u64>,
}

fn bucket_of(nanos: u64) -> u16 {
    if nanos < SUB {
        // Exact buckets 0..32.
        return u16::try_from(nanos).unwrap_or(u16::MAX);
    }
    let high = 63 - nanos.leading_zeros(); // >= SUB_BITS
    let shift = high - SUB_BITS;
    let index = (u64::from(shift + 1) << SUB_BITS) + ((nanos >> shift) & (SUB - 1));
    u16::try_from(index).unwrap_or(u16::MAX)
}

/// `[low, high)` of a bucket, in nanoseconds.
fn bucket_bounds(bucket: u16) -> (u64, u64) {
    let bucket = u64::from(bucket);
    if bucket < SUB {
        return (bucket, bucket + 1);
    }
    let shift = (bucket >> SUB_BITS) - 1;
    let low = (SUB + (bucket & (SUB - 1))) << shift;
    (low, low.saturating_add(1 << shift))
}

impl Histogram {
    pub(crate) fn record(&mut self, nanos: u64) {
        *self.buckets.entry(bucket_of(nanos)).or_default() += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (bucket, n) in &other.buckets {
            *self.buckets.entry(*bucket).or_default() += n;
        }
    }

    /// The `q`-quantile (0..=1) of `count` samples, in nanoseconds, at the middle of its bucket.
    fn quantile(&self, q: f64, count: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        // The rank of the sample asked for, 1-based: ceil(q * count), at least 1.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (bucket, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let (low, high) = bucket_bounds(*bucket);
                return Some(low + (high - low) / 2);
            }
        }
        None
    }
}

/// Everything measured for one (resource, operation, status) over some time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Agg {
    pub(crate) count: u64,
    pub(crate) slow: u64,
    pub(crate) sum_nanos: u128,
    pub(crate) min_nanos: u64,
    pub(crate) max_nanos: u64,
    pub(crate) histogram: Histogram,
}

impl Agg {
    pub(crate) fn record(&mut self, nanos: u64, slow: bool) {
        if self.count == 0 || nanos < self.min_nanos {
            self.min_nanos = nanos;
        }
        self.max_nanos = self.max_nanos.max(nanos);
        self.count += 1;
        self.slow += u64::from(slow);
        self.sum_nanos += u128::from(nanos);
        self.histogram.record(nanos);
    }

    pub(crate) fn merge(&mut self, other: &Agg) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.min_nanos < self.min_nanos {
            self.min_nanos = other.min_nanos;
        }
        self.max_nanos = self.max_nanos.max(other.max_nanos);
        self.count += other.count;
        self.slow += other.slow;
        self.sum_nanos += other.sum_nanos;
        self.histogram.merge(&other.histogram);
    }

    /// The latency summary of these samples (all zero when there are none).
    pub(crate) fn latency(&self) -> LatencySummary {
        let quantile = |q: f64| {
            let nanos = self
                .histogram
                .quantile(q, self.count)
                .unwrap_or_default()
                .clamp(self.min_nanos, self.max_nanos);
            Duration::from_nanos(nanos)
        };
        let mean = if self.count == 0 {
            0
        } else {
            u64::try_from(self.sum_nanos / u128::from(self.count)).unwrap_or(u64::MAX)
        };
        LatencySummary {
            min: Duration::from_nanos(self.min_nanos),
            max: Duration::from_nanos(self.max_nanos),
            mean: Duration::from_nanos(mean),
            p50: quantile(0.50),
            p95: quantile(0.95),
            p99: quantile(0.99),
            total: nanos_to_duration(self.sum_nanos),
        }
    }

    /// The `q`-quantile in seconds, for the Prometheus summary.
    pub(crate) fn quantile_seconds(&self, q: f64) -> f64 {
        let nanos = self
            .histogram
            .quantile(q, self.count)
            .unwrap_or_default()
            .clamp(self.min_nanos, self.max_nanos);
        Duration::from_nanos(nanos).as_secs_f64()
    }

    pub(crate) fn sum_seconds(&self) -> f64 {
        nanos_to_duration(self.sum_nanos).as_secs_f64()
    }
}

fn nanos_to_duration(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let rest = u32::try_from(nanos % 1_000_000_000).unwrap_or_default();
    Duration::new(secs, rest)
}

/// Index of a status in [`OpStats::by_status`].
pub(crate) const OK: usize = 0;
/// See [`OK`].
pub(crate) const ERROR: usize = 1;
/// Label values of the statuses, by index.
pub(crate) const STATUS: [&str; 2] = ["ok", "error"];

/// One (resource, operation): per status, since start (or reset) and since the last flush.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpStats {
    pub(crate) by_status: [Agg; 2],
    pub(crate) errors_by_kind: BTreeMap<&'static str, u64>,
    /// Since the last flush.
    pub(crate) window: [Agg; 2],
    /// Per status, the facade keys of this (resource, operation), made on first use.
    pub(crate) facade: [Option<std::sync::Arc<FacadeKeys>>; 2],
}

/// The facade keys of one (resource, operation, status): built once, then handed to the
/// recorder by reference, so no labels are allocated per operation.
#[derive(Debug)]
pub(crate) struct FacadeKeys {
    pub(crate) operations: metrics::Key,
    pub(crate) duration: metrics::Key,
}

impl OpStats {
    /// Adds another's totals (not its flush window).
    pub(crate) fn merge_totals(&mut self, other: &OpStats) {
        for (mine, theirs) in self.by_status.iter_mut().zip(&other.by_status) {
            mine.merge(theirs);
        }
        for (kind, n) in &other.errors_by_kind {
            *self.errors_by_kind.entry(kind).or_default() += n;
        }
    }

    pub(crate) fn all(&self) -> Agg {
        let mut all = self.by_status[OK].clone();
        all.merge(&self.by_status[ERROR]);
        all
    }
}

/// The measurements of one resource.
#[derive(Debug, Default)]
pub(crate) struct ResourceStats {
    pub(crate) ops: Mutex<BTreeMap<&'static str, OpStats>>,
}

impl ResourceStats {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, OpStats>> {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The bounded log of the most recent slow operations.
#[derive(Debug, Default)]
pub(crate) struct SlowLog {
    pub(crate) entries: VecDeque<(u64, SlowOperation)>,
    pub(crate) next_seq: u64,
}

impl SlowLog {
    pub(crate) fn push(&mut self, entry: SlowOperation, capacity: usize) {
        while self.entries.len() >= capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((self.next_seq, entry));
        self.next_seq += 1;
    }
}

/// Latency of a set of operations. Quantiles are estimated from a log-linear histogram (within
/// ~2 % of the true value, always between `min` and `max`, and `p50 <= p95 <= p99`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// The fastest.
    pub min: Duration,
    /// The slowest.
    pub max: Duration,
    /// The mean.
    pub mean: Duration,
    /// The median.
    pub p50: Duration,
    /// The 95th percentile.
    pub p95: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The sum of all latencies.
    pub total: Duration,
}

/// The measurements of one operation (`get`, `insert`, …) of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationMetrics {
    /// The resource.
    pub resource: String,
    /// The operation's name, as [`s3db_core::plugin::Operation::name`] gives it.
    pub operation: String,
    /// How many ran (successes and errors).
    pub count: u64,
    /// How many returned an error (`NotFound` included).
    pub errors: u64,
    /// How many took at least the slow threshold.
    pub slow: u64,
    /// Errors by kind (`not_found`, `validation`, `already_exists`, …).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency of all of them (successes and errors).
    pub latency: LatencySummary,
}

impl OperationMetrics {
    /// `errors / count` (0 when nothing ran).
    #[must_use]
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.count)
    }
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The measurements of one resource: totals and per operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceMetrics {
    /// The resource.
    pub resource: String,
    /// Operations that ran.
    pub count: u64,
    /// Of which returned an error.
    pub errors: u64,
    /// Of which were slow.
    pub slow: u64,
    /// Latency over every operation of the resource.
    pub latency: LatencySummary,
    /// Per operation name; operations that never ran are absent.
    pub operations: BTreeMap<String, OperationMetrics>,
}

impl ResourceMetrics {
    /// One operation's measurements, if it ran.
    #[must_use]
    pub fn operation(&self, name: &str) -> Option<&OperationMetrics> {
        self.operations.get(name)
    }

    /// `errors / count` (0 when nothing ran).
    #[must_use]
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.count)
    }

    pub(crate) fn build(resource: &str, ops: &BTreeMap<&'static str, OpStats>) -> Self {
        let mut all = Agg::default();
        let mut errors = 0;
        let mut operations = BTreeMap::new();
        for (name, stats) in ops {
            let merged = stats.all();
            if merged.count == 0 {
                continue;
            }
            all.merge(&merged);
            errors += stats.by_status[ERROR].count;
            operations.insert(
                (*name).to_owned(),
                OperationMetrics {
                    resource: resource.to_owned(),
                    operation: (*name).to_owned(),
                    count: merged.count,
                    errors: stats.by_status[ERROR].count,
                    slow: merged.slow,
                    errors_by_kind: stats
                        .errors_by_kind
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), *v))
                        .collect(),
                    latency: merged.latency(),
                },
            );
        }
        Self {
            resource: resource.to_owned(),
            count: all.count,
            errors,
            slow: all.slow,
            latency: all.latency(),
            operations,
        }
    }
}

/// Everything measured since the plugin started (or was reset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// When measuring started (install, or the last [`crate::MetricsPlugin::reset`]).
    pub since: DateTime<Utc>,
    /// When the snapshot was taken.
    pub taken_at: DateTime<Utc>,
    /// Operations that ran, over every resource.
    pub count: u64,
    /// Of which returned an error.
    pub errors: u64,
    /// Of which were slow.
    pub slow: u64,
    /// Latency over every operation of every resource.
    pub latency: LatencySummary,
    /// Per operation name, over every resource (their `resource` is `*`).
    pub operations: BTreeMap<String, OperationMetrics>,
    /// Per measured resource (also those where nothing ran yet).
    pub resources: BTreeMap<String, ResourceMetrics>,
    /// Requests of the store, per owner and kind (empty when store metrics are off).
    pub store: Vec<crate::StoreRequestMetrics>,
}

impl MetricsSnapshot {
    /// Store requests of one owner and kind, if any ran.
    #[must_use]
    pub fn store_requests(
        &self,
        owner: &crate::StoreOwner,
        kind: s3db_core::RequestKind,
    ) -> Option<&crate::StoreRequestMetrics> {
        self.store
            .iter()
            .find(|s| &s.owner == owner && s.kind == kind)
    }

    /// One resource's measurements.
    #[must_use]
    pub fn resource(&self, name: &str) -> Option<&ResourceMetrics> {
        self.resources.get(name)
    }

    /// One operation of one resource, if it ran.
    #[must_use]
    pub fn operation(&self, resource: &str, operation: &str) -> Option<&OperationMetrics> {
        self.resources.get(resource)?.operation(operation)
    }

    /// `errors / count` (0 when nothing ran).
    #[must_use]
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.count)
    }
}

/// An operation that took at least the slow threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowOperation {
    /// The resource.
    pub resource: String,
    /// The operation's name.
    pub operation: String,
    /// The record's id, for single-record operations.
    pub id: Option<String>,
    /// How long it took.
    pub duration: Duration,
    /// When it finished.
    pub at: DateTime<Utc>,
    /// Its error, if it failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_their_values() {
        let mut previous_high = 0;
        for bucket in 0..2000u16 {
            let (low, high) = bucket_bounds(bucket);
            if bucket > 0 && low == 0 {
                break;
            }
            assert_eq!(
                low, previous_high,
                "bucket {bucket} starts where the last ended"
            );
            assert!(high > low);
            assert_eq!(bucket_of(low), bucket);
            assert_eq!(bucket_of(high - 1), bucket);
            previous_high = high;
            if high == u64::MAX {
                break;
            }
        }
        assert_eq!(bucket_of(u64::MAX), 1919);
    }

    #[test]
    fn relative_error_is_small() {
        for v in [
            33u64,
            100,
            999,
            12_345,
            1_000_000,
            987_654_321,
            u64::MAX / 3,
        ] {
            let (low, high) = bucket_bounds(bucket_of(v));
            let mid = low + (high - low) / 2;
            #[allow(clippy::cast_precision_loss)]
            let err = (mid as f64 - v as f64).abs() / v as f64;
            assert!(err <= 1.0 / 32.0, "{v}: {mid} is {err}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut agg = Agg::default();
        for micros in 1..=1000u64 {
            agg.record(micros * 1000, false);
        }
        let l = agg.latency();
        let close = |d: Duration, micros: f64| {
            let got = d.as_secs_f64() * 1e6;
            assert!((got - micros).abs() / micros < 0.04, "{got} vs {micros}");
        };
        close(l.p50, 500.0);
        close(l.p95, 950.0);
        close(l.p99, 990.0);
        close(l.mean, 500.5);
        assert_eq!(l.min, Duration::from_micros(1));
        assert_eq!(l.max, Duration::from_millis(1));
        assert!(l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max);
    }

    #[test]
    fn single_sample_and_empty() {
        let mut agg = Agg::default();
        assert_eq!(agg.latency(), LatencySummary::default());
        agg.record(1_234_567, true);
        let l = agg.latency();
        assert_eq!(l.min, l.max);
        assert_eq!(l.p50, l.max, "clamped to the only sample");
        assert_eq!(l.p99, l.max);
        assert_eq!(agg.slow, 1);
    }

    #[test]
    fn merging_equals_recording_together() {
        let (mut a, mut b, mut both) = (Agg::default(), Agg::default(), Agg::default());
        for v in [5u64, 50, 500, 5000] {
            a.record(v, false);
            both.record(v, false);
        }
        for v in [7u64, 70_000, 3] {
            b.record(v, true);
            both.record(v, true);
        }
        a.merge(&b);
        assert_eq!(a.latency(), both.latency());
        assert_eq!((a.count, a.slow), (both.count, both.slow));
    }

    #[test]
    fn the_slow_log_keeps_the_most_recent() {
        let mut log = SlowLog::default();
        for i in 0..10 {
            log.push(
                SlowOperation {
                    resource: "r".into(),
                    operation: "get".into(),
                    id: Some(i.to_string()),
                    duration: Duration::from_millis(i),
                    at: Utc::now(),
                    error: None,
                },
                3,
            );
        }
        let ids: Vec<_> = log
            .entries
            .iter()
            .map(|(seq, e)| (*seq, e.id.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            ids,
            [
                (7, "7".to_owned()),
                (8, "8".to_owned()),
                (9, "9".to_owned())
            ]
        );
    }
}
