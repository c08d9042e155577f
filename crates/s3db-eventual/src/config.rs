//! The builder, per-field settings and their validation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::EventualConsistencyPlugin;

/// Default interval of background consolidation (as the original: 60 s).
pub const DEFAULT_CONSOLIDATION_INTERVAL: Duration = Duration::from_secs(60);
/// Default retention of applied transactions before garbage collection (as the original: 7 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default interval of garbage collection (as the original: 1 hour).
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);
/// Default lease of a record's consolidation lock.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);
/// Default wait for a record's consolidation lock in `consolidate`, `recalculate` and sync-mode
/// writes.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest consolidation or GC interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest lock lease accepted.
pub const MIN_LOCK_TTL: Duration = Duration::from_millis(200);

/// When transactions are folded into the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every write consolidates the record at once and returns its new value.
    Sync,
    /// Writes only record the transaction; a background task consolidates every interval (the
    /// default, as the original).
    #[default]
    Async,
}

/// How `add`/`sub` amounts are folded into the value: `reducer(current, amount)` (`sub` passes
/// the negated amount). The default is the sum.
pub type Reducer = Arc<dyn Fn(f64, f64) -> f64 + Send + Sync>;

/// One managed (resource, numeric field) pair.
#[derive(Clone)]
pub struct FieldConfig {
    pub(crate) resource: String,
    pub(crate) field: String,
    pub(crate) initial_value: f64,
    pub(crate) reducer: Option<Reducer>,
}

impl fmt::Debug for FieldConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldConfig")
            .field("resource", &self.resource)
            .field("field", &self.field)
            .field("initial_value", &self.initial_value)
            .field(
                "reducer",
                &self.reducer.as_ref().map_or("sum", |_| "custom"),
            )
            .finish()
    }
}

impl FieldConfig {
    /// The field `field` of resource `resource`, initial value 0, summed.
    pub fn new(resource: impl Into<String>, field: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            field: field.into(),
            initial_value: 0.0,
            reducer: None,
        }
    }

    /// The value a record starts from when it has none (default 0).
    #[must_use]
    pub fn initial_value(mut self, value: f64) -> Self {
        self.initial_value = value;
        self
    }

    /// Folds amounts with `reducer(current, amount)` instead of summing. It must be
    /// deterministic: `recalculate` replays it over the whole log.
    #[must_use]
    pub fn reducer(mut self, reducer: impl Fn(f64, f64) -> f64 + Send + Sync + 'static) -> Self {
        self.reducer = Some(Arc::new(reducer));
        self
    }

    /// The resource.
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The field.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The name of its transaction resource: `plg_<resource>_tx_<field>`.
    #[must_use]
    pub fn transaction_resource(&self) -> String {
        format!("plg_{}_tx_{}", self.resource, self.field)
    }

    pub(crate) fn reduce(&self, current: f64, amount: f64) -> f64 {
        match &self.reducer {
            Some(reducer) => reducer(current, amount),
            None => current + amount,
        }
    }
}

/// A configuration the builder refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No field was configured.
    #[error("no field configured: add one with .field(\"resource\", \"field\")")]
    NoFields,
    /// A resource or field name cannot name a transaction resource.
    #[error("bad name {resource:?}.{field:?}: {reason}")]
    BadName {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The same field is configured twice.
    #[error("field {resource:?}.{field:?} is configured twice")]
    Duplicate {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
    },
    /// The initial value is NaN or infinite.
    #[error("the initial value of {resource:?}.{field:?} must be finite, not {value}")]
    NotFinite {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
        /// What was given.
        value: f64,
    },
    /// An interval is below [`MIN_INTERVAL`].
    #[error("{what} {interval:?} is below the minimum of {min:?}")]
    IntervalTooShort {
        /// Which setting.
        what: &'static str,
        /// What was given.
        interval: Duration,
        /// The minimum.
        min: Duration,
    },
    /// The retention is zero (use `retention(None)` to never collect).
    #[error("retention must be above zero (retention(None) keeps every transaction)")]
    ZeroRetention,
}

impl From<ConfigError> for s3db_core::Error {
    fn from(e: ConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "eventual consistency plugin configuration",
            reason: e.to_string(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) fields: Vec<FieldConfig>,
    pub(crate) mode: Mode,
    pub(crate) consolidation_interval: Duration,
    pub(crate) retention: Option<Duration>,
    pub(crate) gc_interval: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_timeout: Duration,
}

/// Builds an [`EventualConsistencyPlugin`]; [`EventualBuilder::build`] validates.
///
/// ```
/// use std::time::Duration;
/// use s3db_eventual::{EventualConsistencyPlugin, FieldConfig, Mode};
///
/// let plugin = EventualConsistencyPlugin::builder()
///     .field("wallets", "balance")
///     .field_config(FieldConfig::new("products", "stock").initial_value(100.0))
///     .mode(Mode::Sync)
///     .retention(Some(Duration::from_secs(30 * 24 * 3600)))
///     .build()
///     .expect("valid");
/// # drop(plugin);
/// assert!(EventualConsistencyPlugin::builder().build().is_err()); // no field
/// ```
#[derive(Debug, Clone)]
pub struct EventualBuilder {
    fields: Vec<FieldConfig>,
    mode: Mode,
    consolidation_interval: Duration,
    retention: Option<Duration>,
    gc_interval: Duration,
    lock_ttl: Duration,
    lock_timeout: Duration,
}

impl Default for EventualBuilder {
    fn default() -> Self {
        Self {
            fields: Vec::new(),
            mode: Mode::default(),
            consolidation_interval: DEFAULT_CONSOLIDATION_INTERVAL,
            retention: Some(DEFAULT_RETENTION),
            gc_interval: DEFAULT_GC_INTERVAL,
            lock_ttl: DEFAULT_LOCK_TTL,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl EventualBuilder {
    /// Manages `field` of `resource` (initial value 0, summed).
    #[must_use]
    pub fn field(self, resource: impl Into<String>, field: impl Into<String>) -> Self {
        self.field_config(FieldConfig::new(resource, field))
    }

    /// Manages a field with its own settings.
    #[must_use]
    pub fn field_config(mut self, field: FieldConfig) -> Self {
        self.fields.push(field);
        self
    }

    /// Sync or async consolidation (default [`Mode::Async`]).
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How often the background task consolidates records with new transactions (default 60 s).
    /// In sync mode it only picks up records whose consolidation failed.
    #[must_use]
    pub fn consolidation_interval(mut self, interval: Duration) -> Self {
        self.consolidation_interval = interval;
        self
    }

    /// How long applied transactions are kept before garbage collection folds them into a
    /// checkpoint (default 7 days); `None` keeps them forever.
    #[must_use]
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// How often garbage collection runs when a retention is set (default 1 hour).
    #[must_use]
    pub fn gc_interval(mut self, interval: Duration) -> Self {
        self.gc_interval = interval;
        self
    }

    /// Lease of a record's consolidation lock (default 30 s): a consolidator that dies holds it
    /// this long at most.
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long `consolidate`, `recalculate` and sync-mode writes wait for a record's lock
    /// (default 30 s).
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Validates and builds the plugin.
    ///
    /// # Errors
    /// A [`ConfigError`] naming what to fix.
    pub fn build(self) -> Result<EventualConsistencyPlugin, ConfigError> {
        if self.fields.is_empty() {
            return Err(ConfigError::NoFields);
        }
        let mut seen = BTreeMap::new();
        for f in &self.fields {
            check_names(f)?;
            if !f.initial_value.is_finite() {
                return Err(ConfigError::NotFinite {
                    resource: f.resource.clone(),
                    field: f.field.clone(),
                    value: f.initial_value,
                });
            }
            if seen
                .insert((f.resource.clone(), f.field.clone()), ())
                .is_some()
            {
                return Err(ConfigError::Duplicate {
                    resource: f.resource.clone(),
                    field: f.field.clone(),
                });
            }
        }
        for (what, interval, min) in [
            (
                "consolidation interval",
                self.consolidation_interval,
                MIN_INTERVAL,
            ),
            ("gc interval", self.gc_interval, MIN_INTERVAL),
            ("lock ttl", self.lock_ttl, MIN_LOCK_TTL),
        ] {
            if interval < min {
                return Err(ConfigError::IntervalTooShort {
                    what,
                    interval,
                    min,
                });
            }
        }
        if self.retention == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroRetention);
        }
        Ok(EventualConsistencyPlugin::from_config(Config {
            fields: self.fields,
            mode: self.mode,
            consolidation_interval: self.consolidation_interval,
            retention: self.retention,
            gc_interval: self.gc_interval,
            lock_ttl: self.lock_ttl,
            lock_timeout: self.lock_timeout,
        }))
    }
}

/// Resource and field names must make a valid resource name `plg_<r>_tx_<f>` (1-100 ASCII
/// letters, digits, `_`, `-`).
fn check_names(f: &FieldConfig) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::BadName {
        resource: f.resource.clone(),
        field: f.field.clone(),
        reason,
    };
    for (what, name) in [("resource", &f.resource), ("field", &f.field)] {
        if name.is_empty() {
            return Err(bad(format!("the {what} name is empty")));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(bad(format!(
                "the {what} name may only have ASCII letters, digits, '_' and '-' (nested fields are not supported)"
            )));
        }
    }
    if s3db_core::plugin::is_internal_resource(&f.resource) {
        return Err(bad("internal plg_* resources cannot be managed".to_owned()));
    }
    let tx = f.transaction_resource();
    if tx.len() > 100 {
        return Err(bad(format!(
            "the transaction resource name {tx:?} is over 100 characters: use shorter names"
        )));
    }
    Ok(())
}
