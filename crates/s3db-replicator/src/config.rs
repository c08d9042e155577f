//! Configuration: replicators (one target each, with its resources and delivery policy), the
//! plugin's builder, and the errors of both.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use s3db_core::plugin::is_internal_resource;

use crate::ReplicatorPlugin;
use crate::rule::ResourceRule;
use crate::target::Target;

/// Default number of retries after a failed delivery (as the original: 3).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default pause before the first retry; it doubles at each retry, up to [`MAX_BACKOFF`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between two retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default time one delivery attempt may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of deliveries in flight to one target.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// Default page size of [`ReplicatorPlugin::sync_all`].
pub const DEFAULT_SYNC_PAGE_SIZE: usize = 100;
/// Default time a process may spend replaying one logged failure before another process may
/// take it over ([`ReplicatorPlugin::retry_failed`]).
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(300);

/// A configuration the builder refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No replicator was added.
    #[error("add at least one replicator with .replicator(Replicator::new(name, target)...)")]
    NoReplicators,
    /// A replicator's name is empty or has characters other than letters, digits, `-` and `_`.
    #[error("bad replicator name {name:?}: use letters, digits, '-' and '_'")]
    BadReplicatorName {
        /// The name.
        name: String,
    },
    /// Two replicators have the same name (names identify them in the failure log).
    #[error("two replicators are named {name:?}; names must be unique")]
    DuplicateReplicator {
        /// The name.
        name: String,
    },
    /// A replicator follows no resource.
    #[error("replicator {replicator:?} follows no resource: add .resource(\"name\")")]
    NoResources {
        /// The replicator.
        replicator: String,
    },
    /// A resource name is empty, internal (`plg_*`), or given twice to one replicator.
    #[error("replicator {replicator:?}: bad resource {resource:?}: {reason}")]
    BadResource {
        /// The replicator.
        replicator: String,
        /// The resource (or its rename).
        resource: String,
        /// Why.
        reason: String,
    },
    /// A replicator follows a resource but no action of it.
    #[error("replicator {replicator:?}: resource {resource:?} has no action to replicate")]
    NoActions {
        /// The replicator.
        replicator: String,
        /// The resource.
        resource: String,
    },
    /// A duration or limit is zero.
    #[error("replicator {replicator:?}: {setting} must be greater than zero")]
    Zero {
        /// The replicator (empty for the plugin's own settings).
        replicator: String,
        /// Which setting.
        setting: &'static str,
    },
    /// The target refused its configuration.
    #[error("replicator {replicator:?} ({kind} target): {reason}")]
    BadTarget {
        /// The replicator.
        replicator: String,
        /// The target's kind.
        kind: &'static str,
        /// What to fix.
        reason: String,
    },
}

impl From<ConfigError> for s3db_core::Error {
    fn from(e: ConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "replicator plugin configuration",
            reason: e.to_string(),
        }
    }
}

/// One target with the resources replicated to it and how deliveries are retried.
///
/// ```
/// use std::time::Duration;
/// use s3db_replicator::{Replicator, ResourceRule, WebhookTarget};
///
/// let replicator = Replicator::new("hooks", WebhookTarget::new("https://example.com/in"))
///     .resource("orders")
///     .resource(ResourceRule::new("users").rename("customers"))
///     .max_retries(5)
///     .timeout(Duration::from_secs(3))
///     .concurrency(4);
/// ```
#[derive(Clone)]
pub struct Replicator {
    pub(crate) name: String,
    pub(crate) target: Arc<dyn Target>,
    pub(crate) rules: Vec<ResourceRule>,
    pub(crate) max_retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) timeout: Duration,
    pub(crate) concurrency: usize,
}

impl fmt::Debug for Replicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicator")
            .field("name", &self.name)
            .field("target", &self.target.kind())
            .field("rules", &self.rules)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Replicator {
    /// A replicator named `name` (unique in the plugin; it identifies the replicator in the
    /// failure log, so keep it stable) sending to `target`.
    pub fn new(name: impl Into<String>, target: impl Target) -> Self {
        Self::with_target(name, Arc::new(target))
    }

    /// As [`Replicator::new`], with a shared target.
    pub fn with_target(name: impl Into<String>, target: Arc<dyn Target>) -> Self {
        Self {
            name: name.into(),
            target,
            rules: Vec::new(),
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: DEFAULT_BACKOFF,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Follows a resource: a name, or a [`ResourceRule`] with rename, actions, filter,
    /// transform and secret policy.
    #[must_use]
    pub fn resource(mut self, rule: impl Into<ResourceRule>) -> Self {
        self.rules.push(rule.into());
        self
    }

    /// Follows several resources.
    #[must_use]
    pub fn resources<R: Into<ResourceRule>>(mut self, rules: impl IntoIterator<Item = R>) -> Self {
        self.rules.extend(rules.into_iter().map(Into::into));
        self
    }

    /// Retries after a failed delivery (default [`DEFAULT_MAX_RETRIES`]; 0: one attempt).
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Pause before the first retry, doubled at each one up to [`MAX_BACKOFF`] (default
    /// [`DEFAULT_BACKOFF`]).
    #[must_use]
    pub fn backoff(mut self, initial: Duration) -> Self {
        self.backoff = initial;
        self
    }

    /// Time one delivery attempt may take (default [`DEFAULT_TIMEOUT`]).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Deliveries in flight to this target at once, across all writes (default
    /// [`DEFAULT_CONCURRENCY`]).
    #[must_use]
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit;
        self
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, seen: &mut BTreeSet<String>) -> Result<(), ConfigError> {
        let name = &self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::BadReplicatorName { name: name.clone() });
        }
        if !seen.insert(name.clone()) {
            return Err(ConfigError::DuplicateReplicator { name: name.clone() });
        }
        if self.rules.is_empty() {
            return Err(ConfigError::NoResources {
                replicator: name.clone(),
            });
        }
        let zero = |setting| ConfigError::Zero {
            replicator: name.clone(),
            setting,
        };
        if self.timeout.is_zero() {
            return Err(zero("timeout"));
        }
        if self.concurrency == 0 {
            return Err(zero("concurrency"));
        }
        if self.max_retries > 0 && self.backoff.is_zero() {
            return Err(zero("backoff"));
        }
        let mut sources = BTreeSet::new();
        for rule in &self.rules {
            let bad = |resource: &str, reason: &str| ConfigError::BadResource {
                replicator: name.clone(),
                resource: resource.to_owned(),
                reason: reason.to_owned(),
            };
            for resource in [rule.source(), rule.target_name()] {
                if resource.trim().is_empty() {
                    return Err(bad(resource, "empty name"));
                }
                if is_internal_resource(resource) {
                    return Err(bad(
                        resource,
                        "internal plg_* resources of plugins are never replicated",
                    ));
                }
            }
            if !sources.insert(rule.source()) {
                return Err(bad(rule.source(), "given twice to this replicator"));
            }
            if rule.actions.is_empty() {
                return Err(ConfigError::NoActions {
                    replicator: name.clone(),
                    resource: rule.source().to_owned(),
                });
            }
        }
        self.target
            .validate()
            .map_err(|reason| ConfigError::BadTarget {
                replicator: name.clone(),
                kind: self.target.kind(),
                reason,
            })
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) replicators: Vec<Replicator>,
    pub(crate) log: bool,
    pub(crate) claim_ttl: Duration,
    pub(crate) sync_page_size: usize,
}

/// Builds a [`ReplicatorPlugin`] with validated configuration.
#[derive(Debug, Clone)]
#[must_use]
pub struct ReplicatorBuilder {
    config: Config,
}

impl Default for ReplicatorBuilder {
    fn default() -> Self {
        Self {
            config: Config {
                replicators: Vec::new(),
                log: true,
                claim_ttl: DEFAULT_CLAIM_TTL,
                sync_page_size: DEFAULT_SYNC_PAGE_SIZE,
            },
        }
    }
}

impl ReplicatorBuilder {
    /// Adds a replicator (a target with its resources).
    pub fn replicator(mut self, replicator: Replicator) -> Self {
        self.config.replicators.push(replicator);
        self
    }

    /// Whether deliveries that still fail after their retries are written to
    /// `plg_replicator_logs` for [`ReplicatorPlugin::retry_failed`] (default `true`). Off, they
    /// are only counted, logged through `tracing` and broadcast.
    pub fn log_failures(mut self, on: bool) -> Self {
        self.config.log = on;
        self
    }

    /// How long a process replaying a logged failure holds it before another may take it over
    /// (default [`DEFAULT_CLAIM_TTL`]; make it longer than a delivery with all its retries).
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.config.claim_ttl = ttl;
        self
    }

    /// Records read per page by [`ReplicatorPlugin::sync_all`] (default
    /// [`DEFAULT_SYNC_PAGE_SIZE`]).
    pub fn sync_page_size(mut self, size: usize) -> Self {
        self.config.sync_page_size = size;
        self
    }

    /// The plugin.
    ///
    /// # Errors
    /// [`ConfigError`] naming what to fix.
    pub fn build(self) -> Result<ReplicatorPlugin, ConfigError> {
        let config = self.config;
        if config.replicators.is_empty() {
            return Err(ConfigError::NoReplicators);
        }
        let mut seen = BTreeSet::new();
        for r in &config.replicators {
            r.validate(&mut seen)?;
        }
        if config.claim_ttl.is_zero() {
            return Err(ConfigError::Zero {
                replicator: String::new(),
                setting: "claim_ttl",
            });
        }
        if config.sync_page_size == 0 {
            return Err(ConfigError::Zero {
                replicator: String::new(),
                setting: "sync_page_size",
            });
        }
        Ok(ReplicatorPlugin::from_config(config))
    }
}
