//! Helpers shared by the queue consumer tests.
#![allow(dead_code)]

#[cfg(feature = "sqs")]
pub mod sqs;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use s3db_core::plugin::{CustomEvent, Event, InsertOp, ResourceHooks, UpdateOp, async_trait};
use s3db_core::{ConnectionString, Database, Resource, ResourceConfig};
use s3db_queue_consumer::{Delivery, DriverError, QueueConsumerEvent, QueueDriver};
use tokio::sync::broadcast;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Users: a required name, an optional age.
pub fn users() -> ResourceConfig {
    ResourceConfig::new("users")
        .attribute("name", "string|required")
        .attribute("age", "integer")
        .paranoid(false)
}

/// A fresh in-memory database with `users` and `orders`.
pub async fn memory_db(test: &str) -> Result<(Database, Resource), s3db_core::Error> {
    let conn = ConnectionString::memory(
        "queue-consumer-tests",
        &s3db_core::testing::unique_prefix(test),
    )?;
    let db = Database::builder().connection(conn).connect().await?;
    let users = db.create_resource(users()).await?;
    db.create_resource(ResourceConfig::new("orders").attribute("total", "number|required"))
        .await?;
    Ok((db, users))
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The queue consumer events received so far.
pub fn drain_events(events: &mut broadcast::Receiver<Event>) -> Vec<QueueConsumerEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Some(e) = QueueConsumerEvent::from_event(&event) {
            out.push(e);
        }
    }
    out
}

/// Collects events in the background (a broadcast receiver would lag on long tests).
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<QueueConsumerEvent>>>);

impl EventLog {
    pub fn start(db: &Database) -> Self {
        let log = Self::default();
        let mut events = db.subscribe();
        let sink = log.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Some(e) = QueueConsumerEvent::from_event(&event) {
                            sink.0.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        log
    }

    pub fn all(&self) -> Vec<QueueConsumerEvent> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Hooks that make inserts and updates slow and measure how many run at once.
#[derive(Clone, Default)]
pub struct Slow {
    pub delay: Duration,
    pub now: Arc<AtomicUsize>,
    pub max: Arc<AtomicUsize>,
    pub calls: Arc<AtomicU64>,
}

impl Slow {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    async fn run(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn max_at_once(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ResourceHooks for Slow {
    async fn before_insert(&self, _resource: &str, _op: &mut InsertOp) -> s3db_core::Result<()> {
        self.run().await;
        Ok(())
    }

    async fn before_update(&self, _resource: &str, _op: &mut UpdateOp) -> s3db_core::Result<()> {
        self.run().await;
        Ok(())
    }
}

/// A driver decorator: records the sizes asked for and returned by `receive`, and fails the
/// first `fail_receives` receives and every ack while `fail_acks` is set.
pub struct Recording<D> {
    pub inner: D,
    pub asked: Arc<Mutex<Vec<usize>>>,
    pub returned: Arc<Mutex<Vec<usize>>>,
    pub fail_receives: Arc<AtomicU64>,
    pub fail_acks: Arc<std::sync::atomic::AtomicBool>,
}

impl<D> Recording<D> {
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            asked: Arc::default(),
            returned: Arc::default(),
            fail_receives: Arc::default(),
            fail_acks: Arc::default(),
        }
    }

    /// A handle sharing the records (the driver itself goes into the consumer).
    pub fn probe(&self) -> Probe {
        Probe {
            asked: Arc::clone(&self.asked),
            returned: Arc::clone(&self.returned),
        }
    }
}

#[derive(Clone)]
pub struct Probe {
    pub asked: Arc<Mutex<Vec<usize>>>,
    pub returned: Arc<Mutex<Vec<usize>>>,
}

impl Probe {
    pub fn asked(&self) -> Vec<usize> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn returned(&self) -> Vec<usize> {
        self.returned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl<D: QueueDriver> QueueDriver for Recording<D> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn queue(&self) -> String {
        self.inner.queue()
    }
    fn visibility_timeout(&self) -> Duration {
        self.inner.visibility_timeout()
    }
    async fn connect(&self) -> Result<(), DriverError> {
        self.inner.connect().await
    }
    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, DriverError> {
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(max);
        let failing = self
            .fail_receives
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(DriverError::new(
                "test",
                "receive",
                "injected receive failure",
            ));
        }
        let got = self.inner.receive(max).await?;
        self.returned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(got.len());
        Ok(got)
    }
    async fn ack(&self, delivery: &Delivery) -> Result<(), DriverError> {
        if self.fail_acks.load(Ordering::SeqCst) {
            return Err(DriverError::new("test", "ack", "injected ack failure"));
        }
        self.inner.ack(delivery).await
    }
    async fn nack(
        &self,
        delivery: &Delivery,
        retry_after: Option<Duration>,
    ) -> Result<(), DriverError> {
        self.inner.nack(delivery, retry_after).await
    }
    async fn extend_visibility(
        &self,
        delivery: &Delivery,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        self.inner.extend_visibility(delivery, timeout).await
    }
    async fn send(
        &self,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, DriverError> {
        self.inner.send(body, attributes).await
    }
}
