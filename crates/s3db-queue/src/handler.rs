//! What a handler receives and returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use s3db_core::plugin::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::claim::Claim;

/// What a handler returns to fail a message: anything that is an error (`?` converts).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A handler as the queue keeps it.
pub(crate) type SharedHandler = Arc<dyn MessageHandler>;

/// Handles the messages of a queue. Closures `Fn(Message) -> impl Future<Output = Result<(),
/// HandlerError>>` are handlers too (see [`QueueBuilder::on_message`](crate::QueueBuilder)).
///
/// `Ok(())` completes the message; `Err(_)` (or a panic) fails this attempt: the message is
/// retried after a backoff, or moved to the dead-letter resource after the last attempt.
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles one claimed message.
    async fn on_message(&self, message: Message) -> Result<(), HandlerError>;
}

#[async_trait]
impl<F, Fut> MessageHandler for F
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn on_message(&self, message: Message) -> Result<(), HandlerError> {
        (self)(message).await
    }
}

/// One claimed message, as a handler sees it.
///
/// The claim is exclusive until [`Message::deadline`]: no other worker can claim the message
/// before, and this worker's completion is refused after another worker re-claimed it. A handler
/// that may outlive its visibility timeout should call [`Message::extend_visibility`]; one with
/// side effects outside the bucket should make them idempotent, keyed by [`Message::id`] (the
/// same for every attempt) — [`Message::token`] names this claim only.
#[derive(Clone)]
pub struct Message {
    pub(crate) id: String,
    pub(crate) data: Value,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) token: String,
    pub(crate) enqueued_at: DateTime<Utc>,
    pub(crate) claim: Arc<Claim>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("token", &self.token)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl Message {
    /// The message id (as `enqueue` returned it; the same for every attempt).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The payload given to `enqueue`.
    #[must_use]
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The payload, deserialized.
    ///
    /// # Errors
    /// If it does not deserialize into `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// Which attempt this is (1 for the first claim).
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether a failure of this attempt moves the message to the dead-letter resource.
    #[must_use]
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// The token of this claim: unique per attempt, written in the entry with the claim and
    /// checked by every later write of this worker.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// When the message was enqueued.
    #[must_use]
    pub fn enqueued_at(&self) -> DateTime<Utc> {
        self.enqueued_at
    }

    /// Until when the claim is exclusive (the visibility deadline).
    #[must_use]
    pub fn deadline(&self) -> DateTime<Utc> {
        self.claim.deadline()
    }

    /// Moves the visibility deadline to `by` from now, with a conditional write that checks the
    /// claim is still this one (a heartbeat for long handlers).
    ///
    /// # Errors
    /// [`s3db_core::Error::PreconditionFailed`] if the claim was lost (its deadline passed and
    /// another worker claimed the message); storage errors.
    pub async fn extend_visibility(&self, by: Duration) -> s3db_core::Result<()> {
        self.claim.extend(by).await
    }
}
