//! An in-memory queue with SQS's semantics (visibility timeout, receive counts, a dead-letter
//! list after a receive limit): for tests and for wiring a consumer inside one process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Delivery, DriverError, QueueDriver};

const KIND: &str = "memory";

/// A queue in memory. Clones share the queue: keep one to send messages and inspect it, give
/// another to a consumer.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use s3db_queue_consumer::{MemoryQueue, QueueDriver};
///
/// let queue = MemoryQueue::builder("jobs").visibility_timeout(Duration::from_secs(5)).build();
/// queue.push("hello");
/// let got = queue.receive(10).await?;
/// assert_eq!((got.len(), got[0].receive_count), (1, 1));
/// assert_eq!(queue.visible(), 0); // hidden while being handled
/// queue.ack(&got[0]).await?;
/// assert_eq!(queue.len(), 0);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("name", &self.inner.name)
            .field("len", &self.len())
            .field("dead_letters", &self.state().dead.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`MemoryQueue`].
#[derive(Debug, Clone)]
pub struct MemoryQueueBuilder {
    name: String,
    visibility_timeout: Duration,
    wait_time: Duration,
    max_receives: Option<u32>,
}

impl MemoryQueueBuilder {
    /// How long a received message stays hidden (default 30 s, as SQS).
    #[must_use]
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// How long a receive waits for a message when none is visible (default 1 s).
    #[must_use]
    pub fn wait_time(mut self, wait: Duration) -> Self {
        self.wait_time = wait;
        self
    }

    /// After this many receives a message goes to the dead-letter list instead of being
    /// delivered again (SQS's redrive policy `maxReceiveCount`). Default: never.
    #[must_use]
    pub fn max_receives(mut self, receives: u32) -> Self {
        self.max_receives = Some(receives.max(1));
        self
    }

    /// The queue.
    #[must_use]
    pub fn build(self) -> MemoryQueue {
        MemoryQueue {
            inner: Arc::new(Inner {
                name: self.name,
                visibility_timeout: self.visibility_timeout,
                wait_time: self.wait_time,
                max_receives: self.max_receives,
                state: Mutex::new(State::default()),
                arrived: Notify::new(),
                calls: Calls::default(),
            }),
        }
    }
}

/// How often each driver operation was called on a [`MemoryQueue`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryQueueCalls {
    /// `receive` calls.
    pub receives: u64,
    /// Successful `ack`s.
    pub acks: u64,
    /// `ack`s refused (stale receipt: the message was delivered again meanwhile, or is gone).
    pub stale_acks: u64,
    /// `nack`s.
    pub nacks: u64,
    /// `extend_visibility` calls.
    pub extends: u64,
    /// `send` calls and [`MemoryQueue::push`]es.
    pub sends: u64,
}

struct Inner {
    name: String,
    visibility_timeout: Duration,
    wait_time: Duration,
    max_receives: Option<u32>,
    state: Mutex<State>,
    arrived: Notify,
    calls: Calls,
}

#[derive(Default)]
struct Calls {
    receives: AtomicU64,
    acks: AtomicU64,
    stale_acks: AtomicU64,
    nacks: AtomicU64,
    extends: AtomicU64,
    sends: AtomicU64,
}

#[derive(Default)]
struct State {
    next: u64,
    /// By arrival order.
    messages: BTreeMap<u64, Entry>,
    dead: Vec<Delivery>,
}

struct Entry {
    id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    receive_count: u32,
    visible_at: Instant,
    receipt: Option<String>,
}

impl MemoryQueue {
    /// A queue with the defaults (visibility 30 s, wait 1 s, no receive limit).
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self::builder(name).build()
    }

    /// A builder.
    pub fn builder(name: impl Into<String>) -> MemoryQueueBuilder {
        MemoryQueueBuilder {
            name: name.into(),
            visibility_timeout: Duration::from_secs(30),
            wait_time: Duration::from_secs(1),
            max_receives: None,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a message with this body; returns its id.
    pub fn push(&self, body: impl Into<String>) -> String {
        self.push_with_attributes(body, BTreeMap::new())
    }

    /// Adds a message with this body and attributes; returns its id.
    pub fn push_with_attributes(
        &self,
        body: impl Into<String>,
        attributes: BTreeMap<String, String>,
    ) -> String {
        self.inner.calls.sends.fetch_add(1, Ordering::Relaxed);
        let id = {
            let mut state = self.state();
            let seq = state.next;
            state.next += 1;
            let id = format!("{}-{seq}", self.inner.name);
            state.messages.insert(
                seq,
                Entry {
                    id: id.clone(),
                    body: body.into(),
                    attributes,
                    receive_count: 0,
                    visible_at: Instant::now(),
                    receipt: None,
                },
            );
            id
        };
        self.inner.arrived.notify_waiters();
        id
    }

    /// Messages in the queue, visible or not (dead letters excluded).
    #[must_use]
    pub fn len(&self) -> usize {
        self.state().messages.len()
    }

    /// Whether the queue holds no message (dead letters excluded).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages visible now.
    #[must_use]
    pub fn visible(&self) -> usize {
        let now = Instant::now();
        self.state()
            .messages
            .values()
            .filter(|e| e.visible_at <= now)
            .count()
    }

    /// The bodies of the messages in the queue, in arrival order.
    #[must_use]
    pub fn bodies(&self) -> Vec<String> {
        self.state()
            .messages
            .values()
            .map(|e| e.body.clone())
            .collect()
    }

    /// Messages moved aside after [`MemoryQueueBuilder::max_receives`] receives.
    #[must_use]
    pub fn dead_letters(&self) -> Vec<Delivery> {
        self.state().dead.clone()
    }

    /// How often each operation was called.
    #[must_use]
    pub fn calls(&self) -> MemoryQueueCalls {
        let c = &self.inner.calls;
        MemoryQueueCalls {
            receives: c.receives.load(Ordering::Relaxed),
            acks: c.acks.load(Ordering::Relaxed),
            stale_acks: c.stale_acks.load(Ordering::Relaxed),
            nacks: c.nacks.load(Ordering::Relaxed),
            extends: c.extends.load(Ordering::Relaxed),
            sends: c.sends.load(Ordering::Relaxed),
        }
    }

    /// Takes up to `max` visible messages; the time the next hidden one becomes visible.
    fn take_visible(&self, max: usize) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let mut state = self.state();
        let mut taken = Vec::new();
        let mut dead = Vec::new();
        let mut next_visible: Option<Instant> = None;
        for (seq, entry) in &mut state.messages {
            if entry.visible_at > now {
                next_visible =
                    Some(next_visible.map_or(entry.visible_at, |t| t.min(entry.visible_at)));
                continue;
            }
            if taken.len() >= max {
                continue;
            }
            if self
                .inner
                .max_receives
                .is_some_and(|limit| entry.receive_count >= limit)
            {
                dead.push(*seq);
                continue;
            }
            entry.receive_count += 1;
            entry.visible_at = now + self.inner.visibility_timeout;
            let receipt = format!("{}#{}", entry.id, entry.receive_count);
            entry.receipt = Some(receipt.clone());
            taken.push(Delivery {
                id: entry.id.clone(),
                body: entry.body.clone(),
                attributes: entry.attributes.clone(),
                receive_count: entry.receive_count,
                receipt,
            });
        }
        for seq in dead {
            if let Some(entry) = state.messages.remove(&seq) {
                state.dead.push(Delivery {
                    id: entry.id,
                    body: entry.body,
                    attributes: entry.attributes,
                    receive_count: entry.receive_count,
                    receipt: String::new(),
                });
            }
        }
        (taken, next_visible)
    }

    /// Runs `change` on the entry whose current receipt is the delivery's.
    fn with_current<T>(
        &self,
        delivery: &Delivery,
        operation: &'static str,
        change: impl FnOnce(&mut State, u64) -> T,
    ) -> Result<T, DriverError> {
        let mut state = self.state();
        let seq = state
            .messages
            .iter()
            .find(|(_, e)| e.receipt.as_deref() == Some(delivery.receipt.as_str()))
            .map(|(seq, _)| *seq);
        match seq {
            Some(seq) => Ok(change(&mut state, seq)),
            None => Err(DriverError::new(
                KIND,
                operation,
                format!(
                    "message {} has no delivery with receipt {:?} (delivered again since, or gone)",
                    delivery.id, delivery.receipt
                ),
            )),
        }
    }
}

#[async_trait]
impl QueueDriver for MemoryQueue {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn queue(&self) -> String {
        self.inner.name.clone()
    }

    fn visibility_timeout(&self) -> Duration {
        self.inner.visibility_timeout
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, DriverError> {
        self.inner.calls.receives.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.inner.wait_time;
        loop {
            // Register for arrivals before looking, so a push in between is not missed.
            let arrived = self.inner.arrived.notified();
            let (taken, next_visible) = self.take_visible(max.clamp(1, 10));
            if !taken.is_empty() {
                return Ok(taken);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                () = arrived => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), DriverError> {
        let done = self.with_current(delivery, "ack", |state, seq| {
            state.messages.remove(&seq);
        });
        let counter = if done.is_ok() {
            &self.inner.calls.acks
        } else {
            &self.inner.calls.stale_acks
        };
        counter.fetch_add(1, Ordering::Relaxed);
        done
    }

    async fn nack(
        &self,
        delivery: &Delivery,
        retry_after: Option<Duration>,
    ) -> Result<(), DriverError> {
        self.inner.calls.nacks.fetch_add(1, Ordering::Relaxed);
        if let Some(delay) = retry_after {
            self.with_current(delivery, "nack", |state, seq| {
                if let Some(entry) = state.messages.get_mut(&seq) {
                    entry.visible_at = Instant::now() + delay;
                }
            })?;
            self.inner.arrived.notify_waiters();
        }
        Ok(())
    }

    async fn extend_visibility(
        &self,
        delivery: &Delivery,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        self.inner.calls.extends.fetch_add(1, Ordering::Relaxed);
        self.with_current(delivery, "extend", |state, seq| {
            if let Some(entry) = state.messages.get_mut(&seq) {
                entry.visible_at = Instant::now() + timeout;
            }
        })
    }

    async fn send(
        &self,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, DriverError> {
        Ok(self.push_with_attributes(body, attributes.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), DriverError>;

    #[tokio::test]
    async fn hides_redelivers_and_dead_letters() -> TestResult {
        let q = MemoryQueue::builder("q")
            .visibility_timeout(Duration::from_millis(80))
            .wait_time(Duration::from_millis(10))
            .max_receives(2)
            .build();
        q.push("a");
        let first = q.receive(10).await?;
        assert_eq!(first.len(), 1);
        assert!(q.receive(10).await?.is_empty(), "hidden while in flight");
        // Not acknowledged: back after the visibility timeout, receive count 2.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = q.receive(10).await?;
        assert_eq!(second[0].receive_count, 2);
        // The old receipt no longer acknowledges.
        assert!(q.ack(&first[0]).await.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Third receive exceeds the limit: dead-lettered, not delivered.
        assert!(q.receive(10).await?.is_empty());
        assert_eq!(q.dead_letters().len(), 1);
        assert!(q.is_empty());
        assert_eq!(q.calls().stale_acks, 1);
        Ok(())
    }

    #[tokio::test]
    async fn batches_nacks_and_extensions() -> TestResult {
        let q = MemoryQueue::builder("q")
            .visibility_timeout(Duration::from_millis(100))
            .wait_time(Duration::from_millis(200))
            .build();
        for i in 0..12 {
            q.push(format!("m{i}"));
        }
        let batch = q.receive(50).await?;
        assert_eq!(batch.len(), 10, "at most 10 per receive");
        q.nack(&batch[0], Some(Duration::ZERO)).await?;
        assert_eq!(q.visible(), 3);
        q.extend_visibility(&batch[1], Duration::from_secs(5))
            .await?;
        tokio::time::sleep(Duration::from_millis(130)).await;
        // Every other message of the batch is visible again; the extended one is not.
        assert_eq!(q.visible(), 11);
        q.ack(&batch[1]).await?;
        assert_eq!(q.len(), 11);
        // Long polling: a receive waiting on an empty queue returns when a message arrives.
        let empty = MemoryQueue::builder("e")
            .wait_time(Duration::from_secs(5))
            .build();
        let pusher = empty.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            pusher.push("late");
        });
        let got = empty.receive(1).await?;
        assert_eq!(got.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(2));
        Ok(())
    }
}
