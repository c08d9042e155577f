//! The installed cache: tiers, the validity index, single loads, stats.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use s3db_core::plugin::{
    Document, Error, Next, Operation, Outcome, PluginContext, Resource, ResourceSelection, Result,
};

use crate::config::Strategy;
use crate::driver::CacheDriver;
use crate::entry::{CacheEntry, CachedValue, ValueKind};
use crate::events::CacheEvent;
use crate::index::{Clock, ResourceIndex, Write};
use crate::key::{CacheKey, Invalidation, Scope};
use crate::stats::{CacheStats, Counters, TierStats, bump};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Tier {
    pub(crate) driver: Arc<dyn CacheDriver>,
    hits: AtomicU64,
    errors: AtomicU64,
}

impl Tier {
    pub(crate) fn new(driver: Arc<dyn CacheDriver>) -> Self {
        Self {
            driver,
            hits: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn accepts_any(&self, kinds: &[ValueKind]) -> bool {
        kinds.iter().any(|k| self.driver.accepts(*k))
    }
}

/// One async mutex per key being loaded: concurrent misses of a key wait for the first load
/// and then find its answer in the cache.
#[derive(Default)]
struct LockMap {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct KeyGuard<'a> {
    map: &'a LockMap,
    key: String,
    mutex: Arc<tokio::sync::Mutex<()>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Whether another load of the key held the lock first.
    waited: bool,
}

impl LockMap {
    async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let mutex = Arc::clone(lock(&self.map).entry(key.to_owned()).or_default());
        let mut guard = KeyGuard {
            map: self,
            key: key.to_owned(),
            mutex,
            held: None,
            waited: false,
        };
        let held = match Arc::clone(&guard.mutex).try_lock_owned() {
            Ok(held) => held,
            Err(_) => {
                guard.waited = true;
                Arc::clone(&guard.mutex).lock_owned().await
            }
        };
        guard.held = Some(held);
        guard
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut map = lock(&self.map.map);
        // The map's copy and ours: nobody else waits for this key.
        if Arc::strong_count(&self.mutex) <= 2 {
            map.remove(&self.key);
        }
    }
}

/// What the cache knows about one resource: its counters and its invalidation stamps. The
/// middleware, hooks and handle of the resource hold it, so a write finds it without a lookup.
pub(crate) struct ResourceState {
    pub(crate) name: String,
    pub(crate) counters: Counters,
    index: Mutex<ResourceIndex>,
}

/// The cache as installed in one database.
pub(crate) struct Runtime {
    pub(crate) name: String,
    pub(crate) incarnation: String,
    pub(crate) tiers: Vec<Tier>,
    strategy: Strategy,
    selection: ResourceSelection,
    skew_us: u64,
    /// How long invalidations must be remembered (see [`ResourceIndex`]).
    retention: Option<u64>,
    /// `clear()`: everything loaded at or before it is stale.
    floor: AtomicU64,
    clock: Clock,
    locks: LockMap,
    /// Loads finished so far (to know whether one finished between a miss and taking its lock).
    loads_done: AtomicU64,
    resources: Mutex<HashMap<String, Arc<ResourceState>>>,
    /// Failures not tied to one resource.
    global: Counters,
    pub(crate) cx: PluginContext,
    set_up: Mutex<HashSet<String>>,
}

impl Runtime {
    pub(crate) fn new(
        name: &str,
        tiers: Vec<Arc<dyn CacheDriver>>,
        strategy: Strategy,
        selection: ResourceSelection,
        skew: std::time::Duration,
        cx: PluginContext,
    ) -> Self {
        let skew_us = u64::try_from(skew.as_micros()).unwrap_or(u64::MAX);
        // Invalidations must be remembered as long as an entry loaded before them may live.
        let retention = tiers
            .iter()
            .map(|t| t.ttl())
            .try_fold(0u64, |max, ttl| {
                ttl.map(|t| max.max(u64::try_from(t.as_micros()).unwrap_or(u64::MAX)))
            })
            .map(|ttl| ttl.saturating_add(skew_us).saturating_add(1_000_000));
        Self {
            name: name.to_owned(),
            incarnation: format!("{:016x}", rand::random::<u64>()),
            tiers: tiers.into_iter().map(Tier::new).collect(),
            strategy,
            selection,
            skew_us,
            retention,
            floor: AtomicU64::new(0),
            clock: Clock::default(),
            locks: LockMap::default(),
            loads_done: AtomicU64::new(0),
            resources: Mutex::new(HashMap::new()),
            global: Counters::default(),
            cx,
            set_up: Mutex::new(HashSet::new()),
        }
    }

    /// The state of `resource` (created on first use).
    pub(crate) fn state(&self, resource: &str) -> Arc<ResourceState> {
        let mut resources = lock(&self.resources);
        if let Some(state) = resources.get(resource) {
            return Arc::clone(state);
        }
        let state = Arc::new(ResourceState {
            name: resource.to_owned(),
            counters: Counters::default(),
            index: Mutex::new(ResourceIndex::new(self.retention)),
        });
        resources.insert(resource.to_owned(), Arc::clone(&state));
        state
    }

    pub(crate) fn caches(&self, resource: &str) -> bool {
        self.selection.selects(resource)
    }

    pub(crate) fn is_set_up(&self, resource: &str) -> bool {
        lock(&self.set_up).contains(resource)
    }

    /// Marks a resource as set up; `false` if it already was.
    pub(crate) fn mark_set_up(&self, resource: &str) -> bool {
        lock(&self.set_up).insert(resource.to_owned())
    }

    fn tier_failed(&self, tier: &Tier, operation: &str, counters: Option<&Counters>, e: &Error) {
        tier.errors.fetch_add(1, Ordering::Relaxed);
        bump(&counters.unwrap_or(&self.global).errors);
        tracing::warn!(plugin = %self.name, tier = %tier.driver.describe(), operation, error = %e, "cache tier failed");
        let event = CacheEvent::TierFailed {
            tier: tier.driver.describe(),
            operation: operation.to_owned(),
            error: e.to_string(),
        };
        self.cx.emit_event(&event);
    }

    /// Whether an entry of `state`'s resource may be served: loaded after every invalidation of
    /// this process that affects it (with the clock-skew margin for entries of other
    /// processes).
    fn fresh(&self, state: &ResourceState, key: &CacheKey, entry: &CacheEntry) -> bool {
        let margin = if entry.writer == self.incarnation {
            0
        } else {
            self.skew_us
        };
        entry.loaded_at > self.floor.load(Ordering::SeqCst).saturating_add(margin)
            && lock(&state.index).valid(key, entry.loaded_at, margin)
    }

    /// The answer in the first tier that has a fresh one.
    async fn lookup(
        &self,
        state: &ResourceState,
        key: &CacheKey,
        kinds: &[ValueKind],
    ) -> Option<Result<Outcome>> {
        let counters = &state.counters;
        for (i, tier) in self.tiers.iter().enumerate() {
            if !tier.accepts_any(kinds) {
                continue;
            }
            let entry = match tier.driver.get(key).await {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(e) => {
                    self.tier_failed(tier, "get", Some(counters), &e);
                    continue;
                }
            };
            if !self.fresh(state, key, &entry) {
                bump(&counters.stale);
                continue;
            }
            if !entry.value.answers(key.operation()) {
                continue;
            }
            tier.hits.fetch_add(1, Ordering::Relaxed);
            if self.strategy == Strategy::PromoteOnHit && i > 0 {
                for upper in &self.tiers[..i] {
                    if upper.driver.accepts(entry.value.kind())
                        && let Err(e) = upper.driver.put(key, &entry).await
                    {
                        self.tier_failed(upper, "promote", Some(counters), &e);
                    }
                }
            }
            return Some(entry.value.into_answer());
        }
        None
    }

    /// Stores a loaded entry: in every tier that can hold it (write-through), or in the lowest
    /// one (promote-on-hit).
    async fn store(&self, key: &CacheKey, entry: &CacheEntry, counters: &Counters) {
        let kind = entry.value.kind();
        let targets: Vec<&Tier> = match self.strategy {
            Strategy::WriteThrough => self
                .tiers
                .iter()
                .filter(|t| t.driver.accepts(kind))
                .collect(),
            Strategy::PromoteOnHit => self
                .tiers
                .iter()
                .rev()
                .find(|t| t.driver.accepts(kind))
                .into_iter()
                .collect(),
        };
        for tier in targets {
            if let Err(e) = tier.driver.put(key, entry).await {
                self.tier_failed(tier, "put", Some(counters), &e);
            }
        }
    }

    async fn remove_everywhere(&self, key: &CacheKey, counters: &Counters) {
        for tier in &self.tiers {
            if let Err(e) = tier.driver.remove(key).await {
                self.tier_failed(tier, "remove", Some(counters), &e);
            }
        }
    }

    /// A cacheable read: from the cache, or loaded once (concurrent misses of one key wait for
    /// the first load) and stored.
    pub(crate) async fn read(
        &self,
        state: &ResourceState,
        key: CacheKey,
        op: Operation,
        next: Next<'_>,
    ) -> Result<Outcome> {
        let counters = &state.counters;
        let kinds = CachedValue::kinds_of(key.operation());
        if !self.tiers.iter().any(|t| t.accepts_any(kinds)) {
            bump(&counters.uncached);
            return next.run(op).await;
        }
        let loads_seen = self.loads_done.load(Ordering::SeqCst);
        if let Some(answer) = self.lookup(state, &key, kinds).await {
            bump(&counters.hits);
            return answer;
        }
        let loading = self.locks.lock(key.path()).await;
        // A load of this key ran meanwhile (we waited for it, or one finished since we looked):
        // its answer is in the cache, if it could be stored and is still fresh.
        if (loading.waited || self.loads_done.load(Ordering::SeqCst) != loads_seen)
            && let Some(answer) = self.lookup(state, &key, kinds).await
        {
            bump(&counters.hits);
            return answer;
        }
        // Taken before the store is read: an entry is never newer than its stamp.
        let loaded_at = self.clock.now();
        let result = next.run(op).await;
        match CachedValue::from_result(key.operation(), &result) {
            Some(value) if self.tiers.iter().any(|t| t.driver.accepts(value.kind())) => {
                bump(&counters.misses);
                let entry = CacheEntry {
                    value,
                    loaded_at,
                    writer: self.incarnation.clone(),
                };
                // A write that completed during the load makes it stale: do not store it. A
                // write that completes while it is being stored is caught by the second check
                // (and by every reader's check meanwhile).
                if self.fresh(state, &key, &entry) {
                    self.store(&key, &entry, counters).await;
                    if !self.fresh(state, &key, &entry) {
                        self.remove_everywhere(&key, counters).await;
                    }
                }
            }
            Some(_) => bump(&counters.uncached),
            None => bump(&counters.misses),
        }
        self.loads_done.fetch_add(1, Ordering::SeqCst);
        drop(loading);
        result
    }

    /// Makes stale what `invalidation` affects, here (at once) and in every tier that may hold
    /// something of its resource.
    pub(crate) async fn invalidate(&self, invalidation: &Invalidation) {
        let state = self.state(invalidation.resource_name());
        let at = self.clock.now();
        match invalidation.scope() {
            Scope::Everything => lock(&state.index).everything(at),
            Scope::Record { id, data } => {
                let docs: Option<Vec<&Document>> = data.as_ref().map(|d| d.iter().collect());
                lock(&state.index).write(
                    at,
                    Write {
                        id: id.as_deref(),
                        data: docs.as_deref(),
                    },
                );
            }
        }
        bump(&state.counters.invalidations);
        for tier in &self.tiers {
            if !tier.driver.may_hold(&state.name) {
                continue;
            }
            if let Err(e) = tier.driver.invalidate(invalidation).await {
                self.tier_failed(tier, "invalidate", Some(&state.counters), &e);
            }
        }
    }

    /// A completed write of record `id` of `state`'s resource, whose data was or is each of
    /// `data` (`None`: unknown, every partition counts as touched): its stamps first (O(1),
    /// nothing allocated), then the tiers that may hold something of the resource (the
    /// [`Invalidation`] they get is built only for them).
    pub(crate) async fn record_written(
        &self,
        state: &ResourceState,
        id: &str,
        data: Option<&[&Document]>,
    ) {
        let at = self.clock.now();
        lock(&state.index).write(at, Write { id: Some(id), data });
        bump(&state.counters.invalidations);
        let mut invalidation = None;
        for tier in &self.tiers {
            if !tier.driver.may_hold(&state.name) {
                continue;
            }
            let invalidation = invalidation.get_or_insert_with(|| {
                Invalidation::record(
                    &state.name,
                    Some(id),
                    data.map(|docs| docs.iter().map(|d| (*d).clone()).collect()),
                )
            });
            if let Err(e) = tier.driver.invalidate(invalidation).await {
                self.tier_failed(tier, "invalidate", Some(&state.counters), &e);
            }
        }
    }

    /// Drops everything of `resource`, or everything.
    ///
    /// # Errors
    /// The first tier's failure (every tier is tried; entries left behind are stale anyway).
    pub(crate) async fn clear(&self, resource: Option<&str>) -> Result<()> {
        let at = self.clock.now();
        let state = resource.map(|r| self.state(r));
        match &state {
            Some(state) => {
                lock(&state.index).everything(at);
                bump(&state.counters.invalidations);
            }
            None => {
                self.floor.fetch_max(at, Ordering::SeqCst);
            }
        }
        let mut first_error = None;
        for tier in &self.tiers {
            if let Err(e) = tier.driver.clear(resource).await {
                self.tier_failed(tier, "clear", state.as_ref().map(|s| &s.counters), &e);
                first_error.get_or_insert(e);
            }
        }
        let event = CacheEvent::Cleared {
            resource: resource.map(str::to_owned),
        };
        self.cx.emit_event(&event);
        first_error.map_or(Ok(()), Err)
    }

    /// Drops what is cached about a record (its own answers and every listing of its
    /// resource), or everything of the resource.
    pub(crate) async fn invalidate_on_request(
        &self,
        resource: &str,
        id: Option<&str>,
    ) -> Result<()> {
        match id {
            Some(id) => {
                self.invalidate(&Invalidation::record(resource, Some(id), None))
                    .await;
            }
            None => self.clear(Some(resource)).await?,
        }
        let event = CacheEvent::Invalidated {
            resource: resource.to_owned(),
            id: id.map(str::to_owned),
        };
        self.cx.emit_event(&event);
        Ok(())
    }

    /// Loads every record of a resource into the cache: its listing, then each record.
    pub(crate) async fn warm(&self, resource: &str) -> Result<usize> {
        if !self.is_set_up(resource) {
            return Err(Error::Refused {
                operation: "cache warm",
                reason: format!("resource {resource} is not cached by plugin {}", self.name),
            });
        }
        let db = self.cx.database()?;
        let handle: Resource = db.resource(resource).ok_or_else(|| Error::NotFound {
            key: format!("resource {resource}"),
        })?;
        let ids: Vec<String> = handle
            .list()
            .await?
            .iter()
            .map(|r| r.id().to_owned())
            .collect();
        for result in handle.get_many(&ids).await {
            match result {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let event = CacheEvent::Warmed {
            resource: resource.to_owned(),
            records: ids.len(),
        };
        self.cx.emit_event(&event);
        Ok(ids.len())
    }

    pub(crate) fn stats(&self, resource: Option<&str>) -> CacheStats {
        let mut stats = CacheStats::default();
        match resource {
            Some(r) => {
                if let Some(state) = lock(&self.resources).get(r) {
                    state.counters.add_to(&mut stats);
                }
            }
            None => {
                for state in lock(&self.resources).values() {
                    state.counters.add_to(&mut stats);
                }
                self.global.add_to(&mut stats);
                stats.tiers = self
                    .tiers
                    .iter()
                    .map(|t| TierStats {
                        driver: t.driver.describe(),
                        hits: t.hits.load(Ordering::Relaxed),
                        errors: t.errors.load(Ordering::Relaxed),
                        evictions: t.driver.evictions(None),
                    })
                    .collect();
            }
        }
        stats.evictions = self
            .tiers
            .iter()
            .map(|t| t.driver.evictions(resource))
            .sum();
        stats
    }

    pub(crate) async fn run_pending_tasks(&self) {
        for tier in &self.tiers {
            tier.driver.run_pending_tasks().await;
        }
    }
}
