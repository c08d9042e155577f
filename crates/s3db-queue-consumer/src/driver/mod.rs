//! Queue drivers: where messages come from. [`QueueDriver`] is the seam: the `sqs` driver
//! ([`SqsDriver`], feature `sqs`) and the in-memory [`MemoryQueue`] implement it, and so can a
//! driver of your own (RabbitMQ, Redis streams …).

mod memory;
#[cfg(feature = "sqs")]
mod sqs;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::{MemoryQueue, MemoryQueueBuilder, MemoryQueueCalls};
#[cfg(feature = "sqs")]
pub use self::sqs::{
    DEFAULT_REGION, DEFAULT_VISIBILITY_TIMEOUT, DEFAULT_WAIT_TIME, MAX_WAIT_TIME, SqsDriver,
    SqsDriverBuilder,
};

/// One received message, with what the driver needs to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue's id of the message.
    pub id: String,
    /// The message body.
    pub body: String,
    /// String message attributes (SQS message attributes, AMQP headers).
    pub attributes: BTreeMap<String, String>,
    /// How many times the queue has delivered this message, this time included (1 on the first
    /// delivery; 0 when the queue does not say).
    pub receive_count: u32,
    /// The driver's handle for acknowledging this delivery (an SQS receipt handle).
    pub receipt: String,
}

/// A driver failure (network, permissions, a missing queue). The consumer reports it and keeps
/// going.
#[derive(Debug, thiserror::Error)]
#[error("{driver} {operation} failed: {message}")]
pub struct DriverError {
    /// The driver (`sqs`, `memory`).
    pub driver: &'static str,
    /// What was being done (`receive`, `ack`, `nack`, `extend`, `send`, `connect`).
    pub operation: &'static str,
    /// What went wrong.
    pub message: String,
}

impl DriverError {
    /// A driver error.
    pub fn new(driver: &'static str, operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            driver,
            operation,
            message: message.into(),
        }
    }
}

/// Where a consumer gets its messages. Object-safe: consumers hold `Arc<dyn QueueDriver>`.
///
/// The contract, as SQS does it: a received message is hidden from other receivers for
/// [`QueueDriver::visibility_timeout`]; [`QueueDriver::ack`] removes it for good; a message not
/// acknowledged becomes visible again when its visibility runs out (or at once, or after a delay,
/// with [`QueueDriver::nack`]); [`QueueDriver::extend_visibility`] hides it longer while a slow
/// handler runs.
#[async_trait]
pub trait QueueDriver: Send + Sync + 'static {
    /// The driver's kind (`sqs`, `memory`).
    fn kind(&self) -> &'static str;

    /// The queue, for logs and events (a URL or a name; never credentials).
    fn queue(&self) -> String;

    /// How long a received message stays hidden. The consumer extends it every half of this
    /// while a message is being handled.
    fn visibility_timeout(&self) -> Duration;

    /// Prepares the driver (clients, connections); called when the plugin starts.
    ///
    /// # Errors
    /// When the driver cannot be set up; the plugin's start fails with it.
    async fn connect(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Receives up to `max` (1..=10) messages, waiting (long polling) up to the driver's wait time
    /// when none is there. May return none. Dropping the future abandons the receive: messages the
    /// queue handed out meanwhile come back after their visibility timeout.
    ///
    /// # Errors
    /// Network or queue failures.
    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, DriverError>;

    /// Removes a handled message from the queue.
    ///
    /// # Errors
    /// Network or queue failures (the message comes back later).
    async fn ack(&self, delivery: &Delivery) -> Result<(), DriverError>;

    /// Gives a message back: `None` leaves it hidden until its visibility timeout runs out (SQS's
    /// own redelivery); `Some(delay)` makes it visible again after `delay` (zero: at once).
    ///
    /// # Errors
    /// Network or queue failures.
    async fn nack(
        &self,
        delivery: &Delivery,
        retry_after: Option<Duration>,
    ) -> Result<(), DriverError>;

    /// Hides a message being handled for `timeout` more, counted from now.
    ///
    /// # Errors
    /// Network or queue failures.
    async fn extend_visibility(
        &self,
        delivery: &Delivery,
        timeout: Duration,
    ) -> Result<(), DriverError>;

    /// Sends a message (body and string attributes); returns its id.
    ///
    /// # Errors
    /// Network or queue failures.
    async fn send(
        &self,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, DriverError>;
}
