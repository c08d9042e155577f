//! The builder and its validation.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use s3db_core::connection::SecretString;
use s3db_core::plugin::{ResourceSelection, SelectionError};

use crate::BackupPlugin;
use crate::driver::Driver;
use crate::retention::Retention;
use crate::secrets::SecretsPolicy;
use s3db_core::plugin::{Clock, SystemClock};

/// Default number of records read (and written as one archive entry) at a time.
pub const DEFAULT_PAGE_SIZE: usize = 500;
/// Largest page size accepted.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// Default number of record reads in flight.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// A configuration the builder refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No destination was given.
    #[error(
        "no backup destination: call .filesystem(\"./backups/{{date}}/\"), .s3(connection) or .driver(..)"
    )]
    NoDriver,
    /// A multi driver without destinations.
    #[error("a multi driver needs at least one destination")]
    EmptyMulti,
    /// A path or prefix template is unusable.
    #[error("bad backup path {path:?}: {reason}")]
    BadPath {
        /// The template.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The connection string of an `s3` destination is unusable.
    #[error("bad connection string of the s3 backup destination: {reason}")]
    BadConnection {
        /// What is wrong.
        reason: String,
    },
    /// A part size below [`crate::MIN_PART_SIZE`].
    #[error(
        "part_size {bytes} is below the minimum of {} bytes",
        crate::MIN_PART_SIZE
    )]
    PartSize {
        /// The size given.
        bytes: usize,
    },
    /// A page size of zero or above [`MAX_PAGE_SIZE`].
    #[error("page_size must be between 1 and {MAX_PAGE_SIZE}, not {size}")]
    PageSize {
        /// The size given.
        size: usize,
    },
    /// A concurrency of zero.
    #[error("concurrency must be at least 1")]
    ZeroConcurrency,
    /// A resource name in `include`/`exclude` is empty or internal (`plg_*`, never backed up), or
    /// a resource is both included and excluded.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// An empty secrets passphrase.
    #[error("the secrets passphrase is empty: give a real passphrase to secrets_passphrase(..)")]
    EmptySecretsPassphrase,
    /// Both `secrets_passphrase(..)` and `plaintext_secrets(true)` were given.
    #[error(
        "secrets_passphrase(..) and plaintext_secrets(true) contradict each other: choose one (a passphrase encrypts secrets in archives; plaintext stores them in clear)"
    )]
    ConflictingSecretsOptions,
}

impl From<ConfigError> for s3db_core::Error {
    fn from(e: ConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "backup plugin configuration",
            reason: e.to_string(),
        }
    }
}

/// The validated configuration.
pub(crate) struct Config {
    pub(crate) driver: Driver,
    /// The resources backed up when a backup names none.
    pub(crate) selection: ResourceSelection,
    pub(crate) retention: Retention,
    pub(crate) page_size: usize,
    pub(crate) concurrency: usize,
    pub(crate) temp_dir: Option<PathBuf>,
    pub(crate) verify_uploads: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) secrets: SecretsPolicy,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("driver", &self.driver)
            .field("selection", &self.selection)
            .field("retention", &self.retention)
            .field("page_size", &self.page_size)
            .field("concurrency", &self.concurrency)
            .field("temp_dir", &self.temp_dir)
            .field("verify_uploads", &self.verify_uploads)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

/// Builds a [`BackupPlugin`], validating everything at [`BackupBuilder::build`].
///
/// ```
/// use s3db_backup::{BackupPlugin, Driver, MultiStrategy, Retention};
///
/// let plugin = BackupPlugin::builder()
///     .driver(Driver::multi(
///         MultiStrategy::All,
///         [
///             Driver::filesystem("./backups/{date}/")?,
///             Driver::s3("memory://backup-bucket/archives")?,
///         ],
///     ))
///     .retention(Retention::new().daily(7).weekly(4).monthly(12))
///     .exclude(["sessions"])
///     .build()?;
/// # let _ = plugin;
/// # Ok::<(), s3db_backup::ConfigError>(())
/// ```
#[must_use]
pub struct BackupBuilder {
    driver: Option<Result<Driver, ConfigError>>,
    selection: ResourceSelection,
    retention: Retention,
    page_size: usize,
    concurrency: usize,
    temp_dir: Option<PathBuf>,
    verify_uploads: bool,
    clock: Arc<dyn Clock>,
    secrets_passphrase: Option<SecretString>,
    plaintext_secrets: bool,
}

impl fmt::Debug for BackupBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupBuilder")
            .field("driver", &self.driver)
            .field("selection", &self.selection)
            .field("retention", &self.retention)
            .field("page_size", &self.page_size)
            .field(
                "secrets_passphrase",
                &self.secrets_passphrase.as_ref().map(|_| "***"),
            )
            .field("plaintext_secrets", &self.plaintext_secrets)
            .finish_non_exhaustive()
    }
}

impl Default for BackupBuilder {
    fn default() -> Self {
        Self {
            driver: None,
            selection: ResourceSelection::new(),
            retention: Retention::default(),
            page_size: DEFAULT_PAGE_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            temp_dir: None,
            verify_uploads: true,
            clock: Arc::new(SystemClock),
            secrets_passphrase: None,
            plaintext_secrets: false,
        }
    }
}

impl BackupBuilder {
    /// Where archives go.
    pub fn driver(mut self, driver: impl Into<Driver>) -> Self {
        self.driver = Some(Ok(driver.into()));
        self
    }

    /// Archives in a local folder; `path` may contain `{date}` (see [`crate::FilesystemDriver`]).
    pub fn filesystem(mut self, path: impl Into<String>) -> Self {
        self.driver = Some(Driver::filesystem(path));
        self
    }

    /// Archives in another database location (see [`crate::S3Driver`]).
    pub fn s3(mut self, connection: &str) -> Self {
        self.driver = Some(Driver::s3(connection));
        self
    }

    /// Backs up only these resources when a backup names none (default: every user resource).
    pub fn include<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.selection = self.selection.include(resources);
        self
    }

    /// Never backs up these resources unless a backup names them.
    pub fn exclude<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.selection = self.selection.exclude(resources);
        self
    }

    /// Pruning applied after each successful backup (default: keep everything).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Records read and archived at a time (default [`DEFAULT_PAGE_SIZE`]): with
    /// `concurrency`, what bounds the memory a backup uses.
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size;
        self
    }

    /// Record reads (and restore writes) in flight (default [`DEFAULT_CONCURRENCY`]).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Folder for the archive buffer and unpacked restores (default: the system's temporary
    /// folder).
    pub fn temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = Some(dir.into());
        self
    }

    /// Whether each upload is read back and its checksum compared (default: yes; one more read
    /// of the archive per destination).
    pub fn verify_uploads(mut self, on: bool) -> Self {
        self.verify_uploads = on;
        self
    }

    /// The clock that dates backups (default: the system clock; tests give a
    /// [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Encrypts `secret` attributes in archives under a key derived from this passphrase and a
    /// random salt made for each archive (PBKDF2-HMAC-SHA256, AES-256-GCM). Restoring them needs
    /// the same passphrase: a wrong one is refused before anything is written
    /// ([`crate::BackupError::WrongSecretsPassphrase`]). It may differ from the database's own
    /// passphrase (a restore into another database re-encrypts under that database's key). The
    /// passphrase is kept in memory only: never in archives, status records, logs, errors or
    /// `Debug` output.
    ///
    /// Without it (or [`BackupBuilder::plaintext_secrets`]), backing up a resource that has
    /// secret attributes is refused ([`crate::BackupError::SecretsNotConfigured`]).
    pub fn secrets_passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.secrets_passphrase = Some(SecretString::new(passphrase));
        self
    }

    /// **Unsafe**: `true` stores `secret` attributes in archives *in clear* (as the resource
    /// API returns them), so whoever can read the destination reads every secret. Prefer
    /// [`BackupBuilder::secrets_passphrase`]. Archives made this way restore without a
    /// passphrase.
    pub fn plaintext_secrets(mut self, on: bool) -> Self {
        self.plaintext_secrets = on;
        self
    }

    /// Validates and builds the plugin.
    ///
    /// # Errors
    /// A [`ConfigError`] naming what to fix.
    pub fn build(self) -> Result<BackupPlugin, ConfigError> {
        let driver = self.driver.ok_or(ConfigError::NoDriver)??;
        if let Driver::Multi { destinations, .. } = &driver
            && destinations.is_empty()
        {
            return Err(ConfigError::EmptyMulti);
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            return Err(ConfigError::PageSize {
                size: self.page_size,
            });
        }
        if self.concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        self.selection.check()?;
        let secrets = match (self.secrets_passphrase, self.plaintext_secrets) {
            (Some(_), true) => return Err(ConfigError::ConflictingSecretsOptions),
            (Some(p), false) if p.expose().is_empty() => {
                return Err(ConfigError::EmptySecretsPassphrase);
            }
            (Some(p), false) => SecretsPolicy::Encrypt(p),
            (None, true) => SecretsPolicy::Plaintext,
            (None, false) => SecretsPolicy::Refuse,
        };
        Ok(BackupPlugin::from_config(Config {
            driver,
            selection: self.selection,
            retention: self.retention,
            page_size: self.page_size,
            concurrency: self.concurrency,
            temp_dir: self.temp_dir,
            verify_uploads: self.verify_uploads,
            clock: self.clock,
            secrets,
        }))
    }
}
