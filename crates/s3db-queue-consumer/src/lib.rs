#![doc = include_str!("../README.md")]

mod config;
pub mod driver;
mod events;
mod message;
mod stats;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use s3db_core::plugin::{Error, Plugin, PluginContext, Result, async_trait};
use tokio::sync::{oneshot, watch};

pub use crate::config::{
    ConfigError, Consumer, DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_STOP_TIMEOUT,
    MAX_BATCH_SIZE, MAX_RECEIVE_BACKOFF, QueueConsumerBuilder, RECEIVE_BACKOFF,
};
pub use crate::driver::{Delivery, DriverError, MemoryQueue, MemoryQueueBuilder, QueueDriver};
#[cfg(feature = "sqs")]
pub use crate::driver::{SqsDriver, SqsDriverBuilder};
pub use crate::events::QueueConsumerEvent;
pub use crate::message::{Action, BadMessage, QueueMessage};
pub use crate::stats::ConsumerStats;

use crate::config::Config;
use crate::stats::Counters;
use crate::worker::Worker;

/// The plugin's name (and storage slug).
pub const PLUGIN_NAME: &str = "queue-consumer";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The queue consumer plugin: while the database runs, each configured [`Consumer`] receives
/// messages from its queue and applies them to resources. Make it with
/// [`QueueConsumerPlugin::builder`]; find it again with `db.plugin::<QueueConsumerPlugin>()`.
pub struct QueueConsumerPlugin {
    config: Config,
    counters: BTreeMap<String, Arc<Counters>>,
    running: Mutex<Option<Running>>,
}

/// The loops of one start.
struct Running {
    stop: watch::Sender<bool>,
    finished: Vec<(String, oneshot::Receiver<()>)>,
}

impl std::fmt::Debug for QueueConsumerPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConsumerPlugin")
            .field("consumers", &self.config.consumers)
            .field("stop_timeout", &self.config.stop_timeout)
            .finish_non_exhaustive()
    }
}

impl QueueConsumerPlugin {
    /// A builder; add at least one [`Consumer`].
    pub fn builder() -> QueueConsumerBuilder {
        QueueConsumerBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let counters = config
            .consumers
            .iter()
            .map(|c| (c.name.clone(), Arc::new(Counters::default())))
            .collect();
        Self {
            config,
            counters,
            running: Mutex::new(None),
        }
    }

    /// The consumers' names.
    #[must_use]
    pub fn consumers(&self) -> BTreeSet<String> {
        self.counters.keys().cloned().collect()
    }

    /// What one consumer did, or `None` for an unknown name.
    #[must_use]
    pub fn stats(&self, consumer: &str) -> Option<ConsumerStats> {
        self.counters.get(consumer).map(|c| c.snapshot())
    }

    /// What every consumer did, added up.
    #[must_use]
    pub fn total_stats(&self) -> ConsumerStats {
        self.counters
            .values()
            .map(|c| c.snapshot())
            .fold(ConsumerStats::default(), ConsumerStats::plus)
    }

    /// How many consumer loops are running (each consumer has one while the plugin is started).
    #[must_use]
    pub fn running_consumers(&self) -> usize {
        self.counters
            .values()
            .map(|c| c.loops.load(Ordering::SeqCst))
            .sum::<u64>()
            .try_into()
            .unwrap_or(usize::MAX)
    }

    /// Sends `message` to the queue of the consumer `consumer` (as JSON); returns the queue's
    /// message id.
    ///
    /// # Errors
    /// [`Error::Refused`] for an unknown consumer; [`Error::Storage`] (transient) when the queue
    /// refuses or cannot be reached.
    pub async fn publish(&self, consumer: &str, message: &QueueMessage) -> Result<String> {
        let Some(c) = self.config.consumers.iter().find(|c| c.name == consumer) else {
            return Err(Error::Refused {
                operation: "queue consumer publish",
                reason: format!(
                    "no consumer named {consumer:?} (consumers: {:?})",
                    self.consumers()
                ),
            });
        };
        c.driver
            .send(&message.to_body(), &BTreeMap::new())
            .await
            .map_err(|e| Error::Storage {
                operation: "publish",
                key: c.driver.queue(),
                transient: true,
                source: Box::new(e),
            })
    }

    async fn stop_loops(&self) {
        let Some(running) = lock(&self.running).take() else {
            return;
        };
        let _ = running.stop.send(true);
        for (name, finished) in running.finished {
            if tokio::time::timeout(self.config.stop_timeout, finished)
                .await
                .is_err()
            {
                tracing::warn!(
                    consumer = %name,
                    timeout = ?self.config.stop_timeout,
                    "messages still being handled at the stop timeout are abandoned; they come back after their visibility timeout"
                );
            }
        }
    }
}

#[async_trait]
impl Plugin for QueueConsumerPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    async fn start(&self, cx: &PluginContext) -> Result<()> {
        self.stop_loops().await;
        for consumer in &self.config.consumers {
            consumer
                .driver
                .connect()
                .await
                .map_err(|e| Error::Refused {
                    operation: "queue consumer start",
                    reason: format!("consumer {:?}: {e}", consumer.name),
                })?;
        }
        let (stop, _) = watch::channel(false);
        let mut finished = Vec::new();
        for consumer in &self.config.consumers {
            let Some(counters) = self.counters.get(&consumer.name) else {
                continue;
            };
            let worker = Arc::new(Worker {
                consumer: consumer.clone(),
                cx: cx.clone(),
                counters: Arc::clone(counters),
            });
            let (done, done_rx) = oneshot::channel();
            let stop_rx = stop.subscribe();
            let running = worker.running();
            cx.spawn(async move {
                worker.run(stop_rx, running).await;
                let _ = done.send(());
            });
            finished.push((consumer.name.clone(), done_rx));
        }
        *lock(&self.running) = Some(Running { stop, finished });
        Ok(())
    }

    async fn stop(&self, _cx: &PluginContext) -> Result<()> {
        self.stop_loops().await;
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        self.stop_loops().await;
        Ok(())
    }
}
