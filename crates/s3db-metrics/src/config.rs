//! The builder and its validation.

use std::net::SocketAddr;
use std::time::Duration;

use s3db_core::plugin::{ResourceSelection, SelectionError};

use crate::MetricsPlugin;

/// Default slow-operation threshold (as the original plugin: 1 s).
pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_secs(1);
/// Default number of slow operations kept (the most recent ones).
pub const DEFAULT_SLOW_LOG_CAPACITY: usize = 100;
/// Default flush interval when flushing is enabled without one (as the original: 60 s).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
/// Default retention of flushed records (as the original: 30 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest flush interval accepted.
pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Default metric name prefix.
pub const DEFAULT_PREFIX: &str = "s3db";
/// A conventional loopback address for the HTTP endpoint (the port of OpenTelemetry's Prometheus
/// exporter). Any address can be given to [`MetricsBuilder::http_endpoint`]; use port 0 for a free
/// port and read it back with [`MetricsPlugin::local_addr`].
pub const DEFAULT_HTTP_ENDPOINT: &str = "127.0.0.1:9464";

/// A configuration the builder refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The HTTP endpoint is not an `ip:port` socket address.
    #[error("bad HTTP endpoint {addr:?}: {reason} (give an ip:port such as 127.0.0.1:9464)")]
    BadEndpoint {
        /// What was given.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// The slow-operation log must keep at least one entry.
    #[error("the slow-operation log capacity must be at least 1")]
    ZeroSlowLogCapacity,
    /// The flush interval is below [`MIN_FLUSH_INTERVAL`].
    #[error("flush interval {interval:?} is below the minimum of {min:?}")]
    FlushIntervalTooShort {
        /// What was given.
        interval: Duration,
        /// The minimum.
        min: Duration,
    },
    /// Retention must be above zero (use `Duration::MAX` to keep everything).
    #[error("retention must be above zero (Duration::MAX keeps every flushed record)")]
    ZeroRetention,
    /// A resource name in `include`/`exclude` is empty or names an internal `plg_*` resource (they
    /// are never measured), or a resource is both included and excluded.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// The metric name prefix is not a valid Prometheus name (`[a-zA-Z_][a-zA-Z0-9_]*`).
    #[error("bad metric prefix {prefix:?}: use letters, digits and _ (not first a digit)")]
    BadPrefix {
        /// What was given.
        prefix: String,
    },
}

impl From<ConfigError> for s3db_core::Error {
    fn from(e: ConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "metrics plugin configuration",
            reason: e.to_string(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) slow_threshold: Duration,
    pub(crate) slow_log_capacity: usize,
    /// The measured resources.
    pub(crate) selection: ResourceSelection,
    pub(crate) http: Option<SocketAddr>,
    pub(crate) flush_interval: Option<Duration>,
    pub(crate) retention: Duration,
    pub(crate) prefix: String,
    pub(crate) facade: bool,
    pub(crate) store_requests: bool,
}

/// Builds a [`MetricsPlugin`]; [`MetricsBuilder::build`] validates everything.
///
/// ```
/// use std::time::Duration;
/// use s3db_metrics::MetricsPlugin;
///
/// let plugin = MetricsPlugin::builder()
///     .slow_threshold(Duration::from_millis(250))
///     .slow_log_capacity(50)
///     .exclude(["sessions"])
///     .http_endpoint("127.0.0.1:0")
///     .flush_every(Duration::from_secs(60))
///     .retention(Duration::from_secs(7 * 24 * 3600))
///     .build()?;
/// # Ok::<(), s3db_metrics::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MetricsBuilder {
    slow_threshold: Duration,
    slow_log_capacity: usize,
    selection: ResourceSelection,
    http: Option<String>,
    flush_interval: Option<Duration>,
    retention: Duration,
    prefix: String,
    facade: bool,
    store_requests: bool,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self {
            slow_threshold: DEFAULT_SLOW_THRESHOLD,
            slow_log_capacity: DEFAULT_SLOW_LOG_CAPACITY,
            selection: ResourceSelection::new(),
            http: None,
            flush_interval: None,
            retention: DEFAULT_RETENTION,
            prefix: DEFAULT_PREFIX.to_owned(),
            facade: true,
            store_requests: true,
        }
    }
}

impl MetricsBuilder {
    /// Operations taking at least this long are counted as slow and logged (default 1 s; zero
    /// logs every operation).
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }

    /// How many slow operations are kept — the most recent ones (default 100, at least 1).
    pub fn slow_log_capacity(mut self, capacity: usize) -> Self {
        self.slow_log_capacity = capacity;
        self
    }

    /// Measure only these resources (added to any given before). Without it, every user resource
    /// is measured, also those created later. Internal `plg_*` resources never are.
    pub fn include<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.selection = self.selection.include(resources);
        self
    }

    /// Never measure these resources (added to any given before).
    pub fn exclude<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.selection = self.selection.exclude(resources);
        self
    }

    /// Serve `GET /metrics` (Prometheus text) on this `ip:port` while the plugin runs. Prefer a
    /// loopback address (such as [`DEFAULT_HTTP_ENDPOINT`]) unless the endpoint is meant to be
    /// reachable from other hosts; port 0 picks a free port (see [`MetricsPlugin::local_addr`]).
    pub fn http_endpoint(mut self, addr: impl Into<String>) -> Self {
        self.http = Some(addr.into());
        self
    }

    /// Flush the measurements of each period into the `plg_metrics` resources every `interval`
    /// (at least 10 ms), deleting records older than the retention at each flush. Without it,
    /// nothing is written to storage.
    pub fn flush_every(mut self, interval: Duration) -> Self {
        self.flush_interval = Some(interval);
        self
    }

    /// How long flushed records are kept (default 30 days; `Duration::MAX` keeps everything).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The metric name prefix (default `s3db`: `s3db_operations_total`, …).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Whether to also emit through the global `metrics` facade (default `true`; a no-op unless
    /// the application installed a recorder).
    pub fn facade(mut self, on: bool) -> Self {
        self.facade = on;
        self
    }

    /// Whether to also measure every request of the database's store — by owner (resource,
    /// plugin storage, database metadata) and kind (GET, PUT, LIST, …) — through the core's
    /// request accounting (default `true`).
    pub fn store_requests(mut self, on: bool) -> Self {
        self.store_requests = on;
        self
    }

    /// Validates the configuration and makes the plugin.
    ///
    /// # Errors
    /// A [`ConfigError`] naming what is wrong.
    pub fn build(self) -> Result<MetricsPlugin, ConfigError> {
        Ok(MetricsPlugin::from_config(self.validate()?))
    }

    pub(crate) fn validate(self) -> Result<Config, ConfigError> {
        if self.slow_log_capacity == 0 {
            return Err(ConfigError::ZeroSlowLogCapacity);
        }
        if let Some(interval) = self.flush_interval
            && interval < MIN_FLUSH_INTERVAL
        {
            return Err(ConfigError::FlushIntervalTooShort {
                interval,
                min: MIN_FLUSH_INTERVAL,
            });
        }
        if self.retention.is_zero() {
            return Err(ConfigError::ZeroRetention);
        }
        let valid_prefix = self
            .prefix
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if self.prefix.is_empty() || !valid_prefix {
            return Err(ConfigError::BadPrefix {
                prefix: self.prefix,
            });
        }
        self.selection.check()?;
        let http = match self.http {
            None => None,
            Some(addr) => {
                Some(
                    addr.parse::<SocketAddr>()
                        .map_err(|e| ConfigError::BadEndpoint {
                            reason: e.to_string(),
                            addr,
                        })?,
                )
            }
        };
        Ok(Config {
            slow_threshold: self.slow_threshold,
            slow_log_capacity: self.slow_log_capacity,
            selection: self.selection,
            http,
            flush_interval: self.flush_interval,
            retention: self.retention,
            prefix: self.prefix,
            facade: self.facade,
            store_requests: self.store_requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(b: MetricsBuilder) -> ConfigError {
        match b.validate() {
            Err(e) => e,
            Ok(c) => panic!("accepted {c:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = MetricsBuilder::default()
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.slow_threshold, DEFAULT_SLOW_THRESHOLD);
        assert!(c.http.is_none() && c.flush_interval.is_none());
        assert!(c.selection.selects("users") && !c.selection.selects("plg_metrics"));
        DEFAULT_HTTP_ENDPOINT
            .parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn bad_configurations_are_refused() {
        let b = MetricsBuilder::default;
        assert_eq!(
            err(b().slow_log_capacity(0)),
            ConfigError::ZeroSlowLogCapacity
        );
        assert!(matches!(
            err(b().flush_every(Duration::from_millis(1))),
            ConfigError::FlushIntervalTooShort { .. }
        ));
        assert_eq!(
            err(b().retention(Duration::ZERO)),
            ConfigError::ZeroRetention
        );
        assert!(matches!(
            err(b().http_endpoint("localhost")),
            ConfigError::BadEndpoint { .. }
        ));
        assert!(matches!(
            err(b().http_endpoint("127.0.0.1")),
            ConfigError::BadEndpoint { .. }
        ));
        for prefix in ["", "9x", "a-b", "a b"] {
            assert!(matches!(
                err(b().prefix(prefix)),
                ConfigError::BadPrefix { .. }
            ));
        }
        assert!(matches!(
            err(b().include([""])),
            ConfigError::Selection(SelectionError::BadResourceName { .. })
        ));
        assert!(matches!(
            err(b().exclude(["plg_audits"])),
            ConfigError::Selection(SelectionError::BadResourceName { .. })
        ));
        assert_eq!(
            err(b().include(["a", "b"]).exclude(["b"])),
            ConfigError::Selection(SelectionError::IncludedAndExcluded { name: "b".into() })
        );
        let core: s3db_core::Error = ConfigError::ZeroRetention.into();
        assert!(core.to_string().contains("retention"));
    }

    #[test]
    fn include_and_exclude() {
        let c = MetricsBuilder::default()
            .include(["a", "b"])
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.selection.selects("a") && !c.selection.selects("c"));
        let c = MetricsBuilder::default()
            .exclude(["a"])
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.selection.selects("a") && c.selection.selects("c"));
    }
}
