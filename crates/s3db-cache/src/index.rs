//! The validity index: which cached answers are older than a write this process made.
//!
//! Every entry carries `loaded_at`, taken **before** its load read the store; every
//! invalidation is stamped **after** its write completed. An entry is served only if it was
//! loaded after the last invalidation that affects it (by more than the clock-skew margin when
//! another process loaded it). This is what makes a process read its own writes whatever the
//! drivers hold: an entry stored by a load that raced with a write (and landed after the
//! write's clean-up), an entry another process stored in a shared driver, or a value a
//! concurrent load is about to store, is never served after the write returned.
//!
//! The stamps are generations on the process's clock: per resource, the last write of any record
//! (every listing, count, page and query depends on it), the last write of each record (by a
//! hash of its id) and of each partition value (by a hash of the value, per partition field).
//! A write updates a handful of them, whatever is cached: O(1), no allocation, no scan.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use s3db_core::plugin::Document;
use s3db_core::resource::partition::encode_value;
use serde_json::Value;

use crate::key::{CacheKey, Family};

/// At most this many per-record stamps are kept exactly per resource (past it, and after
/// forgetting those no entry can be older than, they are folded into [`RECORD_BUCKETS`]).
const MAX_RECORD_STAMPS: usize = 65_536;
/// Coarse per-record stamps (by hash) that hold what the exact ones could not keep.
const RECORD_BUCKETS: usize = 4_096;
/// At most this many stamps per partition field, then folded into [`VALUE_BUCKETS`].
const MAX_VALUE_STAMPS: usize = 4_096;
/// Coarse per-value stamps of a partition field.
const VALUE_BUCKETS: usize = 256;
/// Stamp maps are pruned when they reach this size at the least.
const MIN_PRUNE_AT: usize = 1_024;
/// At most this many partition fields are tracked per resource; a partition key with another
/// field is stale after any write of the resource.
const MAX_FIELDS: usize = 64;

/// Microseconds since the Unix epoch, on the wall clock.
pub(crate) fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A wall clock in microseconds that never goes back within the process.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    last: AtomicU64,
}

impl Clock {
    pub(crate) fn now(&self) -> u64 {
        let wall = wall_us();
        let previous = self.last.fetch_max(wall, Ordering::SeqCst);
        previous.max(wall)
    }
}

/// Hashes that are already hashes: the stamp maps are keyed by them.
#[derive(Debug, Default, Clone, Copy)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The last write stamp of each of many things (records, partition values), by a 64-bit hash
/// of the thing: exact while small, bounded always. Two things with one hash share a stamp,
/// which can only make an entry stale, never fresh.
#[derive(Debug)]
struct Stamps {
    /// Everything loaded at or before it is stale (set when a field is first tracked).
    floor: u64,
    exact: HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    /// What `exact` could not keep, by hash modulo its length (empty until first needed).
    coarse: Vec<u64>,
    coarse_len: usize,
    max_exact: usize,
    prune_at: usize,
}

impl Stamps {
    fn new(floor: u64, max_exact: usize, coarse_len: usize) -> Self {
        Self {
            floor,
            exact: HashMap::default(),
            coarse: Vec::new(),
            coarse_len,
            max_exact,
            prune_at: MIN_PRUNE_AT.min(max_exact),
        }
    }

    fn slot(&self, hash: u64) -> usize {
        // Lossless on 64-bit targets; on others a smaller modulus is as good.
        usize::try_from(hash % self.coarse_len as u64).unwrap_or(0)
    }

    /// The last write of the thing with this hash.
    fn last(&self, hash: u64) -> u64 {
        let exact = self.exact.get(&hash).copied().unwrap_or(0);
        let coarse = self.coarse.get(self.slot(hash)).copied().unwrap_or(0);
        self.floor.max(exact).max(coarse)
    }

    /// Notes a write at `at`; `retention` is how long a stamp can still make an entry stale.
    fn note(&mut self, hash: u64, at: u64, retention: Option<u64>) {
        let stamp = self.exact.entry(hash).or_insert(0);
        *stamp = (*stamp).max(at);
        if self.exact.len() >= self.prune_at {
            self.prune(at, retention);
        }
    }

    /// Forgets stamps older than anything still cached; folds the rest into the coarse stamps
    /// when too many are left. Runs when the map has doubled since the last run, so a write
    /// costs O(1) amortized.
    fn prune(&mut self, now: u64, retention: Option<u64>) {
        if let Some(retention) = retention {
            // Entries loaded before `horizon` have expired everywhere: older stamps can no
            // longer make anything stale.
            let horizon = now.saturating_sub(retention);
            self.exact.retain(|_, stamp| *stamp >= horizon);
        }
        if self.exact.len() > self.max_exact / 2 {
            if self.coarse.is_empty() {
                self.coarse = vec![0; self.coarse_len];
            }
            let exact = std::mem::take(&mut self.exact);
            for (hash, stamp) in exact {
                let slot = self.slot(hash);
                if let Some(coarse) = self.coarse.get_mut(slot) {
                    *coarse = (*coarse).max(stamp);
                }
            }
        }
        self.prune_at =
            (self.exact.len() * 2).clamp(MIN_PRUNE_AT.min(self.max_exact), self.max_exact);
    }
}

/// The stamps of one partition field.
#[derive(Debug)]
struct FieldStamps {
    field: String,
    values: Stamps,
}

/// Invalidation stamps of one resource.
#[derive(Debug)]
pub(crate) struct ResourceIndex {
    /// Everything of the resource loaded at or before this is stale.
    floor: u64,
    /// Last write of any record (collection keys).
    collection: u64,
    /// Last write of each record, by hash of its id.
    records: Stamps,
    /// A write whose data was unknown: every partition key.
    partition_floor: u64,
    /// Last write of each value of the partition fields asked for so far. A field is tracked
    /// from the first check of a key of it on, with the last write of the resource as its
    /// floor: writes before it may have touched any of its values.
    fields: Vec<FieldStamps>,
    /// How long an invalidation must be remembered (the longest TTL plus the skew); `None`
    /// when some tier keeps entries forever.
    retention: Option<u64>,
    hasher: RandomState,
}

/// What a write touched: the record (when its id is known) and the versions of its data (when
/// known; otherwise every partition key counts as touched).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Write<'a> {
    pub(crate) id: Option<&'a str>,
    pub(crate) data: Option<&'a [&'a Document]>,
}

impl ResourceIndex {
    pub(crate) fn new(retention: Option<u64>) -> Self {
        Self {
            floor: 0,
            collection: 0,
            records: Stamps::new(0, MAX_RECORD_STAMPS, RECORD_BUCKETS),
            partition_floor: 0,
            fields: Vec::new(),
            retention,
            hasher: RandomState::new(),
        }
    }

    fn hash_id(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// A hash of a partition value as core encodes it: values with one encoding have one hash.
    fn hash_value(&self, value: &Value) -> u64 {
        match value {
            // Such a string is its own encoding: no allocation.
            Value::String(s)
                if !s
                    .chars()
                    .any(|c| matches!(c, '%' | '/' | '.') || c.is_control()) =>
            {
                self.hasher.hash_one(s.as_str())
            }
            other => self.hasher.hash_one(encode_value(other).as_str()),
        }
    }

    /// Makes everything of the resource loaded at or before `at` stale.
    pub(crate) fn everything(&mut self, at: u64) {
        self.floor = self.floor.max(at);
    }

    /// Records a write of one record, stamped `at`.
    pub(crate) fn write(&mut self, at: u64, write: Write<'_>) {
        let retention = self.retention;
        self.collection = self.collection.max(at);
        if let Some(id) = write.id {
            let hash = self.hash_id(id);
            self.records.note(hash, at, retention);
        }
        match write.data {
            None => self.partition_floor = self.partition_floor.max(at),
            Some(docs) => {
                for i in 0..self.fields.len() {
                    for doc in docs {
                        let value = doc.get(&self.fields[i].field).unwrap_or(&Value::Null);
                        let hash = self.hash_value(value);
                        self.fields[i].values.note(hash, at, retention);
                    }
                }
            }
        }
    }

    /// The index of `field` in `self.fields`, tracking it from now on if it was not; `None`
    /// when too many fields are tracked.
    fn field(&mut self, field: &str) -> Option<usize> {
        if let Some(i) = self.fields.iter().position(|f| f.field == field) {
            return Some(i);
        }
        if self.fields.len() >= MAX_FIELDS {
            return None;
        }
        self.fields.push(FieldStamps {
            field: field.to_owned(),
            values: Stamps::new(self.collection, MAX_VALUE_STAMPS, VALUE_BUCKETS),
        });
        Some(self.fields.len() - 1)
    }

    /// Whether an entry of `key` (of this resource) loaded at `loaded_at` may be served;
    /// `margin` is added to every invalidation stamp (the clock skew, for entries of other
    /// processes). It may start tracking a partition field, hence `&mut`.
    pub(crate) fn valid(&mut self, key: &CacheKey, loaded_at: u64, margin: u64) -> bool {
        let after = |stamp: u64| loaded_at > stamp.saturating_add(margin);
        if !after(self.floor) {
            return false;
        }
        match key.family() {
            Family::Record { id } => after(self.records.last(self.hash_id(id))),
            Family::Collection => after(self.collection),
            Family::Partition { values, .. } => {
                if !after(self.partition_floor) {
                    return false;
                }
                // Touched when a write had the asked value in any of the key's fields.
                values.iter().all(|(field, want)| match self.field(field) {
                    Some(i) => after(self.fields[i].values.last(self.hash_value(want))),
                    None => after(self.collection),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn part(region: &Value) -> CacheKey {
        CacheKey::new(
            "u",
            "v1",
            Family::Partition {
                name: "byRegion".into(),
                values: [("region".to_owned(), region.clone())].into(),
            },
            "count",
            None,
        )
    }

    fn doc(v: Value) -> Document {
        v.as_object().cloned().unwrap_or_default()
    }

    fn get(id: &str) -> CacheKey {
        CacheKey::new("u", "v1", Family::Record { id: id.into() }, "get", None)
    }

    #[test]
    fn entries_loaded_before_a_write_are_stale() {
        let mut index = ResourceIndex::new(None);
        let coll = CacheKey::new("u", "v1", Family::Collection, "count", None);
        // The partition field is tracked once a key of it is checked.
        assert!(index.valid(&part(&json!("eu")), 1, 0));
        let data = doc(json!({"region": "eu"}));
        index.write(
            100,
            Write {
                id: Some("a"),
                data: Some(&[&data]),
            },
        );
        assert!(!index.valid(&get("a"), 100, 0));
        assert!(index.valid(&get("a"), 101, 0));
        assert!(index.valid(&get("b"), 50, 0), "other records untouched");
        assert!(!index.valid(&coll, 99, 0));
        assert!(!index.valid(&part(&json!("eu")), 99, 0));
        assert!(
            index.valid(&part(&json!("us")), 99, 0),
            "other partitions untouched"
        );
        assert!(
            !index.valid(&get("a"), 150, 100),
            "the margin widens the window"
        );
        index.everything(200);
        assert!(!index.valid(&get("b"), 150, 0));
    }

    #[test]
    fn a_field_first_checked_after_writes_counts_them() {
        let mut index = ResourceIndex::new(None);
        let data = doc(json!({"region": "eu"}));
        index.write(
            100,
            Write {
                id: Some("a"),
                data: Some(&[&data]),
            },
        );
        // Nothing tracked "region" at the write: any of its values may have been touched.
        assert!(!index.valid(&part(&json!("us")), 99, 0));
        assert!(index.valid(&part(&json!("us")), 101, 0));
        // An unknown write touches every partition.
        index.write(
            200,
            Write {
                id: None,
                data: None,
            },
        );
        assert!(!index.valid(&part(&json!("asia")), 199, 0));
    }

    #[test]
    fn partition_values_compare_as_core_encodes_them() {
        let mut index = ResourceIndex::new(None);
        assert!(index.valid(&part(&json!(1)), 1, 0));
        for (written, asked) in [
            (json!({"region": "1"}), json!(1)),
            (json!({}), Value::Null),
            (json!({"region": "a/b"}), json!("a/b")),
            (json!({"region": "x..y"}), json!("x..y")),
        ] {
            let data = doc(written);
            index.write(
                100,
                Write {
                    id: None,
                    data: Some(&[&data]),
                },
            );
            assert!(!index.valid(&part(&asked), 99, 0), "{asked}");
        }
    }

    #[test]
    fn overflow_folds_into_coarse_stamps_and_stays_safe() {
        let mut index = ResourceIndex::new(None);
        assert!(index.valid(&part(&json!("r0")), 1, 0));
        for i in 0..(MAX_RECORD_STAMPS + 10) {
            let data = doc(json!({"region": format!("r{i}")}));
            let at = 10 + i as u64;
            index.write(
                at,
                Write {
                    id: Some(&format!("id{i}")),
                    data: Some(&[&data]),
                },
            );
        }
        // The oldest writes were folded: what they touched is still stale.
        assert!(!index.valid(&part(&json!("r0")), 10, 0));
        assert!(!index.valid(&get("id0"), 10, 0));
        assert!(index.records.exact.len() <= MAX_RECORD_STAMPS);
        assert!(index.fields[0].values.exact.len() <= MAX_VALUE_STAMPS);
        // Most other records are still fresh (only their coarse slot was touched, by older
        // writes).
        assert!(index.valid(&get("never-written"), u64::from(u32::MAX), 0));
    }

    #[test]
    fn stamps_older_than_the_retention_are_forgotten() {
        let mut index = ResourceIndex::new(Some(1_000));
        for i in 0..10_000u64 {
            index.write(
                i * 10,
                Write {
                    id: Some(&format!("id{i}")),
                    data: None,
                },
            );
        }
        assert!(
            index.records.exact.len() < 2 * MIN_PRUNE_AT,
            "pruned as it went"
        );
        assert!(index.records.coarse.is_empty(), "nothing had to be folded");
        assert!(!index.valid(&get("id9999"), 99_990, 0));
    }

    #[test]
    fn the_clock_never_goes_back() {
        let clock = Clock::default();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }
}
