//! Where cached answers live. The plugin keeps the validity rules (stamps, invalidation,
//! single loads, tiers); a driver only stores, finds and drops entries.

mod book;
mod filesystem;
mod memory;
mod s3;

use std::time::Duration;

pub use self::filesystem::FilesystemDriver;
pub use self::memory::MemoryDriver;
pub use self::s3::S3Driver;

use s3db_core::plugin::{PluginContext, Result, async_trait};

use crate::entry::{CacheEntry, ValueKind};
use crate::key::{CacheKey, Invalidation};

/// A cache store. Implement it for a store of your own and pass it to
/// [`crate::CachePlugin::custom`] or as a [`crate::DriverConfig::Custom`] tier.
///
/// A driver never decides whether an entry is fresh: the plugin checks every entry it gets
/// back against the writes it has seen. A driver's errors never fail a user's read: the plugin
/// counts them and falls through to the next tier, or to the store.
#[async_trait]
pub trait CacheDriver: Send + Sync + 'static {
    /// A short description (`memory`, `filesystem:/var/cache/app`, …), for stats and events.
    fn describe(&self) -> String;

    /// Whether it can hold values of this kind. A driver that stores bytes can hold
    /// [`ValueKind::Live`] values (records, lists of records, pages) through
    /// [`CacheEntry::to_json`].
    fn accepts(&self, kind: ValueKind) -> bool;

    /// How long it keeps an entry after its load started; `None` for ever. The plugin uses it
    /// to know how long invalidations must be remembered.
    fn ttl(&self) -> Option<Duration>;

    /// Called when the plugin is installed, before any other call.
    ///
    /// # Errors
    /// If the driver cannot work (a folder that cannot be created, …): the install fails.
    async fn attach(&self, _cx: &PluginContext) -> Result<()> {
        Ok(())
    }

    /// The entry of `key`, if it holds one that has not expired.
    ///
    /// # Errors
    /// Whatever the driver's storage fails with.
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>>;

    /// Stores the entry of `key`, replacing any. Only called with values it
    /// [`CacheDriver::accepts`].
    ///
    /// # Errors
    /// Whatever the driver's storage fails with.
    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<()>;

    /// Drops the entry of `key`, if any.
    ///
    /// # Errors
    /// Whatever the driver's storage fails with.
    async fn remove(&self, key: &CacheKey) -> Result<()>;

    /// Whether it may hold an entry of `resource` that a write must drop. When it answers
    /// `false`, a write skips [`CacheDriver::invalidate`] for it (and does not build its
    /// argument): the plugin's own stamps already make everything loaded before the write stale
    /// in this process. The default, `true`, always asks; a driver shared between processes
    /// must answer `true` unless it knows it holds nothing of the resource anywhere.
    fn may_hold(&self, _resource: &str) -> bool {
        true
    }

    /// Drops every entry `invalidation` [affects](Invalidation::affects) (a driver may drop
    /// more).
    ///
    /// # Errors
    /// Whatever the driver's storage fails with.
    async fn invalidate(&self, invalidation: &Invalidation) -> Result<()>;

    /// Drops every entry of `resource`, or every entry when `None`.
    ///
    /// # Errors
    /// Whatever the driver's storage fails with.
    async fn clear(&self, resource: Option<&str>) -> Result<()>;

    /// Called when the plugin is uninstalled; with `purge`, delete everything stored outside
    /// the plugin's `PluginStorage` (which the framework purges itself).
    ///
    /// # Errors
    /// Whatever the driver's storage fails with.
    async fn detach(&self, _cx: &PluginContext, _purge: bool) -> Result<()> {
        Ok(())
    }

    /// How many entries it evicted to stay within its capacity (of `resource`, or in all).
    fn evictions(&self, _resource: Option<&str>) -> u64 {
        0
    }

    /// Runs pending housekeeping (eviction, expiry) now.
    async fn run_pending_tasks(&self) {}
}

/// An I/O error of a driver as a storage error.
pub(crate) fn io_error(
    operation: &'static str,
    key: String,
    e: std::io::Error,
) -> s3db_core::Error {
    s3db_core::Error::Storage {
        operation,
        key,
        transient: false,
        source: Box::new(e),
    }
}
