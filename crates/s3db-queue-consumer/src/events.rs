//! The plugin's own events, broadcast as `Event::Plugin { plugin: "queue-consumer", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with
//! [`QueueConsumerEvent::from_event`](s3db_core::plugin::CustomEvent::from_event).

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

use crate::message::{Action, BadMessage};

/// What the queue consumer reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueueConsumerEvent {
    /// A message was applied to its resource (and then acknowledged, unless an
    /// [`QueueConsumerEvent::AckFailed`] follows).
    Applied {
        /// The consumer's name.
        consumer: String,
        /// The queue's message id.
        message_id: String,
        /// The resource written.
        resource: String,
        /// What was done.
        action: Action,
        /// The record's id (minted by the resource for an insert without one).
        record_id: String,
    },
    /// A message that cannot be applied: reported, not acknowledged (the queue delivers it
    /// again, and moves it to its dead-letter queue after its receive limit).
    BadMessage {
        /// The consumer's name.
        consumer: String,
        /// The queue's message id.
        message_id: String,
        /// How many times the queue has delivered it (0 if the queue does not say).
        receive_count: u32,
        /// Why it was refused.
        reason: BadMessage,
    },
    /// A well-formed message whose write failed (a storage error, an update of a record that
    /// does not exist yet …): not acknowledged, so it is tried again.
    Failed {
        /// The consumer's name.
        consumer: String,
        /// The queue's message id.
        message_id: String,
        /// How many times the queue has delivered it.
        receive_count: u32,
        /// The target resource.
        resource: String,
        /// The action.
        action: Action,
        /// The record id, when the message names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record_id: Option<String>,
        /// The error's kind (`not_found`, `storage`, … see `s3db_core::ErrorKind`).
        error_kind: String,
        /// The error.
        error: String,
    },
    /// Receiving from the queue failed; the consumer waits (backing off) and tries again.
    ReceiveFailed {
        /// The consumer's name.
        consumer: String,
        /// The driver's error.
        error: String,
    },
    /// An applied message could not be acknowledged: the queue will deliver it again.
    AckFailed {
        /// The consumer's name.
        consumer: String,
        /// The queue's message id.
        message_id: String,
        /// The driver's error.
        error: String,
    },
}

impl CustomEvent for QueueConsumerEvent {
    /// The custom event name (`queue-consumer.applied`, `queue-consumer.bad_message`,
    /// `queue-consumer.failed`, `queue-consumer.receive_failed`, `queue-consumer.ack_failed`).
    fn name(&self) -> &'static str {
        match self {
            QueueConsumerEvent::Applied { .. } => "queue-consumer.applied",
            QueueConsumerEvent::BadMessage { .. } => "queue-consumer.bad_message",
            QueueConsumerEvent::Failed { .. } => "queue-consumer.failed",
            QueueConsumerEvent::ReceiveFailed { .. } => "queue-consumer.receive_failed",
            QueueConsumerEvent::AckFailed { .. } => "queue-consumer.ack_failed",
        }
    }
}
