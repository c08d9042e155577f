//! Counters: per resource, summed per plugin.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the cache did, per plugin or per resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Cacheable reads that went to the store.
    pub misses: u64,
    /// Entries dropped to stay within a driver's capacity.
    pub evictions: u64,
    /// Entries found in a driver but refused because a write of this process (or `clear`,
    /// `invalidate`) made them stale.
    pub stale: u64,
    /// Driver failures (each fell through to the next tier or to the store).
    pub errors: u64,
    /// Reads passed to the store because no configured driver can hold their answer (records
    /// with only byte-storing drivers).
    pub uncached: u64,
    /// Reads passed to the store inside [`crate::bypass`].
    pub bypassed: u64,
    /// Invalidations (writes, `invalidate`, `clear`).
    pub invalidations: u64,
    /// Per tier, in order (plugin-wide stats only).
    pub tiers: Vec<TierStats>,
}

impl CacheStats {
    /// `hits / (hits + misses)`, 0 before any read.
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// What one tier did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierStats {
    /// The driver ([`crate::CacheDriver::describe`]).
    pub driver: String,
    /// Reads it answered.
    pub hits: u64,
    /// Its failures.
    pub errors: u64,
    /// Entries it evicted.
    pub evictions: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) uncached: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) invalidations: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn add_to(&self, stats: &mut CacheStats) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        stats.hits += get(&self.hits);
        stats.misses += get(&self.misses);
        stats.stale += get(&self.stale);
        stats.errors += get(&self.errors);
        stats.uncached += get(&self.uncached);
        stats.bypassed += get(&self.bypassed);
        stats.invalidations += get(&self.invalidations);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_ratio() {
        assert!(CacheStats::default().hit_ratio().abs() < f64::EPSILON);
        let s = CacheStats {
            hits: 3,
            misses: 1,
            ..CacheStats::default()
        };
        assert!((s.hit_ratio() - 0.75).abs() < f64::EPSILON);
    }
}
