#![doc = include_str!("../README.md")]

mod claim;
mod config;
mod entry;
mod events;
mod handler;
mod queue;
mod worker;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use s3db_core::plugin::{Error, Plugin, PluginContext, Result, async_trait};
use serde::Serialize;
use tokio::sync::watch;

pub use crate::config::{
    ConfigError, DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF,
    DEFAULT_POLL_INTERVAL, DEFAULT_RETRY_BACKOFF, DEFAULT_STOP_TIMEOUT, DEFAULT_VISIBILITY_TIMEOUT,
    MAX_QUEUE_NAME, MIN_POLL_INTERVAL, MIN_VISIBILITY_TIMEOUT, Order, QueueBuilder,
};
pub use crate::entry::{MessageInfo, State};
pub use crate::events::{PLUGIN_NAME_PREFIX, QueueEvent};
pub use crate::handler::{HandlerError, Message, MessageHandler};

use crate::config::Config;
use crate::queue::QueueCore;

/// How many messages are in each state. Counted from the bucket (one listing of the live
/// entries with a read of each, one listing of the receipts and of the dead-letter resource):
/// exact for the moment it was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// Waiting to be claimed: visible now, waiting out a retry delay, or left by a worker whose
    /// claim expired.
    pub pending: u64,
    /// Claimed, deadline not passed.
    pub processing: u64,
    /// Completed (receipts kept under `done/`).
    pub completed: u64,
    /// Of the pending, those whose last attempt failed (waiting for a retry).
    pub failed: u64,
    /// In the dead-letter resource.
    pub dead: u64,
}

impl QueueStats {
    /// Messages not finished yet (pending + processing).
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.pending + self.processing
    }
}

/// A durable work queue stored in the bucket, as a plugin: one instance per queue, named
/// `s3-queue:<queue>`. Build it with [`S3Queue::builder`], install it with
/// `db.use_plugin(..)` (which returns it for enqueueing) or the database builder.
pub struct S3Queue {
    name: String,
    config: Config,
    core: Mutex<Option<Arc<QueueCore>>>,
    workers: Mutex<Option<Workers>>,
}

/// The running workers of this process.
struct Workers {
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl std::fmt::Debug for S3Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Queue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl S3Queue {
    /// A builder for the queue `queue` (lowercase ASCII letters, digits and inner `-`).
    #[must_use]
    pub fn builder(queue: impl Into<String>) -> QueueBuilder {
        QueueBuilder::new(queue)
    }

    pub(crate) fn from_config(config: Config) -> Self {
        Self {
            name: format!("{PLUGIN_NAME_PREFIX}{}", config.queue),
            config,
            core: Mutex::new(None),
            workers: Mutex::new(None),
        }
    }

    /// The queue's name.
    #[must_use]
    pub fn queue_name(&self) -> &str {
        &self.config.queue
    }

    /// The name of the dead-letter resource.
    #[must_use]
    pub fn dead_letter_resource(&self) -> &str {
        &self.config.dead_letter_resource
    }

    /// Whether this process's workers are running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        lock(&self.workers)
            .as_ref()
            .is_some_and(|w| !*w.done.borrow())
    }

    fn core(&self) -> Result<Arc<QueueCore>> {
        lock(&self.core).clone().ok_or_else(|| Error::Refused {
            operation: "s3 queue",
            reason: format!(
                "queue {:?} is not installed: install it with db.use_plugin(..)",
                self.config.queue
            ),
        })
    }

    /// Adds a message; returns its id. The message is durable when this returns.
    ///
    /// # Errors
    /// [`Error::Refused`] if the queue is not installed or `data` does not serialize to JSON;
    /// storage errors (then nothing was enqueued, unless the store lost only the answer).
    pub async fn enqueue(&self, data: impl Serialize) -> Result<String> {
        self.enqueue_delayed(data, Duration::ZERO).await
    }

    /// Adds a message that no worker claims before `delay` has passed.
    ///
    /// # Errors
    /// As [`S3Queue::enqueue`].
    pub async fn enqueue_delayed(&self, data: impl Serialize, delay: Duration) -> Result<String> {
        let data = serde_json::to_value(data).map_err(|e| Error::Refused {
            operation: "enqueue",
            reason: format!("the message does not serialize: {e}"),
        })?;
        self.core()?.enqueue(data, delay).await
    }

    /// Adds many messages, one after the other (so their ids are in this order); one result per
    /// message.
    pub async fn enqueue_many<T: Serialize>(&self, items: &[T]) -> Vec<Result<String>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.enqueue(item).await);
        }
        out
    }

    /// Counts the messages in each state.
    ///
    /// # Errors
    /// If the queue is not installed; storage errors.
    pub async fn stats(&self) -> Result<QueueStats> {
        self.core()?.stats().await
    }

    /// What the bucket says about one message; `None` for an unknown id.
    ///
    /// # Errors
    /// If the queue is not installed; storage errors.
    pub async fn message(&self, id: &str) -> Result<Option<MessageInfo>> {
        self.core()?.message(id).await
    }
}

#[async_trait]
impl Plugin for S3Queue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        cx.create_resource(QueueCore::dead_letter_config(
            &self.config.dead_letter_resource,
        ))
        .await?;
        *lock(&self.core) = Some(Arc::new(QueueCore::new(self.config.clone(), cx.clone())));
        Ok(())
    }

    async fn start(&self, cx: &PluginContext) -> Result<()> {
        let Some(handler) = self.config.handler.clone() else {
            return Ok(());
        };
        let core = self.core()?;
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        cx.spawn(worker::run(core, handler, stop_rx, done_tx));
        *lock(&self.workers) = Some(Workers { stop, done });
        Ok(())
    }

    async fn stop(&self, _cx: &PluginContext) -> Result<()> {
        let Some(workers) = lock(&self.workers).take() else {
            return Ok(());
        };
        let _ = workers.stop.send(true);
        let mut done = workers.done;
        // The loop waits up to `stop_timeout` for handlers; the framework aborts what is left.
        let _ = tokio::time::timeout(
            self.config.stop_timeout + Duration::from_secs(1),
            done.wait_for(|d| *d),
        )
        .await;
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        lock(&self.core).take();
        Ok(())
    }
}
