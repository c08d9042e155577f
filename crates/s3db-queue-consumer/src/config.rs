//! Configuration: the plugin's builder, one [`Consumer`] per queue, and their validation.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use s3db_core::plugin::is_internal_resource;

use crate::QueueConsumerPlugin;
use crate::driver::QueueDriver;

/// Messages handled at once per consumer by default (the original's `concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 5;
/// Messages asked for per receive by default (the original's `maxMessages`; SQS's maximum).
pub const DEFAULT_BATCH_SIZE: usize = 10;
/// The largest batch a receive may ask for (SQS's limit).
pub const MAX_BATCH_SIZE: usize = 10;
/// How long `stop` waits for messages being handled to finish by default.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The first pause after a failed receive; it doubles up to [`MAX_RECEIVE_BACKOFF`].
pub const RECEIVE_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause between failed receives.
pub const MAX_RECEIVE_BACKOFF: Duration = Duration::from_secs(10);

/// A configuration the builders refuse, naming what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The plugin was given no consumer.
    #[error("no consumer configured: add one with .consumer(Consumer::new(name, driver))")]
    NoConsumers,
    /// A consumer name is empty or not unique.
    #[error("bad consumer name {name:?}: {reason}")]
    BadConsumerName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A consumer's concurrency is 0.
    #[error("consumer {consumer:?}: concurrency must be at least 1")]
    ZeroConcurrency {
        /// The consumer.
        consumer: String,
    },
    /// A consumer's batch size is not within 1..=10.
    #[error("consumer {consumer:?}: batch_size {batch_size} is not within 1..=10")]
    BadBatchSize {
        /// The consumer.
        consumer: String,
        /// The size given.
        batch_size: usize,
    },
    /// A resource name in a consumer's `resources` is empty or names an internal `plg_*`
    /// resource (which no consumer may write to).
    #[error("consumer {consumer:?}: bad resource name {resource:?}: {reason}")]
    BadResource {
        /// The consumer.
        consumer: String,
        /// The name.
        resource: String,
        /// Why.
        reason: &'static str,
    },
    /// The driver's visibility timeout is too short to extend in time (under 1 s).
    #[error(
        "consumer {consumer:?}: the queue's visibility timeout {timeout:?} is under 1 s; messages would reappear before they could be extended"
    )]
    VisibilityTooShort {
        /// The consumer.
        consumer: String,
        /// The driver's timeout.
        timeout: Duration,
    },
    /// A URL (queue or endpoint) that is empty or not `http(s)://`.
    #[error("bad {what} {url:?}: {reason}")]
    BadUrl {
        /// `queue URL` or `endpoint URL`.
        what: &'static str,
        /// The URL given.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// A duration outside what the queue accepts.
    #[error("{what} {value:?} is out of range: {allowed}")]
    OutOfRange {
        /// The setting.
        what: &'static str,
        /// The value given.
        value: Duration,
        /// The allowed range.
        allowed: &'static str,
    },
    /// Static credentials with an empty key id or secret.
    #[error("static credentials need a non-empty access key id and secret access key")]
    EmptyCredentials,
    /// An empty region name.
    #[error("the region must not be empty")]
    EmptyRegion,
}

impl From<ConfigError> for s3db_core::Error {
    fn from(e: ConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "queue consumer configuration",
            reason: e.to_string(),
        }
    }
}

/// One queue to consume: a name (unique in the plugin, used in events and stats), its driver,
/// the resources it may write to, and how many messages it handles at once.
///
/// ```
/// use std::time::Duration;
/// use s3db_queue_consumer::{Consumer, MemoryQueue};
///
/// let consumer = Consumer::new("orders", MemoryQueue::new("orders"))
///     .resources(["orders", "order_items"])
///     .concurrency(8)
///     .batch_size(10)
///     .retry_delay(Duration::from_secs(5));
/// # let _ = consumer;
/// ```
#[derive(Clone)]
pub struct Consumer {
    pub(crate) name: String,
    pub(crate) driver: Arc<dyn QueueDriver>,
    pub(crate) resources: BTreeSet<String>,
    pub(crate) concurrency: usize,
    pub(crate) batch_size: usize,
    pub(crate) extend_visibility: bool,
    pub(crate) retry_delay: Option<Duration>,
    pub(crate) poll_interval: Duration,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("driver", &self.driver.kind())
            .field("queue", &self.driver.queue())
            .field("resources", &self.resources)
            .field("concurrency", &self.concurrency)
            .field("batch_size", &self.batch_size)
            .field("extend_visibility", &self.extend_visibility)
            .field("retry_delay", &self.retry_delay)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl Consumer {
    /// A consumer of `driver`'s queue with the defaults: any user resource, concurrency 5,
    /// batches of 10, visibility extended while handling, failed messages left to the queue's
    /// own redelivery.
    pub fn new(name: impl Into<String>, driver: impl QueueDriver) -> Self {
        Self::with_driver(name, Arc::new(driver))
    }

    /// As [`Consumer::new`] with a shared driver.
    pub fn with_driver(name: impl Into<String>, driver: Arc<dyn QueueDriver>) -> Self {
        Self {
            name: name.into(),
            driver,
            resources: BTreeSet::new(),
            concurrency: DEFAULT_CONCURRENCY,
            batch_size: DEFAULT_BATCH_SIZE,
            extend_visibility: true,
            retry_delay: None,
            poll_interval: Duration::ZERO,
        }
    }

    /// Only these resources may be written; a message for another one is a bad message. By
    /// default every user resource may be (never a `plg_*` one).
    #[must_use]
    pub fn resources<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.resources.extend(names.into_iter().map(Into::into));
        self
    }

    /// How many messages are handled at once (default 5). A receive asks for no more messages
    /// than there are free slots.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// How many messages one receive asks for, 1..=10 (default 10).
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Whether a message being handled is kept hidden by extending its visibility every half
    /// visibility timeout (default true).
    #[must_use]
    pub fn extend_visibility(mut self, on: bool) -> Self {
        self.extend_visibility = on;
        self
    }

    /// After a failed message (not a bad one), make it visible again after `delay` instead of
    /// waiting for its visibility timeout (default: wait).
    #[must_use]
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = Some(delay);
        self
    }

    /// A pause after a receive that returned nothing (default none: long polling already
    /// waits). For queues without long polling.
    #[must_use]
    pub fn poll_interval(mut self, pause: Duration) -> Self {
        self.poll_interval = pause;
        self
    }

    /// The consumer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this consumer may write to `resource`.
    pub(crate) fn allows(&self, resource: &str) -> bool {
        !is_internal_resource(resource)
            && (self.resources.is_empty() || self.resources.contains(resource))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let consumer = || self.name.clone();
        if self.name.trim().is_empty() {
            return Err(ConfigError::BadConsumerName {
                name: self.name.clone(),
                reason: "it must not be empty",
            });
        }
        if self.concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency {
                consumer: consumer(),
            });
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(ConfigError::BadBatchSize {
                consumer: consumer(),
                batch_size: self.batch_size,
            });
        }
        for resource in &self.resources {
            let reason = if resource.trim().is_empty() {
                Some("it must not be empty")
            } else if is_internal_resource(resource) {
                Some("plg_* resources belong to plugins; no consumer may write to them")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ConfigError::BadResource {
                    consumer: consumer(),
                    resource: resource.clone(),
                    reason,
                });
            }
        }
        let timeout = self.driver.visibility_timeout();
        if self.extend_visibility && timeout < Duration::from_secs(1) {
            return Err(ConfigError::VisibilityTooShort {
                consumer: consumer(),
                timeout,
            });
        }
        Ok(())
    }
}

/// Builds a [`QueueConsumerPlugin`].
#[derive(Debug, Clone)]
pub struct QueueConsumerBuilder {
    consumers: Vec<Consumer>,
    stop_timeout: Duration,
}

impl Default for QueueConsumerBuilder {
    fn default() -> Self {
        Self {
            consumers: Vec::new(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }
}

impl QueueConsumerBuilder {
    /// Adds a queue to consume.
    #[must_use]
    pub fn consumer(mut self, consumer: Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    /// How long `stop` (and uninstall, disconnect) waits for messages being handled to finish
    /// and be acknowledged (default 30 s); what is still running then is aborted, and its
    /// messages come back after their visibility timeout.
    #[must_use]
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// The plugin.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting to fix.
    pub fn build(self) -> Result<QueueConsumerPlugin, ConfigError> {
        if self.consumers.is_empty() {
            return Err(ConfigError::NoConsumers);
        }
        let mut names = BTreeSet::new();
        for consumer in &self.consumers {
            consumer.validate()?;
            if !names.insert(consumer.name.clone()) {
                return Err(ConfigError::BadConsumerName {
                    name: consumer.name.clone(),
                    reason: "another consumer has the same name",
                });
            }
        }
        Ok(QueueConsumerPlugin::from_config(Config {
            consumers: self.consumers,
            stop_timeout: self.stop_timeout,
        }))
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) consumers: Vec<Consumer>,
    pub(crate) stop_timeout: Duration,
}
