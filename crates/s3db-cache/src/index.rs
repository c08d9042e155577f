//! The validity index: which cached answers are older than a write this process made.
//!
//! Every entry carries `loaded_at`, taken **before** its load read the store; every
//! invalidation is stamped **after** its write completed. An entry is served only if it was
//! loaded after the last invalidation that affects it (by more than the clock-skew margin when
//! another process loaded it). This is what makes a process read its own writes whatever the
//! drivers hold: an entry stored by a load that raced with a write (and landed after the
//! write's clean-up), an entry another process stored in a shared driver, or a value a
//! concurrent load is about to store, is never served after the write returned.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use s3db_core::plugin::Document;

use crate::key::{CacheKey, Family, Invalidation, Scope, partition_touched};

/// At most this many per-record invalidations are remembered per resource; past it they are
/// folded into one floor for all records of the resource.
const MAX_RECORD_STAMPS: usize = 65_536;
/// At most this many partition-touching writes are remembered per resource; past it the oldest
/// are folded into a floor for all partition keys of the resource.
const MAX_PARTITION_WRITES: usize = 4_096;

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

#[derive(Debug, Default)]
struct ResourceIndex {
    /// Everything of the resource loaded at or before this is stale.
    floor: u64,
    /// Last write of any record (collection keys).
    collection: u64,
    /// Record keys: a floor for all, and the last write of each.
    record_floor: u64,
    records: HashMap<String, u64>,
    /// Partition keys: a floor for all, and the recent writes with their data.
    partition_floor: u64,
    partition_writes: VecDeque<(u64, std::sync::Arc<[Document]>)>,
}

/// Invalidation stamps of every resource.
#[derive(Debug, Default)]
pub(crate) struct Index {
    floor: u64,
    resources: HashMap<String, ResourceIndex>,
    /// How long an invalidation must be remembered (the longest TTL plus the skew); `None`
    /// when some tier keeps entries forever.
    retention: Option<u64>,
}

impl Index {
    pub(crate) fn new(retention: Option<u64>) -> Self {
        Self {
            retention,
            ..Self::default()
        }
    }

    /// Forgets nothing, but makes everything loaded at or before `at` stale.
    pub(crate) fn clear_all(&mut self, at: u64) {
        self.floor = self.floor.max(at);
    }

    /// Records an invalidation stamped `at`.
    pub(crate) fn record(&mut self, at: u64, inv: &Invalidation) {
        let retention = self.retention;
        // Look up before allocating: a write to a known resource allocates no key.
        if !self.resources.contains_key(inv.resource_name()) {
            self.resources
                .insert(inv.resource_name().to_owned(), Default::default());
        }
        let Some(r) = self.resources.get_mut(inv.resource_name()) else {
            return;
        };
        match inv.scope() {
            Scope::Everything => r.floor = r.floor.max(at),
            Scope::Record { id, data } => {
                r.collection = r.collection.max(at);
                if let Some(id) = id {
                    let stamp = r.records.entry(id.clone()).or_default();
                    *stamp = (*stamp).max(at);
                }
                match data {
                    Some(data) => r
                        .partition_writes
                        .push_back((at, std::sync::Arc::clone(data))),
                    None => r.partition_floor = r.partition_floor.max(at),
                }
            }
        }
        r.prune(at, retention);
    }

    /// Whether an entry of `key` loaded at `loaded_at` may be served; `margin` is added to
    /// every invalidation stamp (the clock skew, for entries of other processes).
    pub(crate) fn valid(&self, key: &CacheKey, loaded_at: u64, margin: u64) -> bool {
        let after = |stamp: u64| loaded_at > stamp.saturating_add(margin);
        if !after(self.floor) {
            return false;
        }
        let Some(r) = self.resources.get(key.resource()) else {
            return true;
        };
        if !after(r.floor) {
            return false;
        }
        match key.family() {
            Family::Record { id } => {
                after(r.record_floor) && r.records.get(id).is_none_or(|s| after(*s))
            }
            Family::Collection => after(r.collection),
            Family::Partition { values, .. } => {
                after(r.partition_floor)
                    && !r
                        .partition_writes
                        .iter()
                        .rev()
                        .take_while(|(stamp, _)| !after(*stamp))
                        .any(|(_, data)| data.iter().any(|d| partition_touched(values, d)))
            }
        }
    }
}

impl ResourceIndex {
    fn prune(&mut self, now: u64, retention: Option<u64>) {
        if let Some(retention) = retention {
            // Entries loaded before `horizon` have expired everywhere: stamps older than it
            // can no longer make anything stale.
            let horizon = now.saturating_sub(retention);
            if self.records.len() > MAX_RECORD_STAMPS / 2 {
                self.records.retain(|_, stamp| *stamp >= horizon);
            }
            while self
                .partition_writes
                .front()
                .is_some_and(|(stamp, _)| *stamp < horizon)
            {
                self.partition_writes.pop_front();
            }
        }
        if self.records.len() > MAX_RECORD_STAMPS {
            let newest = self.records.values().copied().max().unwrap_or(now);
            self.record_floor = self.record_floor.max(newest);
            self.records.clear();
        }
        while self.partition_writes.len() > MAX_PARTITION_WRITES {
            if let Some((stamp, _)) = self.partition_writes.pop_front() {
                self.partition_floor = self.partition_floor.max(stamp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn part(region: &str) -> CacheKey {
        CacheKey::new(
            "u",
            "v1",
            Family::Partition {
                name: "byRegion".into(),
                values: [("region".to_owned(), json!(region))].into(),
            },
            "count",
            None,
        )
    }

    #[test]
    fn entries_loaded_before_a_write_are_stale() {
        let mut index = Index::new(None);
        let get_a = CacheKey::new("u", "v1", Family::Record { id: "a".into() }, "get", None);
        let get_b = CacheKey::new("u", "v1", Family::Record { id: "b".into() }, "get", None);
        let coll = CacheKey::new("u", "v1", Family::Collection, "count", None);
        let data = json!({"region": "eu"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        index.record(100, &Invalidation::record("u", Some("a"), Some(vec![data])));
        assert!(!index.valid(&get_a, 100, 0));
        assert!(index.valid(&get_a, 101, 0));
        assert!(index.valid(&get_b, 50, 0), "other records untouched");
        assert!(!index.valid(&coll, 99, 0));
        assert!(!index.valid(&part("eu"), 99, 0));
        assert!(
            index.valid(&part("us"), 99, 0),
            "other partitions untouched"
        );
        assert!(
            !index.valid(&get_a, 150, 100),
            "the margin widens the window"
        );
        index.clear_all(200);
        assert!(!index.valid(&get_b, 150, 0));
    }

    #[test]
    fn overflow_folds_into_floors_and_stays_safe() {
        let mut index = Index::new(None);
        for i in 0..(MAX_PARTITION_WRITES + 10) {
            let data = json!({"region": format!("r{i}")})
                .as_object()
                .cloned()
                .unwrap_or_default();
            let at = 10 + i as u64;
            index.record(at, &Invalidation::record("u", None, Some(vec![data])));
        }
        // The oldest writes were folded into the floor: a key they touched is still stale.
        assert!(!index.valid(&part("r0"), 10, 0));
    }

    #[test]
    fn the_clock_never_goes_back() {
        let clock = Clock::default();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }
}
