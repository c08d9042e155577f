//! Destinations of backup archives: a local folder ([`FilesystemDriver`]), another bucket or
//! prefix ([`S3Driver`]), or several of them ([`Driver::multi`]). Write your own by implementing
//! [`BackupDriver`].

mod filesystem;
mod store;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use s3db_core::plugin::async_trait;

pub use self::filesystem::FilesystemDriver;
pub use self::store::{DEFAULT_PART_SIZE, MIN_PART_SIZE, S3Driver};
use crate::config::ConfigError;
use crate::error::BackupResult;

/// The backup an upload is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveTarget {
    /// The backup's id (names the archive at the destination).
    pub id: String,
    /// When it started, by the plugin's clock (fills `{date}` in templates).
    pub started_at: DateTime<Utc>,
    /// The archive's size in bytes.
    pub size: u64,
    /// The archive's SHA-256 (lower-case hex).
    pub checksum: String,
}

/// One destination of archives.
#[async_trait]
pub trait BackupDriver: Send + Sync + 'static {
    /// The driver's kind, for labels and logs (`filesystem`, `s3`).
    fn kind(&self) -> &'static str;

    /// Stores the archive file `archive`; returns where it is (given back to `get` and `delete`).
    /// Must not leave an archive that looks complete but is not.
    async fn put(&self, target: &ArchiveTarget, archive: &Path) -> BackupResult<String>;

    /// Copies the archive stored at `location` into the file `dest`.
    async fn get(&self, location: &str, dest: &Path) -> BackupResult<()>;

    /// Deletes the archive stored at `location` (deleting a missing one succeeds).
    async fn delete(&self, location: &str) -> BackupResult<()>;
}

/// How a multi driver decides that an upload succeeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MultiStrategy {
    /// Upload to every destination; the backup fails unless every upload succeeds (default).
    #[default]
    All,
    /// Upload to every destination; the backup succeeds if at least one upload does.
    Any,
    /// Try the destinations in order and stop at the first that succeeds.
    Priority,
}

/// Where backups go: one destination, or several with a strategy.
#[derive(Clone)]
pub enum Driver {
    /// One destination.
    Single(Arc<dyn BackupDriver>),
    /// Several destinations.
    Multi {
        /// How success is decided.
        strategy: MultiStrategy,
        /// The destinations, in priority order.
        destinations: Vec<Arc<dyn BackupDriver>>,
    },
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Driver::Single(d) => f.debug_tuple("Single").field(&d.kind()).finish(),
            Driver::Multi {
                strategy,
                destinations,
            } => f
                .debug_struct("Multi")
                .field("strategy", strategy)
                .field(
                    "destinations",
                    &destinations.iter().map(|d| d.kind()).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

impl Driver {
    /// A local folder; `path` may contain `{date}` (the backup's day, `YYYY-MM-DD`).
    ///
    /// # Errors
    /// [`ConfigError::BadPath`] for an empty path or an unknown placeholder.
    pub fn filesystem(path: impl Into<String>) -> Result<Self, ConfigError> {
        Ok(Self::Single(Arc::new(FilesystemDriver::new(path)?)))
    }

    /// Another database location (any connection string: `s3://…`, `http://…`, `file://…`,
    /// `memory://…`), archives under the `backups` prefix.
    ///
    /// # Errors
    /// [`ConfigError::BadConnection`].
    pub fn s3(connection: &str) -> Result<Self, ConfigError> {
        Ok(Self::Single(Arc::new(S3Driver::new(connection)?)))
    }

    /// Several destinations.
    #[must_use]
    pub fn multi<I, D>(strategy: MultiStrategy, destinations: I) -> Self
    where
        I: IntoIterator<Item = D>,
        D: Into<Driver>,
    {
        let mut flat = Vec::new();
        for d in destinations {
            match d.into() {
                Driver::Single(d) => flat.push(d),
                Driver::Multi { destinations, .. } => flat.extend(destinations),
            }
        }
        Driver::Multi {
            strategy,
            destinations: flat,
        }
    }

    /// The destinations with their labels.
    pub(crate) fn destinations(&self) -> Vec<(String, Arc<dyn BackupDriver>)> {
        match self {
            Driver::Single(d) => vec![(d.kind().to_owned(), Arc::clone(d))],
            Driver::Multi { destinations, .. } => destinations
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("multi[{i}]:{}", d.kind()), Arc::clone(d)))
                .collect(),
        }
    }

    pub(crate) fn strategy(&self) -> MultiStrategy {
        match self {
            Driver::Single(_) => MultiStrategy::All,
            Driver::Multi { strategy, .. } => *strategy,
        }
    }
}

impl From<FilesystemDriver> for Driver {
    fn from(d: FilesystemDriver) -> Self {
        Driver::Single(Arc::new(d))
    }
}

impl From<S3Driver> for Driver {
    fn from(d: S3Driver) -> Self {
        Driver::Single(Arc::new(d))
    }
}

impl From<Arc<dyn BackupDriver>> for Driver {
    fn from(d: Arc<dyn BackupDriver>) -> Self {
        Driver::Single(d)
    }
}

/// Checks a template: the only placeholder is `{date}`.
pub(crate) fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = rest.get(open..).unwrap_or_default();
        if !after.starts_with("{date}") {
            return Err(format!(
                "unknown placeholder at {:?}: only {{date}} is supported",
                after.chars().take(12).collect::<String>()
            ));
        }
        rest = after.get("{date}".len()..).unwrap_or_default();
    }
    if rest.contains('}') && !template.contains("{date}") {
        return Err("unbalanced '}'".to_owned());
    }
    Ok(())
}

/// Fills `{date}` with the day of `at` (`YYYY-MM-DD`, UTC).
pub(crate) fn expand(template: &str, at: DateTime<Utc>) -> String {
    template.replace("{date}", &at.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn templates() {
        assert!(check_template("./backups/{date}/").is_ok());
        assert!(check_template("/x/y").is_ok());
        assert!(check_template("./b/{day}/").is_err());
        assert!(check_template("./b/{date").is_err());
        let at = Utc
            .with_ymd_and_hms(2024, 3, 9, 10, 0, 0)
            .single()
            .unwrap_or_else(|| panic!("date"));
        assert_eq!(expand("./b/{date}/x", at), "./b/2024-03-09/x");
    }
}
