//! The memory driver: a moka cache of entries, by number or by estimated weight, with a TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;
use s3db_core::plugin::{Result, async_trait};

use super::CacheDriver;
use super::book::ResourceBook;
use crate::config::{DEFAULT_MAX_ENTRIES, MemoryConfig};
use crate::entry::{CacheEntry, ValueKind};
use crate::index::wall_us;
use crate::key::{CacheKey, Invalidation};

#[derive(Debug)]
struct Stored {
    key: CacheKey,
    entry: CacheEntry,
}

/// Keys per resource, by family (to find what a write invalidates without scanning the cache),
/// and evictions per resource.
#[derive(Debug, Default)]
struct Book {
    keys: HashMap<String, ResourceBook>,
    evictions: HashMap<String, u64>,
}

/// Runs `change` on the book of `resource` (created if missing) and keeps `held` (the number
/// of keys of every resource) up to date.
fn change_book<T>(
    book: &mut Book,
    held: &AtomicUsize,
    resource: &str,
    change: impl FnOnce(&mut ResourceBook) -> T,
) -> T {
    let keys = match book.keys.get_mut(resource) {
        Some(keys) => keys,
        None => book.keys.entry(resource.to_owned()).or_default(),
    };
    let before = keys.len();
    let out = change(keys);
    let after = keys.len();
    if after >= before {
        held.fetch_add(after - before, Ordering::Relaxed);
    } else {
        held.fetch_sub(before - after, Ordering::Relaxed);
    }
    out
}

/// In-process entries in a moka cache. Holds every kind of value, records included.
pub struct MemoryDriver {
    cache: Cache<String, Arc<Stored>>,
    ttl: Option<Duration>,
    book: Arc<Mutex<Book>>,
    /// How many keys the book holds, all resources together: a write asks for nothing when
    /// the cache is empty, without taking the lock.
    held: Arc<AtomicUsize>,
    evictions: Arc<AtomicU64>,
    limit: String,
}

impl std::fmt::Debug for MemoryDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDriver")
            .field("limit", &self.limit)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn lock(book: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryDriver {
    /// A memory driver (the configuration is assumed valid).
    #[must_use]
    pub fn new(config: &MemoryConfig) -> Self {
        let book = Arc::new(Mutex::new(Book::default()));
        let evictions = Arc::new(AtomicU64::new(0));
        let mut builder = Cache::builder();
        let limit = match (config.max_weight, config.max_entries) {
            (Some(weight), _) => {
                builder = builder.max_capacity(weight).weigher(|_k, v: &Arc<Stored>| {
                    let size = v.entry.value.estimated_size() + v.key.path().len() * 2;
                    u32::try_from(size).unwrap_or(u32::MAX)
                });
                format!("{weight} bytes")
            }
            (None, entries) => {
                let entries = entries.unwrap_or(DEFAULT_MAX_ENTRIES);
                builder = builder.max_capacity(entries);
                format!("{entries} entries")
            }
        };
        if let Some(ttl) = config.ttl {
            builder = builder.time_to_live(ttl);
        }
        let held = Arc::new(AtomicUsize::new(0));
        let listener_held = Arc::clone(&held);
        let listener_book = Arc::clone(&book);
        let listener_evictions = Arc::clone(&evictions);
        let cache = builder
            .eviction_listener(move |_path: Arc<String>, stored: Arc<Stored>, cause| {
                if cause == RemovalCause::Replaced {
                    return;
                }
                let mut book = lock(&listener_book);
                let resource = stored.key.resource();
                if book.keys.contains_key(resource) {
                    change_book(&mut book, &listener_held, resource, |keys| {
                        keys.remove(&stored.key)
                    });
                }
                if cause == RemovalCause::Size {
                    listener_evictions.fetch_add(1, Ordering::Relaxed);
                    *book.evictions.entry(resource.to_owned()).or_default() += 1;
                }
            })
            .build();
        Self {
            cache,
            ttl: config.ttl,
            book,
            held,
            evictions,
            limit,
        }
    }

    /// How many entries it holds now (after pending housekeeping).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Drops these entries. Moka's future is large: it is boxed, so that a call with nothing to
    /// drop (most writes) stays small.
    async fn drop_paths(&self, paths: Vec<String>) {
        if paths.is_empty() {
            return;
        }
        Box::pin(async move {
            for path in paths {
                self.cache.invalidate(&path).await;
            }
        })
        .await;
    }
}

#[async_trait]
impl CacheDriver for MemoryDriver {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn accepts(&self, _kind: ValueKind) -> bool {
        true
    }

    fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>> {
        let Some(stored) = self.cache.get(key.path()).await else {
            return Ok(None);
        };
        if stored.key != *key || stored.entry.expired(self.ttl, wall_us()) {
            return Ok(None);
        }
        Ok(Some(stored.entry.clone()))
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<()> {
        change_book(&mut lock(&self.book), &self.held, key.resource(), |keys| {
            keys.add(key);
        });
        self.cache
            .insert(
                key.path().to_owned(),
                Arc::new(Stored {
                    key: key.clone(),
                    entry: entry.clone(),
                }),
            )
            .await;
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<()> {
        self.cache.invalidate(key.path()).await;
        Ok(())
    }

    fn may_hold(&self, resource: &str) -> bool {
        self.held.load(Ordering::Relaxed) > 0
            && lock(&self.book)
                .keys
                .get(resource)
                .is_some_and(|keys| !keys.is_empty())
    }

    async fn invalidate(&self, invalidation: &Invalidation) -> Result<()> {
        let mut paths = Vec::new();
        {
            let mut book = lock(&self.book);
            let resource = invalidation.resource_name();
            if book.keys.contains_key(resource) {
                change_book(&mut book, &self.held, resource, |keys| {
                    keys.take_affected(invalidation, &mut paths);
                });
            }
        }
        self.drop_paths(paths).await;
        Ok(())
    }

    async fn clear(&self, resource: Option<&str>) -> Result<()> {
        match resource {
            Some(r) => {
                let mut paths = Vec::new();
                {
                    let mut book = lock(&self.book);
                    if book.keys.contains_key(r) {
                        change_book(&mut book, &self.held, r, |keys| keys.take_all(&mut paths));
                    }
                }
                self.drop_paths(paths).await;
            }
            None => {
                self.cache.invalidate_all();
                let mut book = lock(&self.book);
                book.keys.clear();
                self.held.store(0, Ordering::Relaxed);
            }
        }
        self.cache.run_pending_tasks().await;
        Ok(())
    }

    async fn detach(&self, _cx: &s3db_core::plugin::PluginContext, _purge: bool) -> Result<()> {
        self.clear(None).await
    }

    fn evictions(&self, resource: Option<&str>) -> u64 {
        match resource {
            None => self.evictions.load(Ordering::Relaxed),
            Some(r) => lock(&self.book).evictions.get(r).copied().unwrap_or(0),
        }
    }

    async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}
