#![doc = include_str!("../README.md")]

mod config;
mod driver;
mod entry;
mod events;
mod index;
mod intercept;
mod key;
mod runtime;
mod stats;

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use s3db_core::plugin::{
    Error, Plugin, PluginContext, Resource, ResourceSelection, Result, async_trait,
};

pub use crate::config::{
    CacheConfigError, DEFAULT_CLOCK_SKEW, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_NAME,
    DEFAULT_TTL, DriverConfig, FilesystemConfig, MemoryConfig, MultiConfig, S3Config, Strategy,
};
pub use crate::driver::{CacheDriver, FilesystemDriver, MemoryDriver, S3Driver};
pub use crate::entry::{CacheEntry, CachedValue, ValueKind};
pub use crate::events::CacheEvent;
pub use crate::intercept::{ResourceCache, bypass, is_bypassed};
pub use crate::key::{CacheKey, Family, Invalidation};
pub use crate::stats::{CacheStats, TierStats};

use crate::intercept::SetUpNew;
use crate::runtime::Runtime;

/// The cache plugin. Build it with [`CachePlugin::memory`], [`CachePlugin::filesystem`],
/// [`CachePlugin::s3`], [`CachePlugin::multi`] or [`CachePlugin::custom`], then
/// [`CacheBuilder::build`]; install it with `Database::use_plugin` or the database builder; find
/// it again with `db.plugin::<CachePlugin>()`.
pub struct CachePlugin {
    name: String,
    tiers: Vec<Arc<dyn CacheDriver>>,
    strategy: Strategy,
    selection: ResourceSelection,
    skew: Duration,
    runtime: RwLock<Option<Arc<Runtime>>>,
}

impl std::fmt::Debug for CachePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachePlugin")
            .field("name", &self.name)
            .field(
                "tiers",
                &self.tiers.iter().map(|t| t.describe()).collect::<Vec<_>>(),
            )
            .field("strategy", &self.strategy)
            .field("selection", &self.selection)
            .finish_non_exhaustive()
    }
}

/// Builds a [`CachePlugin`]; the driver-specific settings are methods of
/// `CacheBuilder<MemoryConfig>`, `CacheBuilder<FilesystemConfig>`, … Nothing is checked before
/// [`CacheBuilder::build`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheBuilder<D> {
    driver: D,
    name: String,
    selection: ResourceSelection,
    skew: Duration,
}

impl CachePlugin {
    fn builder<D>(driver: D) -> CacheBuilder<D> {
        CacheBuilder {
            driver,
            name: DEFAULT_NAME.to_owned(),
            selection: ResourceSelection::new(),
            skew: DEFAULT_CLOCK_SKEW,
        }
    }

    /// An in-memory cache (moka): [`DEFAULT_MAX_ENTRIES`] entries, [`DEFAULT_TTL`].
    pub fn memory() -> CacheBuilder<MemoryConfig> {
        Self::builder(MemoryConfig::new())
    }

    /// A cache in a local folder that survives restarts: [`DEFAULT_MAX_BYTES`],
    /// [`DEFAULT_TTL`]. It holds every kind of answer, records, lists of records and pages
    /// serialized as JSON.
    pub fn filesystem(path: impl Into<PathBuf>) -> CacheBuilder<FilesystemConfig> {
        Self::builder(FilesystemConfig::new(path))
    }

    /// A cache in the bucket, in the plugin's `PluginStorage`, shared by every process:
    /// [`DEFAULT_TTL`]. It holds counts and id lists (what saves a listing).
    pub fn s3() -> CacheBuilder<S3Config> {
        Self::builder(S3Config::new())
    }

    /// Tiers of drivers, first = asked first; [`Strategy::WriteThrough`] unless set.
    pub fn multi(tiers: impl IntoIterator<Item = DriverConfig>) -> CacheBuilder<MultiConfig> {
        Self::builder(MultiConfig::new(tiers))
    }

    /// A driver of your own.
    pub fn custom(driver: Arc<dyn CacheDriver>) -> CacheBuilder<DriverConfig> {
        Self::builder(DriverConfig::Custom(driver))
    }

    /// Builds the plugin from a driver configuration.
    ///
    /// # Errors
    /// A [`CacheConfigError`] for a configuration that cannot work.
    pub fn new(driver: impl Into<DriverConfig>) -> std::result::Result<Self, CacheConfigError> {
        Self::builder(driver.into()).build()
    }

    fn runtime(&self) -> Result<Arc<Runtime>> {
        self.runtime
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Error::Refused {
                operation: "cache",
                reason: format!("plugin {} is not installed", self.name),
            })
    }

    /// The drivers, in tier order.
    #[must_use]
    pub fn tiers(&self) -> &[Arc<dyn CacheDriver>] {
        &self.tiers
    }

    /// Hits, misses, evictions, … of every resource, and per tier (all zero when not
    /// installed).
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.runtime().map(|rt| rt.stats(None)).unwrap_or_default()
    }

    /// The stats of one resource.
    #[must_use]
    pub fn stats_for(&self, resource: &str) -> CacheStats {
        self.runtime()
            .map(|rt| rt.stats(Some(resource)))
            .unwrap_or_default()
    }

    /// Whether reads of `resource` go through this cache.
    #[must_use]
    pub fn is_cached(&self, resource: &str) -> bool {
        self.runtime().is_ok_and(|rt| rt.is_set_up(resource))
    }

    /// Drops everything cached, in every tier.
    ///
    /// # Errors
    /// If the plugin is not installed; the first driver failure (entries left behind are
    /// never served).
    pub async fn clear(&self) -> Result<()> {
        self.runtime()?.clear(None).await
    }

    /// Drops what is cached about record `id` of `resource` (its own answers and every listing
    /// of the resource), or everything of the resource when `id` is `None`.
    ///
    /// # Errors
    /// If the plugin is not installed; with `None`, the first driver failure.
    pub async fn invalidate(&self, resource: &str, id: Option<&str>) -> Result<()> {
        self.runtime()?.invalidate_on_request(resource, id).await
    }

    /// Loads `resource` into the cache (its listing, then every record); returns how many
    /// records.
    ///
    /// # Errors
    /// If the plugin is not installed or does not cache the resource; storage errors.
    pub async fn warm(&self, resource: &str) -> Result<usize> {
        self.runtime()?.warm(resource).await
    }

    /// Runs the drivers' pending housekeeping (moka's eviction and expiry), so that
    /// [`CachePlugin::stats`] counts every eviction so far.
    pub async fn run_pending_tasks(&self) {
        if let Ok(rt) = self.runtime() {
            rt.run_pending_tasks().await;
        }
    }
}

impl<D> CacheBuilder<D>
where
    D: Into<DriverConfig>,
{
    /// The plugin's name (default [`DEFAULT_NAME`]); its storage slug derives from it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Caches only these resources (and never the excluded ones).
    pub fn include<S: Into<String>>(mut self, resources: impl IntoIterator<Item = S>) -> Self {
        self.selection = self.selection.include(resources);
        self
    }

    /// Never caches these resources.
    pub fn exclude<S: Into<String>>(mut self, resources: impl IntoIterator<Item = S>) -> Self {
        self.selection = self.selection.exclude(resources);
        self
    }

    /// The clock skew tolerated between processes sharing a driver (default
    /// [`DEFAULT_CLOCK_SKEW`]): an entry another process loaded is refused if its load started
    /// less than this after a write of this process that affects it.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Checks the configuration and builds the plugin.
    ///
    /// # Errors
    /// A [`CacheConfigError`] for a configuration that cannot work.
    pub fn build(self) -> std::result::Result<CachePlugin, CacheConfigError> {
        let driver: DriverConfig = self.driver.into();
        config::validate_name(&self.name)?;
        config::validate_selection(&self.selection)?;
        driver.validate()?;
        let (tiers, strategy) = match driver {
            DriverConfig::Multi(multi) => (
                multi.tiers.iter().filter_map(make_driver).collect(),
                multi.strategy,
            ),
            single => (
                make_driver(&single).into_iter().collect(),
                Strategy::WriteThrough,
            ),
        };
        Ok(CachePlugin {
            name: self.name,
            tiers,
            strategy,
            selection: self.selection,
            skew: self.skew,
            runtime: RwLock::new(None),
        })
    }
}

fn make_driver(config: &DriverConfig) -> Option<Arc<dyn CacheDriver>> {
    Some(match config {
        DriverConfig::Memory(c) => Arc::new(MemoryDriver::new(c)),
        DriverConfig::Filesystem(c) => Arc::new(FilesystemDriver::new(c)),
        DriverConfig::S3(c) => Arc::new(S3Driver::new(c)),
        DriverConfig::Custom(d) => Arc::clone(d),
        DriverConfig::Multi(_) => return None,
    })
}

impl CacheBuilder<MemoryConfig> {
    /// At most this many entries.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.driver = self.driver.max_entries(n);
        self
    }

    /// At most about this many bytes.
    pub fn max_weight(mut self, bytes: u64) -> Self {
        self.driver = self.driver.max_weight(bytes);
        self
    }

    /// Entries expire this long after their load started.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.driver = self.driver.ttl(ttl);
        self
    }

    /// Entries never expire.
    pub fn no_ttl(mut self) -> Self {
        self.driver = self.driver.no_ttl();
        self
    }
}

impl CacheBuilder<FilesystemConfig> {
    /// At most this many bytes of entry files.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.driver = self.driver.max_bytes(bytes);
        self
    }

    /// Entries expire this long after their load started.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.driver = self.driver.ttl(ttl);
        self
    }

    /// Entries never expire.
    pub fn no_ttl(mut self) -> Self {
        self.driver = self.driver.no_ttl();
        self
    }
}

impl CacheBuilder<S3Config> {
    /// Entries expire this long after their load started.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.driver = self.driver.ttl(ttl);
        self
    }

    /// Entries never expire.
    pub fn no_ttl(mut self) -> Self {
        self.driver = self.driver.no_ttl();
        self
    }
}

impl CacheBuilder<MultiConfig> {
    /// How the tiers are used.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.driver = self.driver.strategy(strategy);
        self
    }
}

/// Adds `resource.cache()`: the cache of the resource, when a [`CachePlugin`] caches it.
pub trait CacheExt {
    /// The resource's cache handle, if a cache plugin caches it.
    fn cache(&self) -> Option<Arc<ResourceCache>>;
}

impl CacheExt for Resource {
    fn cache(&self) -> Option<Arc<ResourceCache>> {
        self.extension::<ResourceCache>()
    }
}

#[async_trait]
impl Plugin for CachePlugin {
    fn name(&self) -> &str {
        &self.name
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        let installed = self.install_tiers(cx).await;
        if installed.is_err() {
            *self.runtime.write().unwrap_or_else(PoisonError::into_inner) = None;
        }
        installed
    }

    async fn uninstall(&self, cx: &PluginContext, purge_data: bool) -> Result<()> {
        let rt = self
            .runtime
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(rt);
        let mut first_error = None;
        for tier in &self.tiers {
            if let Err(e) = tier.detach(cx, purge_data).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl CachePlugin {
    async fn install_tiers(&self, cx: &PluginContext) -> Result<()> {
        for tier in &self.tiers {
            tier.attach(cx).await?;
        }
        let rt = Arc::new(Runtime::new(
            &self.name,
            self.tiers.clone(),
            self.strategy,
            self.selection.clone(),
            self.skew,
            cx.clone(),
        ));
        *self.runtime.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&rt));
        // Watch first, then look: a resource created in between is set up once either way.
        cx.add_database_hooks(SetUpNew {
            rt: Arc::clone(&rt),
        })?;
        let db = cx.database()?;
        for name in db.resources() {
            if let Some(resource) = db.resource(&name) {
                rt.set_up(&resource);
            }
        }
        Ok(())
    }
}
