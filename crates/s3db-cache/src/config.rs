//! Typed configuration of the plugin and its drivers, validated when the plugin is built.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use s3db_core::plugin::{ResourceSelection, is_internal_resource, slugify};

use crate::driver::CacheDriver;

/// Default time to live of every driver: 5 minutes after the load started.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Default capacity of the memory driver.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// Default capacity of the filesystem driver: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default clock skew tolerated between processes sharing a driver.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(2);
/// Default plugin name.
pub const DEFAULT_NAME: &str = "cache";

/// A configuration the plugin refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheConfigError {
    /// A capacity of zero.
    #[error("{driver} driver: {what} must be above zero")]
    ZeroCapacity {
        /// The driver.
        driver: &'static str,
        /// The setting.
        what: &'static str,
    },
    /// Both a maximum number of entries and a maximum weight for the memory driver.
    #[error("memory driver: give max_entries or max_weight, not both")]
    ConflictingLimits,
    /// A time to live of zero (use `no_ttl()` to keep entries until evicted or invalidated).
    #[error("{driver} driver: a ttl of zero caches nothing; remove the ttl with no_ttl() instead")]
    ZeroTtl {
        /// The driver.
        driver: &'static str,
    },
    /// A filesystem driver without a folder.
    #[error("filesystem driver: the folder path is empty")]
    EmptyPath,
    /// A multi driver without tiers.
    #[error("multi driver: give at least one tier")]
    EmptyMulti,
    /// A multi driver inside a multi driver.
    #[error("multi driver: a tier cannot itself be a multi driver")]
    NestedMulti,
    /// Two filesystem tiers on one folder.
    #[error("multi driver: two filesystem tiers share the folder {path}")]
    SharedFolder {
        /// The folder.
        path: PathBuf,
    },
    /// A plugin name with no letter or digit.
    #[error("plugin name {name:?} needs at least one ASCII letter or digit")]
    BadName {
        /// The name.
        name: String,
    },
    /// An empty resource name in `include` or `exclude`.
    #[error("include/exclude: empty resource name")]
    EmptyResource,
    /// An internal resource (`plg_…`) in `include`: they are never cached.
    #[error("include: {resource} is a plugin's internal resource; those are never cached")]
    InternalResource {
        /// The resource.
        resource: String,
    },
    /// A resource both included and excluded.
    #[error("resource {resource} is both included and excluded")]
    IncludedAndExcluded {
        /// The resource.
        resource: String,
    },
}

impl From<CacheConfigError> for s3db_core::Error {
    fn from(e: CacheConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "cache configuration",
            reason: e.to_string(),
        }
    }
}

/// Configuration of the memory driver (moka): a maximum number of entries (default
/// [`DEFAULT_MAX_ENTRIES`]) or a maximum weight in bytes, and a time to live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    pub(crate) max_entries: Option<u64>,
    pub(crate) max_weight: Option<u64>,
    pub(crate) ttl: Option<Duration>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryConfig {
    /// The defaults: [`DEFAULT_MAX_ENTRIES`] entries, [`DEFAULT_TTL`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            max_entries: None,
            max_weight: None,
            ttl: Some(DEFAULT_TTL),
        }
    }

    /// At most this many entries.
    #[must_use]
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// At most about this many bytes (the weight of an entry is an estimate of its size).
    #[must_use]
    pub fn max_weight(mut self, bytes: u64) -> Self {
        self.max_weight = Some(bytes);
        self
    }

    /// Entries expire this long after their load started.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries never expire (they still go on writes, eviction and `clear`).
    #[must_use]
    pub fn no_ttl(mut self) -> Self {
        self.ttl = None;
        self
    }

    fn validate(&self) -> Result<(), CacheConfigError> {
        const DRIVER: &str = "memory";
        if self.max_entries.is_some() && self.max_weight.is_some() {
            return Err(CacheConfigError::ConflictingLimits);
        }
        if self.max_entries == Some(0) {
            return Err(CacheConfigError::ZeroCapacity {
                driver: DRIVER,
                what: "max_entries",
            });
        }
        if self.max_weight == Some(0) {
            return Err(CacheConfigError::ZeroCapacity {
                driver: DRIVER,
                what: "max_weight",
            });
        }
        check_ttl(DRIVER, self.ttl)
    }
}

/// Configuration of the filesystem driver: a folder, a maximum size in bytes (default
/// [`DEFAULT_MAX_BYTES`], least recently used entries go first), and a time to live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemConfig {
    pub(crate) path: PathBuf,
    pub(crate) max_bytes: u64,
    pub(crate) ttl: Option<Duration>,
}

impl FilesystemConfig {
    /// Entries in `path` (created at install if missing).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            ttl: Some(DEFAULT_TTL),
        }
    }

    /// At most this many bytes of entry files.
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Entries expire this long after their load started.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries never expire.
    #[must_use]
    pub fn no_ttl(mut self) -> Self {
        self.ttl = None;
        self
    }

    fn validate(&self) -> Result<(), CacheConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(CacheConfigError::EmptyPath);
        }
        if self.max_bytes == 0 {
            return Err(CacheConfigError::ZeroCapacity {
                driver: "filesystem",
                what: "max_bytes",
            });
        }
        check_ttl("filesystem", self.ttl)
    }
}

/// Configuration of the s3 driver: entries in the plugin's `PluginStorage` (in the bucket,
/// shared by every process), with a time to live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub(crate) ttl: Option<Duration>,
}

impl Default for S3Config {
    fn default() -> Self {
        Self::new()
    }
}

impl S3Config {
    /// The defaults: [`DEFAULT_TTL`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            ttl: Some(DEFAULT_TTL),
        }
    }

    /// Entries expire this long after their load started.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries never expire.
    #[must_use]
    pub fn no_ttl(mut self) -> Self {
        self.ttl = None;
        self
    }

    fn validate(&self) -> Result<(), CacheConfigError> {
        check_ttl("s3", self.ttl)
    }
}

/// How a multi driver uses its tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// A loaded answer is written to every tier that can hold it; a hit in a lower tier is
    /// served as it is.
    #[default]
    WriteThrough,
    /// A loaded answer is written to the lowest tier that can hold it; a hit in a lower tier
    /// is copied to the tiers above it, so upper tiers hold what is read again.
    PromoteOnHit,
}

/// Configuration of the multi driver: tiers, first = fastest, and a [`Strategy`].
#[derive(Clone)]
pub struct MultiConfig {
    pub(crate) tiers: Vec<DriverConfig>,
    pub(crate) strategy: Strategy,
}

impl fmt::Debug for MultiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiConfig")
            .field("tiers", &self.tiers)
            .field("strategy", &self.strategy)
            .finish()
    }
}

impl MultiConfig {
    /// Tiers in order (first = asked first), write-through.
    #[must_use]
    pub fn new(tiers: impl IntoIterator<Item = DriverConfig>) -> Self {
        Self {
            tiers: tiers.into_iter().collect(),
            strategy: Strategy::default(),
        }
    }

    /// Sets the strategy.
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
}

/// One driver's configuration.
#[derive(Clone)]
#[non_exhaustive]
pub enum DriverConfig {
    /// In memory (moka).
    Memory(MemoryConfig),
    /// In a local folder.
    Filesystem(FilesystemConfig),
    /// In the bucket, through the plugin's `PluginStorage`.
    S3(S3Config),
    /// Tiers of other drivers.
    Multi(MultiConfig),
    /// A driver of your own.
    Custom(Arc<dyn CacheDriver>),
}

impl fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverConfig::Memory(c) => c.fmt(f),
            DriverConfig::Filesystem(c) => c.fmt(f),
            DriverConfig::S3(c) => c.fmt(f),
            DriverConfig::Multi(c) => c.fmt(f),
            DriverConfig::Custom(d) => write!(f, "Custom({})", d.describe()),
        }
    }
}

impl From<MemoryConfig> for DriverConfig {
    fn from(c: MemoryConfig) -> Self {
        DriverConfig::Memory(c)
    }
}
impl From<FilesystemConfig> for DriverConfig {
    fn from(c: FilesystemConfig) -> Self {
        DriverConfig::Filesystem(c)
    }
}
impl From<S3Config> for DriverConfig {
    fn from(c: S3Config) -> Self {
        DriverConfig::S3(c)
    }
}
impl From<MultiConfig> for DriverConfig {
    fn from(c: MultiConfig) -> Self {
        DriverConfig::Multi(c)
    }
}
impl From<Arc<dyn CacheDriver>> for DriverConfig {
    fn from(d: Arc<dyn CacheDriver>) -> Self {
        DriverConfig::Custom(d)
    }
}

impl DriverConfig {
    /// Checks a top-level driver (a multi driver's tiers included).
    pub(crate) fn validate(&self) -> Result<(), CacheConfigError> {
        match self {
            DriverConfig::Multi(multi) => {
                if multi.tiers.is_empty() {
                    return Err(CacheConfigError::EmptyMulti);
                }
                let mut folders = BTreeSet::new();
                for tier in &multi.tiers {
                    if matches!(tier, DriverConfig::Multi(_)) {
                        return Err(CacheConfigError::NestedMulti);
                    }
                    tier.validate()?;
                    if let DriverConfig::Filesystem(fs) = tier
                        && !folders.insert(fs.path.clone())
                    {
                        return Err(CacheConfigError::SharedFolder {
                            path: fs.path.clone(),
                        });
                    }
                }
                Ok(())
            }
            DriverConfig::Memory(c) => c.validate(),
            DriverConfig::Filesystem(c) => c.validate(),
            DriverConfig::S3(c) => c.validate(),
            DriverConfig::Custom(_) => Ok(()),
        }
    }
}

fn check_ttl(driver: &'static str, ttl: Option<Duration>) -> Result<(), CacheConfigError> {
    if ttl.is_some_and(|t| t.is_zero()) {
        return Err(CacheConfigError::ZeroTtl { driver });
    }
    Ok(())
}

/// Checks which resources are cached (`ResourceSelection::selects`: all user resources by
/// default, or only `include`d ones, never `exclude`d ones, never internal ones). Unlike
/// `ResourceSelection::check`, excluding an internal resource (`plg_…`) is accepted — it is never
/// cached anyway — and only including one is refused.
pub(crate) fn validate_selection(selection: &ResourceSelection) -> Result<(), CacheConfigError> {
    if selection
        .included()
        .chain(selection.excluded())
        .any(str::is_empty)
    {
        return Err(CacheConfigError::EmptyResource);
    }
    if let Some(internal) = selection.included().find(|n| is_internal_resource(n)) {
        return Err(CacheConfigError::InternalResource {
            resource: internal.to_owned(),
        });
    }
    let excluded: BTreeSet<&str> = selection.excluded().collect();
    if let Some(both) = selection.included().find(|n| excluded.contains(n)) {
        return Err(CacheConfigError::IncludedAndExcluded {
            resource: both.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn validate_name(name: &str) -> Result<(), CacheConfigError> {
    if slugify(name).is_empty() {
        return Err(CacheConfigError::BadName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_driver_settings_are_refused() {
        assert_eq!(
            DriverConfig::from(MemoryConfig::new().max_entries(0)).validate(),
            Err(CacheConfigError::ZeroCapacity {
                driver: "memory",
                what: "max_entries"
            })
        );
        assert_eq!(
            DriverConfig::from(MemoryConfig::new().max_entries(1).max_weight(1)).validate(),
            Err(CacheConfigError::ConflictingLimits)
        );
        assert_eq!(
            DriverConfig::from(S3Config::new().ttl(Duration::ZERO)).validate(),
            Err(CacheConfigError::ZeroTtl { driver: "s3" })
        );
        assert_eq!(
            DriverConfig::from(FilesystemConfig::new("")).validate(),
            Err(CacheConfigError::EmptyPath)
        );
        assert_eq!(
            DriverConfig::from(MultiConfig::new([])).validate(),
            Err(CacheConfigError::EmptyMulti)
        );
        assert_eq!(
            DriverConfig::from(MultiConfig::new([MultiConfig::new([
                MemoryConfig::new().into()
            ])
            .into()]))
            .validate(),
            Err(CacheConfigError::NestedMulti)
        );
        assert!(
            DriverConfig::from(MultiConfig::new([
                MemoryConfig::new().into(),
                FilesystemConfig::new("/tmp/x").into()
            ]))
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn selection() {
        let s = ResourceSelection::new().include(["users"]);
        assert!(s.selects("users"));
        assert!(!s.selects("orders"));
        let s = ResourceSelection::default();
        assert!(s.selects("orders"));
        assert!(!s.selects("plg_audits"));
        let both = ResourceSelection::new().include(["a"]).exclude(["a"]);
        assert!(matches!(
            validate_selection(&both),
            Err(CacheConfigError::IncludedAndExcluded { .. })
        ));
        assert_eq!(
            validate_selection(&ResourceSelection::new().include(["plg_a"]).exclude([""])),
            Err(CacheConfigError::EmptyResource)
        );
        // Excluding an internal resource is harmless: it is accepted.
        let s = ResourceSelection::new().exclude(["plg_audits", "sessions"]);
        assert_eq!(validate_selection(&s), Ok(()));
        assert!(!s.selects("plg_audits") && !s.selects("sessions") && s.selects("users"));
    }
}
