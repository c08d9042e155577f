//! The builder and its validation.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use s3db_core::plugin::{ResourceSelection, SelectionError};

use crate::AuditPlugin;
use crate::entry::AuditOperation;
use s3db_core::plugin::{Clock, SystemClock};

/// Default cap on the size of the before/after data of one entry, in bytes of JSON (as the
/// original: 10 000).
pub const DEFAULT_MAX_DATA_SIZE: usize = 10_000;
/// The retention the original plugin's clean-up defaults to (90 days); pass it to
/// [`AuditPlugin::cleanup`].
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// A configuration the builder refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The data size cap must be at least 1 byte (turn data off with `include_data(false)`).
    #[error("max_data_size must be at least 1 byte; use .include_data(false) to record no data")]
    ZeroMaxDataSize,
    /// A resource name in `include`/`exclude` is empty or names an internal `plg_*` resource
    /// (they are never audited), or a resource is both included and excluded.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// `operations` was given an empty set: nothing would be recorded.
    #[error("operations() needs at least one operation (uninstall the plugin to record nothing)")]
    NoOperations,
    /// The default user is empty or only whitespace.
    #[error("the default user must not be empty")]
    EmptyDefaultUser,
}

impl From<ConfigError> for s3db_core::Error {
    fn from(e: ConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "audit plugin configuration",
            reason: e.to_string(),
        }
    }
}

/// Finds the acting user when no [`crate::AuditUser`] scope names one.
pub(crate) type UserResolver = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The validated configuration.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) include_data: bool,
    pub(crate) include_partitions: bool,
    pub(crate) max_data_size: usize,
    /// The audited resources.
    pub(crate) selection: ResourceSelection,
    pub(crate) operations: BTreeSet<AuditOperation>,
    pub(crate) default_user: Option<String>,
    pub(crate) user_resolver: Option<UserResolver>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("include_data", &self.include_data)
            .field("include_partitions", &self.include_partitions)
            .field("max_data_size", &self.max_data_size)
            .field("selection", &self.selection)
            .field("operations", &self.operations)
            .field("default_user", &self.default_user)
            .field("user_resolver", &self.user_resolver.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            include_data: true,
            include_partitions: true,
            max_data_size: DEFAULT_MAX_DATA_SIZE,
            selection: ResourceSelection::new(),
            operations: AuditOperation::ALL.into_iter().collect(),
            default_user: None,
            user_resolver: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl Config {
    /// Whether an operation is recorded.
    pub(crate) fn records(&self, operation: AuditOperation) -> bool {
        self.operations.contains(&operation)
    }
}

/// Builds an [`AuditPlugin`]; [`AuditBuilder::build`] validates everything.
///
/// ```
/// use s3db_audit::{AuditOperation, AuditPlugin};
///
/// let plugin = AuditPlugin::builder()
///     .include_data(true)
///     .max_data_size(4_096)
///     .exclude(["sessions"])
///     .operations([AuditOperation::Update, AuditOperation::Delete])
///     .default_user("batch-job")
///     .build()?;
/// # Ok::<(), s3db_audit::ConfigError>(())
/// ```
#[must_use]
pub struct AuditBuilder {
    include_data: bool,
    include_partitions: bool,
    max_data_size: usize,
    selection: ResourceSelection,
    operations: Option<Vec<AuditOperation>>,
    default_user: Option<String>,
    user_resolver: Option<UserResolver>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for AuditBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditBuilder")
            .field("include_data", &self.include_data)
            .field("include_partitions", &self.include_partitions)
            .field("max_data_size", &self.max_data_size)
            .field("selection", &self.selection)
            .field("operations", &self.operations)
            .field("default_user", &self.default_user)
            .finish_non_exhaustive()
    }
}

impl Default for AuditBuilder {
    fn default() -> Self {
        Self {
            include_data: true,
            include_partitions: true,
            max_data_size: DEFAULT_MAX_DATA_SIZE,
            selection: ResourceSelection::new(),
            operations: None,
            default_user: None,
            user_resolver: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl AuditBuilder {
    /// Whether entries keep the record's data before and after the change (default: yes).
    pub fn include_data(mut self, on: bool) -> Self {
        self.include_data = on;
        self
    }

    /// Whether entries name the record's partition and its values (default: yes).
    pub fn include_partitions(mut self, on: bool) -> Self {
        self.include_partitions = on;
        self
    }

    /// Cap on the JSON size of the before and the after data of one entry (each), in bytes
    /// (default [`DEFAULT_MAX_DATA_SIZE`]). Larger data keeps the fields that fit and the entry
    /// is flagged `truncated`.
    pub fn max_data_size(mut self, bytes: usize) -> Self {
        self.max_data_size = bytes;
        self
    }

    /// Audits only these resources (default: every user resource).
    pub fn include<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.selection = self.selection.include(resources);
        self
    }

    /// Never audits these resources.
    pub fn exclude<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.selection = self.selection.exclude(resources);
        self
    }

    /// Records only these operations (default: all of them).
    pub fn operations(mut self, operations: impl IntoIterator<Item = AuditOperation>) -> Self {
        self.operations = Some(operations.into_iter().collect());
        self
    }

    /// The user recorded when no [`crate::AuditUser`] scope (and no resolver) names one; without
    /// it, [`crate::SYSTEM_USER`].
    pub fn default_user(mut self, user: impl Into<String>) -> Self {
        self.default_user = Some(user.into());
        self
    }

    /// Asked for the acting user when no [`crate::AuditUser`] scope names one (for applications
    /// that keep the caller somewhere else, e.g. a thread-local); `None` falls back to the default
    /// user.
    pub fn user_resolver(
        mut self,
        resolver: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.user_resolver = Some(Arc::new(resolver));
        self
    }

    /// The clock that stamps entries and measures ages for clean-up (default: the system clock;
    /// tests give a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates and builds the plugin.
    ///
    /// # Errors
    /// A [`ConfigError`] naming what to fix.
    pub fn build(self) -> Result<AuditPlugin, ConfigError> {
        if self.max_data_size == 0 {
            return Err(ConfigError::ZeroMaxDataSize);
        }
        self.selection.check()?;
        let operations: BTreeSet<AuditOperation> = match self.operations {
            Some(ops) => ops.into_iter().collect(),
            None => AuditOperation::ALL.into_iter().collect(),
        };
        if operations.is_empty() {
            return Err(ConfigError::NoOperations);
        }
        if self
            .default_user
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            return Err(ConfigError::EmptyDefaultUser);
        }
        Ok(AuditPlugin::from_config(Config {
            include_data: self.include_data,
            include_partitions: self.include_partitions,
            max_data_size: self.max_data_size,
            selection: self.selection,
            operations,
            default_user: self.default_user,
            user_resolver: self.user_resolver,
            clock: self.clock,
        }))
    }
}
