//! Per-consumer counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// What one consumer did since the plugin was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerStats {
    /// Messages received (each delivery counts: a redelivered message counts again).
    pub received: u64,
    /// Messages applied to their resource.
    pub applied: u64,
    /// Bad messages reported (see [`crate::BadMessage`]).
    pub bad: u64,
    /// Well-formed messages whose write failed.
    pub failed: u64,
    /// Failed receives.
    pub receive_errors: u64,
    /// Applied messages whose acknowledgement failed.
    pub ack_errors: u64,
    /// Visibility extensions made for messages being handled.
    pub extensions: u64,
    /// Visibility extensions that failed.
    pub extension_errors: u64,
    /// Messages being handled now.
    pub in_flight: u64,
}

impl ConsumerStats {
    /// Field-wise sum.
    #[must_use]
    pub fn plus(self, o: ConsumerStats) -> ConsumerStats {
        ConsumerStats {
            received: self.received + o.received,
            applied: self.applied + o.applied,
            bad: self.bad + o.bad,
            failed: self.failed + o.failed,
            receive_errors: self.receive_errors + o.receive_errors,
            ack_errors: self.ack_errors + o.ack_errors,
            extensions: self.extensions + o.extensions,
            extension_errors: self.extension_errors + o.extension_errors,
            in_flight: self.in_flight + o.in_flight,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) applied: AtomicU64,
    pub(crate) bad: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) receive_errors: AtomicU64,
    pub(crate) ack_errors: AtomicU64,
    pub(crate) extensions: AtomicU64,
    pub(crate) extension_errors: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    /// Consumer loops running (0 or 1).
    pub(crate) loops: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ConsumerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConsumerStats {
            received: get(&self.received),
            applied: get(&self.applied),
            bad: get(&self.bad),
            failed: get(&self.failed),
            receive_errors: get(&self.receive_errors),
            ack_errors: get(&self.ack_errors),
            extensions: get(&self.extensions),
            extension_errors: get(&self.extension_errors),
            in_flight: get(&self.in_flight),
        }
    }
}

/// Decrements a gauge when dropped (also when its task is aborted).
pub(crate) struct Gauge {
    counters: Arc<Counters>,
    which: fn(&Counters) -> &AtomicU64,
}

impl Gauge {
    pub(crate) fn up(counters: &Arc<Counters>, which: fn(&Counters) -> &AtomicU64) -> Self {
        which(counters).fetch_add(1, Ordering::SeqCst);
        Self {
            counters: Arc::clone(counters),
            which,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.which)(&self.counters).fetch_sub(1, Ordering::SeqCst);
    }
}
