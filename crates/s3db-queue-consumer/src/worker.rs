//! One consumer's loop: receive as many messages as there are free slots, handle each in its own
//! task (visibility extended while it runs), acknowledge what was applied, report the rest.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use s3db_core::plugin::{Error, ErrorKind, PluginContext};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{Consumer, MAX_RECEIVE_BACKOFF, RECEIVE_BACKOFF};
use crate::driver::Delivery;
use crate::events::QueueConsumerEvent;
use crate::message::{self, Action, BadMessage, Command};
use crate::stats::{Counters, Gauge, bump};

/// Why a message was not applied.
enum Problem {
    Bad(BadMessage),
    Failed { command: Command, error: Error },
}

pub(crate) struct Worker {
    pub(crate) consumer: Consumer,
    pub(crate) cx: PluginContext,
    pub(crate) counters: Arc<Counters>,
}

/// Resolves when `stop` turns true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Sleeps `pause`, or less if stopped; returns whether it was stopped.
async fn pause_or_stop(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        () = stopped(stop) => true,
        () = tokio::time::sleep(pause) => false,
    }
}

impl Worker {
    fn emit(&self, event: &QueueConsumerEvent) {
        self.cx.emit_event(event);
    }

    /// Counts the loop as running until the returned gauge is dropped (taken before the loop's
    /// task is spawned, so a started plugin reports its consumers at once).
    pub(crate) fn running(&self) -> Gauge {
        Gauge::up(&self.counters, |c| &c.loops)
    }

    /// Runs until `stop`; then waits for the messages being handled. Dropping the future (an
    /// aborted task) aborts them too.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>, running: Gauge) {
        let _running = running;
        let consumer = &self.consumer;
        let driver = Arc::clone(&consumer.driver);
        let slots = Arc::new(Semaphore::new(consumer.concurrency));
        let mut handlers = JoinSet::new();
        let mut backoff = RECEIVE_BACKOFF;
        tracing::info!(
            consumer = %consumer.name,
            driver = driver.kind(),
            queue = %driver.queue(),
            concurrency = consumer.concurrency,
            "queue consumer started"
        );
        loop {
            while handlers.try_join_next().is_some() {}
            let first = tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let mut permits = vec![first];
            while permits.len() < consumer.batch_size {
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            let received = tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                received = driver.receive(permits.len()) => received,
            };
            match received {
                Err(error) => {
                    drop(permits);
                    bump(&self.counters.receive_errors);
                    tracing::warn!(consumer = %consumer.name, %error, retry_in = ?backoff, "receive failed");
                    self.emit(&QueueConsumerEvent::ReceiveFailed {
                        consumer: consumer.name.clone(),
                        error: error.to_string(),
                    });
                    if pause_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_RECEIVE_BACKOFF);
                }
                Ok(deliveries) => {
                    backoff = RECEIVE_BACKOFF;
                    if deliveries.is_empty() {
                        drop(permits);
                        if !consumer.poll_interval.is_zero()
                            && pause_or_stop(&mut stop, consumer.poll_interval).await
                        {
                            break;
                        }
                        continue;
                    }
                    tracing::debug!(consumer = %consumer.name, messages = deliveries.len(), "received");
                    let mut permits = permits.into_iter();
                    for delivery in deliveries {
                        // A driver returning more than asked: handle the extra ones too.
                        let permit = permits.next();
                        let worker = Arc::clone(&self);
                        handlers.spawn(async move {
                            worker.handle(delivery).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
        if !handlers.is_empty() {
            tracing::info!(consumer = %consumer.name, in_flight = handlers.len(), "stopping: finishing messages being handled");
        }
        while handlers.join_next().await.is_some() {}
        tracing::info!(consumer = %consumer.name, "queue consumer stopped");
    }

    async fn handle(&self, delivery: Delivery) {
        let span = tracing::info_span!(
            "queue_message",
            consumer = %self.consumer.name,
            message_id = %delivery.id,
            receive_count = delivery.receive_count,
        );
        self.handle_in_span(&delivery).instrument(span).await;
    }

    async fn handle_in_span(&self, delivery: &Delivery) {
        bump(&self.counters.received);
        let _in_flight = Gauge::up(&self.counters, |c| &c.in_flight);
        let consumer = &self.consumer;
        let driver = &consumer.driver;
        let outcome = if consumer.extend_visibility {
            self.with_heartbeat(delivery, self.apply(delivery)).await
        } else {
            self.apply(delivery).await
        };
        match outcome {
            Ok((command, record_id)) => {
                bump(&self.counters.applied);
                tracing::debug!(resource = %command.resource, action = %command.action, record_id, "applied");
                let acked = driver.ack(delivery).await;
                self.emit(&QueueConsumerEvent::Applied {
                    consumer: consumer.name.clone(),
                    message_id: delivery.id.clone(),
                    resource: command.resource,
                    action: command.action,
                    record_id,
                });
                if let Err(error) = acked {
                    bump(&self.counters.ack_errors);
                    tracing::warn!(%error, "applied, but the acknowledgement failed: it will be delivered again");
                    self.emit(&QueueConsumerEvent::AckFailed {
                        consumer: consumer.name.clone(),
                        message_id: delivery.id.clone(),
                        error: error.to_string(),
                    });
                }
            }
            Err(Problem::Bad(reason)) => {
                bump(&self.counters.bad);
                tracing::warn!(%reason, "bad message: not acknowledged");
                self.emit(&QueueConsumerEvent::BadMessage {
                    consumer: consumer.name.clone(),
                    message_id: delivery.id.clone(),
                    receive_count: delivery.receive_count,
                    reason,
                });
                if let Err(error) = driver.nack(delivery, None).await {
                    tracing::warn!(%error, "giving the bad message back failed");
                }
            }
            Err(Problem::Failed { command, error }) => {
                bump(&self.counters.failed);
                tracing::warn!(resource = %command.resource, action = %command.action, %error, "message failed: left for redelivery");
                self.emit(&QueueConsumerEvent::Failed {
                    consumer: consumer.name.clone(),
                    message_id: delivery.id.clone(),
                    receive_count: delivery.receive_count,
                    resource: command.resource,
                    action: command.action,
                    record_id: command.id,
                    error_kind: error.kind().as_str().to_owned(),
                    error: error.to_string(),
                });
                if let Err(error) = driver.nack(delivery, consumer.retry_delay).await {
                    tracing::warn!(%error, "giving the failed message back failed");
                }
            }
        }
    }

    /// Runs `work`, extending the message's visibility every half timeout until it is done.
    async fn with_heartbeat<T>(&self, delivery: &Delivery, work: impl Future<Output = T>) -> T {
        tokio::select! {
            out = work => out,
            never = self.heartbeat(delivery) => match never {},
        }
    }

    /// Extends a message's visibility every half timeout, forever.
    async fn heartbeat(&self, delivery: &Delivery) -> Infallible {
        let driver = &self.consumer.driver;
        let timeout = driver.visibility_timeout();
        loop {
            tokio::time::sleep(timeout / 2).await;
            match driver.extend_visibility(delivery, timeout).await {
                Ok(()) => {
                    bump(&self.counters.extensions);
                    tracing::debug!(by = ?timeout, "visibility extended");
                }
                Err(error) => {
                    bump(&self.counters.extension_errors);
                    tracing::warn!(%error, "visibility extension failed");
                }
            }
        }
    }

    /// Parses and applies one message; returns the command and the record id.
    async fn apply(&self, delivery: &Delivery) -> Result<(Command, String), Problem> {
        let command = message::parse(&delivery.body, &delivery.attributes).map_err(Problem::Bad)?;
        if !self.consumer.allows(&command.resource) {
            return Err(Problem::Bad(BadMessage::ResourceNotAllowed {
                resource: command.resource,
            }));
        }
        let db = match self.cx.database() {
            Ok(db) => db,
            Err(error) => return Err(Problem::Failed { command, error }),
        };
        let Some(resource) = db.resource(&command.resource) else {
            return Err(Problem::Bad(BadMessage::UnknownResource {
                resource: command.resource,
            }));
        };
        let data = Value::Object(command.data.clone());
        let id = command.id.clone().unwrap_or_default();
        let result = match command.action {
            Action::Insert => resource.insert(data).await.map(|r| r.id().to_owned()),
            Action::Update => resource.update(&id, data).await.map(|r| r.id().to_owned()),
            Action::Delete => resource.delete(&id).await.map(|()| id),
        };
        match result {
            Ok(record_id) => Ok((command, record_id)),
            Err(error) if is_bad_data(&error) => Err(Problem::Bad(BadMessage::InvalidData {
                error: error.to_string(),
            })),
            Err(error) => Err(Problem::Failed { command, error }),
        }
    }
}

/// Errors that say the message's data can never be written as given.
fn is_bad_data(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Validation
            | ErrorKind::BadKey
            | ErrorKind::BadMetadata
            | ErrorKind::MetadataLimit
    )
}
