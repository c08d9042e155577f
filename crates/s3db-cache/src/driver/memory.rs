//! The memory driver: a moka cache of entries, by number or by estimated weight, with a TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;
use s3db_core::plugin::{Result, async_trait};

use super::CacheDriver;
use crate::config::{DEFAULT_MAX_ENTRIES, MemoryConfig};
use crate::entry::{CacheEntry, ValueKind};
use crate::index::wall_us;
use crate::key::{CacheKey, Invalidation};

#[derive(Debug)]
struct Stored {
    key: CacheKey,
    entry: CacheEntry,
}

/// Keys per resource (to find what a write invalidates without scanning the cache), and
/// evictions per resource.
#[derive(Debug, Default)]
struct Book {
    keys: HashMap<String, HashMap<String, CacheKey>>,
    evictions: HashMap<String, u64>,
}

/// In-process entries in a moka cache. Holds every kind of value, records included.
pub struct MemoryDriver {
    cache: Cache<String, Arc<Stored>>,
    ttl: Option<Duration>,
    book: Arc<Mutex<Book>>,
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
        let listener_book = Arc::clone(&book);
        let listener_evictions = Arc::clone(&evictions);
        let cache = builder
            .eviction_listener(move |path: Arc<String>, stored: Arc<Stored>, cause| {
                if cause == RemovalCause::Replaced {
                    return;
                }
                let mut book = lock(&listener_book);
                let resource = stored.key.resource().to_owned();
                if let Some(keys) = book.keys.get_mut(&resource) {
                    keys.remove(path.as_str());
                }
                if cause == RemovalCause::Size {
                    listener_evictions.fetch_add(1, Ordering::Relaxed);
                    *book.evictions.entry(resource).or_default() += 1;
                }
            })
            .build();
        Self {
            cache,
            ttl: config.ttl,
            book,
            evictions,
            limit,
        }
    }

    /// How many entries it holds now (after pending housekeeping).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    async fn drop_where(&self, resource: Option<&str>, pred: impl Fn(&CacheKey) -> bool) {
        let paths: Vec<String> = {
            let book = lock(&self.book);
            book.keys
                .iter()
                .filter(|(r, _)| resource.is_none_or(|want| want == r.as_str()))
                .flat_map(|(_, keys)| keys.iter())
                .filter(|(_, key)| pred(key))
                .map(|(path, _)| path.clone())
                .collect()
        };
        for path in paths {
            self.cache.invalidate(&path).await;
        }
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
        lock(&self.book)
            .keys
            .entry(key.resource().to_owned())
            .or_default()
            .insert(key.path().to_owned(), key.clone());
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

    async fn invalidate(&self, invalidation: &Invalidation) -> Result<()> {
        self.drop_where(Some(invalidation.resource_name()), |k| {
            invalidation.affects(k)
        })
        .await;
        Ok(())
    }

    async fn clear(&self, resource: Option<&str>) -> Result<()> {
        match resource {
            Some(_) => self.drop_where(resource, |_| true).await,
            None => {
                self.cache.invalidate_all();
                lock(&self.book).keys.clear();
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
