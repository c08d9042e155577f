//! The queue's own events, broadcast as `Event::Plugin { plugin: "s3-queue:<queue>", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with [`QueueEvent::from_event`].

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

/// Prefix of the plugin names of queues: `s3-queue:<queue>`.
pub const PLUGIN_NAME_PREFIX: &str = "s3-queue:";

/// What a queue reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueueEvent {
    /// A message was enqueued.
    Enqueued {
        /// The queue.
        queue: String,
        /// The message.
        id: String,
    },
    /// This process claimed a message.
    Claimed {
        /// The queue.
        queue: String,
        /// The message.
        id: String,
        /// Which attempt (1 for the first).
        attempt: u32,
        /// The claim's token.
        token: String,
    },
    /// A message's completion was committed.
    Completed {
        /// The queue.
        queue: String,
        /// The message.
        id: String,
        /// The attempt that completed it.
        attempt: u32,
    },
    /// An attempt failed; the message is pending again after `delay_ms`.
    Retrying {
        /// The queue.
        queue: String,
        /// The message.
        id: String,
        /// The attempt that failed.
        attempt: u32,
        /// The handler's error.
        error: String,
        /// The retry delay, in milliseconds.
        delay_ms: u64,
    },
    /// A message failed its last attempt and went to the dead-letter resource.
    Dead {
        /// The queue.
        queue: String,
        /// The message.
        id: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// This process's claim was lost (its deadline passed and another worker claimed the
    /// message): its outcome was not written.
    ClaimLost {
        /// The queue.
        queue: String,
        /// The message.
        id: String,
        /// The lost claim's token.
        token: String,
    },
}

impl CustomEvent for QueueEvent {
    /// The custom event name (`s3queue.enqueued`, …).
    fn name(&self) -> &'static str {
        match self {
            QueueEvent::Enqueued { .. } => "s3queue.enqueued",
            QueueEvent::Claimed { .. } => "s3queue.claimed",
            QueueEvent::Completed { .. } => "s3queue.completed",
            QueueEvent::Retrying { .. } => "s3queue.retrying",
            QueueEvent::Dead { .. } => "s3queue.dead",
            QueueEvent::ClaimLost { .. } => "s3queue.claim_lost",
        }
    }
}
