//! Targets: where changes go. A driver implements [`Target`]; the plugin adds retries, timeouts,
//! a concurrency limit, statistics and the failure log around it.
//!
//! Drivers here: [`S3dbTarget`] (another s3db database, any backend), [`WebhookTarget`] (HTTP
//! POST), with the `sqs` feature [`SqsTarget`], and with the `sql` feature `SqlTarget` (a
//! SQLite database, one table per resource).

mod s3db;
#[cfg(feature = "sql")]
mod sql;
#[cfg(feature = "sqs")]
mod sqs;
mod webhook;

use std::time::Duration;

use s3db_core::plugin::{ResourceDefinition, async_trait};

pub use self::s3db::S3dbTarget;
#[cfg(feature = "sql")]
pub use self::sql::{DEFAULT_BUSY_TIMEOUT, SqlTarget};
#[cfg(feature = "sqs")]
pub use self::sqs::SqsTarget;
pub use self::webhook::WebhookTarget;
use crate::change::Change;
use crate::rule::SecretPolicy;

/// Why a change was not delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The target did not answer within the replicator's timeout.
    #[error("the target did not answer within {0:?}")]
    Timeout(Duration),
    /// An HTTP target answered with an error status.
    #[error("HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The target could not be reached (connection, TLS, DNS, protocol).
    #[error("transport: {0}")]
    Transport(String),
    /// The target database refused or failed.
    #[error("target database: {0}")]
    Database(#[source] s3db_core::Error),
    /// The target refused the change for good (retrying does not help until something is
    /// fixed: a missing resource, a schema mismatch, a bad request).
    #[error("rejected: {0}")]
    Rejected(String),
    /// An SQL target's database refused or failed (its path cannot be opened, the disk is full,
    /// another connection holds the lock…).
    #[error("SQL database: {message}")]
    Sql {
        /// SQLite's extended result code, when the database gave one (its low byte is the
        /// primary code: 5 `SQLITE_BUSY`, 6 `SQLITE_LOCKED`, 13 `SQLITE_FULL`…).
        code: Option<i32>,
        /// Whether retrying may succeed: the database was busy or locked by another connection.
        transient: bool,
        /// What the database said.
        message: String,
    },
}

impl ReplicationError {
    /// Whether retrying the same change may succeed (timeouts, transport errors, HTTP 5xx, 408,
    /// 429, transient storage errors, a busy or locked SQL database). Permanent errors are not
    /// retried, but are logged (when the log is on) for
    /// [`crate::ReplicatorPlugin::retry_failed`] once the cause is fixed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicationError::Timeout(_) | ReplicationError::Transport(_) => true,
            ReplicationError::Http { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            ReplicationError::Database(e) => e.is_transient() || e.is_conflict(),
            ReplicationError::Sql { transient, .. } => *transient,
            ReplicationError::Rejected(_) => false,
        }
    }
}

/// What a target learns about a source resource before its first change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SourceResource {
    /// The source resource's name.
    pub name: String,
    /// The resource's name on the target's side.
    pub target_name: String,
    /// The source's current definition.
    pub definition: ResourceDefinition,
    /// Whether its secrets are sent.
    pub secrets: SecretPolicy,
    /// Whether its records go through a transform (their shape may differ from the source's).
    pub transformed: bool,
}

/// A replication target. Implement it to add a driver (an SQL database, a message bus…).
#[async_trait]
pub trait Target: Send + Sync + 'static {
    /// A short name of the driver (`s3db`, `webhook`, `sqs`), for logs and events.
    fn kind(&self) -> &'static str;

    /// Checks the configuration (called by [`crate::ReplicatorBuilder::build`]); the message
    /// says what to fix.
    ///
    /// # Errors
    /// The reason the configuration is unusable.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Called once per source resource before its first change is sent (and again after
    /// [`Target::close`]), e.g. to create the resource on the target's side.
    ///
    /// # Errors
    /// As [`Target::send`].
    async fn prepare(&self, _source: &SourceResource) -> Result<(), ReplicationError> {
        Ok(())
    }

    /// Delivers one change. Must be idempotent: a change may be delivered again after a
    /// timeout or a lost answer, and by [`crate::ReplicatorPlugin::retry_failed`].
    ///
    /// # Errors
    /// Why it was not delivered.
    async fn send(&self, change: &Change) -> Result<(), ReplicationError>;

    /// Releases connections (the plugin stops). A later `send` connects again.
    async fn close(&self) {}
}
