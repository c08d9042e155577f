//! The builder and the validation of a queue's settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::S3Queue;
use crate::handler::{MessageHandler, SharedHandler};

/// Default number of messages one process handles at once (as the original: 3).
pub const DEFAULT_CONCURRENCY: usize = 3;
/// Default time a claimed message stays invisible to other workers (as the original: 30 s).
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default pause between two looks at an empty (or fully claimed) queue (as the original: 1 s).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default number of attempts before a message goes to the dead-letter resource (as the
/// original: 3).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default delay before the first retry; doubled for each further attempt (as the original: 1 s).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Default ceiling of the retry delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Default time `stop` waits for messages being handled to finish before aborting them.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest visibility timeout accepted.
pub const MIN_VISIBILITY_TIMEOUT: Duration = Duration::from_millis(50);
/// The shortest poll interval accepted.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// The longest queue name accepted (the dead-letter resource name must stay under 100
/// characters).
pub const MAX_QUEUE_NAME: usize = 64;

/// Which pending message a worker takes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first (the default).
    #[default]
    Fifo,
    /// Newest first.
    Lifo,
}

/// A configuration [`QueueBuilder::build`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The queue name cannot name a storage namespace and a resource.
    #[error(
        "bad queue name {name:?}: use 1-{MAX_QUEUE_NAME} lowercase ASCII letters, digits and single '-' inside"
    )]
    BadName {
        /// What was given.
        name: String,
    },
    /// A count that must be at least 1 is 0.
    #[error("{what} must be at least 1")]
    Zero {
        /// Which setting.
        what: &'static str,
    },
    /// A duration is below its minimum.
    #[error("{what} {given:?} is below the minimum of {min:?}")]
    TooShort {
        /// Which setting.
        what: &'static str,
        /// What was given.
        given: Duration,
        /// The minimum.
        min: Duration,
    },
    /// The retry backoff is above its ceiling.
    #[error("retry backoff {backoff:?} is above max backoff {max:?}")]
    BackoffAboveMax {
        /// The first retry delay.
        backoff: Duration,
        /// The ceiling.
        max: Duration,
    },
    /// The dead-letter resource name is not an internal `plg_*` resource name.
    #[error(
        "dead-letter resource {name:?} must be named plg_<name> (1-100 ASCII letters, digits, '_', '-')"
    )]
    BadDeadLetterResource {
        /// What was given.
        name: String,
    },
}

impl From<ConfigError> for s3db_core::Error {
    fn from(e: ConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "s3 queue configuration",
            reason: e.to_string(),
        }
    }
}

/// The validated settings of a queue.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) queue: String,
    pub(crate) concurrency: usize,
    pub(crate) visibility_timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) order: Order,
    pub(crate) dead_letter_resource: String,
    pub(crate) stop_timeout: Duration,
    pub(crate) handler: Option<SharedHandler>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("max_attempts", &self.max_attempts)
            .field("retry_backoff", &self.retry_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("order", &self.order)
            .field("dead_letter_resource", &self.dead_letter_resource)
            .field("stop_timeout", &self.stop_timeout)
            .field("handler", &self.handler.is_some())
            .finish()
    }
}

/// Builds an [`S3Queue`]; [`QueueBuilder::build`] validates.
///
/// ```
/// use std::time::Duration;
/// use s3db_queue::{Message, Order, S3Queue};
///
/// let queue = S3Queue::builder("emails")
///     .concurrency(5)
///     .visibility_timeout(Duration::from_secs(60))
///     .max_attempts(5)
///     .order(Order::Lifo)
///     .on_message(|msg: Message| async move {
///         println!("sending {}", msg.data());
///         Ok(())
///     })
///     .build()
///     .expect("valid");
/// assert_eq!(queue.queue_name(), "emails");
/// assert!(S3Queue::builder("Bad Name").build().is_err());
/// assert!(S3Queue::builder("jobs").concurrency(0).build().is_err());
/// ```
#[derive(Clone)]
pub struct QueueBuilder {
    queue: String,
    concurrency: usize,
    visibility_timeout: Duration,
    poll_interval: Duration,
    max_attempts: u32,
    retry_backoff: Duration,
    max_backoff: Duration,
    order: Order,
    dead_letter_resource: Option<String>,
    stop_timeout: Duration,
    handler: Option<SharedHandler>,
}

impl fmt::Debug for QueueBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("queue", &self.queue)
            .field("handler", &self.handler.is_some())
            .finish_non_exhaustive()
    }
}

impl QueueBuilder {
    pub(crate) fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            concurrency: DEFAULT_CONCURRENCY,
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            order: Order::default(),
            dead_letter_resource: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            handler: None,
        }
    }

    /// How many messages this process handles at once (default 3).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// How long a claimed message stays invisible to other workers (default 30 s). A worker
    /// that dies (or a handler that runs longer, unless it calls
    /// [`Message::extend_visibility`](crate::Message::extend_visibility)) leaves the message
    /// claimable again after this.
    #[must_use]
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// The pause between two looks at a queue with nothing claimable (default 1 s).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Attempts (claims) before a message goes to the dead-letter resource (default 3).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Delay before the first retry of a failed message (default 1 s); each further retry
    /// doubles it up to [`QueueBuilder::max_backoff`], and every delay is jittered down by up
    /// to half.
    #[must_use]
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Ceiling of the retry delay (default 5 min).
    #[must_use]
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Which pending message is taken first (default [`Order::Fifo`]).
    #[must_use]
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Name of the internal resource dead messages are moved to (default
    /// `plg_s3queue_<queue>_dead`); must start with `plg_`.
    #[must_use]
    pub fn dead_letter_resource(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_resource = Some(name.into());
        self
    }

    /// How long stopping waits for messages being handled (default 5 s); handlers still running
    /// then are aborted, and their messages become claimable after their visibility timeout.
    #[must_use]
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// The handler: workers start with the plugin and call it for each claimed message. Without
    /// one, the queue only produces (enqueue, stats).
    #[must_use]
    pub fn on_message(mut self, handler: impl MessageHandler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Validates and builds the queue plugin.
    ///
    /// # Errors
    /// A [`ConfigError`] naming what to fix.
    pub fn build(self) -> Result<S3Queue, ConfigError> {
        if !valid_queue_name(&self.queue) {
            return Err(ConfigError::BadName { name: self.queue });
        }
        if self.concurrency == 0 {
            return Err(ConfigError::Zero {
                what: "concurrency",
            });
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::Zero {
                what: "max attempts",
            });
        }
        for (what, given, min) in [
            (
                "visibility timeout",
                self.visibility_timeout,
                MIN_VISIBILITY_TIMEOUT,
            ),
            ("poll interval", self.poll_interval, MIN_POLL_INTERVAL),
        ] {
            if given < min {
                return Err(ConfigError::TooShort { what, given, min });
            }
        }
        if self.retry_backoff > self.max_backoff {
            return Err(ConfigError::BackoffAboveMax {
                backoff: self.retry_backoff,
                max: self.max_backoff,
            });
        }
        let dead_letter_resource = self
            .dead_letter_resource
            .unwrap_or_else(|| format!("plg_s3queue_{}_dead", self.queue));
        if !valid_dead_letter_name(&dead_letter_resource) {
            return Err(ConfigError::BadDeadLetterResource {
                name: dead_letter_resource,
            });
        }
        Ok(S3Queue::from_config(Config {
            queue: self.queue,
            concurrency: self.concurrency,
            visibility_timeout: self.visibility_timeout,
            poll_interval: self.poll_interval,
            max_attempts: self.max_attempts,
            retry_backoff: self.retry_backoff,
            max_backoff: self.max_backoff,
            order: self.order,
            dead_letter_resource,
            stop_timeout: self.stop_timeout,
            handler: self.handler,
        }))
    }
}

/// Lowercase ASCII letters, digits and single inner `-`: the name is its own storage slug.
fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn valid_dead_letter_name(name: &str) -> bool {
    s3db_core::plugin::is_internal_resource(name)
        && name.len() > s3db_core::plugin::INTERNAL_RESOURCE_PREFIX.len()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "emails", "jobs-2", "x1-y2-z3"] {
            assert!(valid_queue_name(good), "{good}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a--b", "a/b", &"a".repeat(65)] {
            assert!(!valid_queue_name(bad), "{bad}");
        }
        assert!(valid_dead_letter_name("plg_dead"));
        assert!(!valid_dead_letter_name("dead"));
        assert!(!valid_dead_letter_name("plg_"));
        assert!(!valid_dead_letter_name("plg_a/b"));
    }

    #[test]
    fn validation_names_the_setting() {
        let err = |b: QueueBuilder| b.build().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(S3Queue::builder("q").concurrency(0)).contains("concurrency"));
        assert!(err(S3Queue::builder("q").max_attempts(0)).contains("max attempts"));
        assert!(
            err(S3Queue::builder("q").visibility_timeout(Duration::from_millis(1)))
                .contains("visibility timeout")
        );
        assert!(err(S3Queue::builder("q").poll_interval(Duration::ZERO)).contains("poll interval"));
        assert!(
            err(S3Queue::builder("q")
                .retry_backoff(Duration::from_secs(10))
                .max_backoff(Duration::from_secs(1)))
            .contains("max backoff")
        );
        assert!(err(S3Queue::builder("q").dead_letter_resource("dead")).contains("plg_"));
        assert!(err(S3Queue::builder("Q")).contains("bad queue name"));
        assert!(S3Queue::builder("q").build().is_ok());
    }
}
