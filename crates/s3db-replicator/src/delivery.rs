//! Delivery to one target: a concurrency limit, a timeout per attempt, retries with exponential
//! backoff, one-time preparation per source resource, and the target's statistics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use s3db_core::plugin::Resource;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::change::Change;
use crate::config::{MAX_BACKOFF, Replicator};
use crate::rule::ResourceRule;
use crate::target::{ReplicationError, SourceResource, Target};

/// What one target did since the plugin was installed (in this process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStats {
    /// Changes delivered (by writes, `sync_all` and `retry_failed`).
    pub replicated: u64,
    /// Changes that still failed after their retries.
    pub failed: u64,
    /// Retry attempts made (not counting first attempts).
    pub retried: u64,
    /// Failures written to the log.
    pub logged: u64,
    /// Logged failures this process resolved with `retry_failed`.
    pub resolved: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) replicated: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) logged: AtomicU64,
    pub(crate) resolved: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TargetStats {
        TargetStats {
            replicated: self.replicated.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            logged: self.logged.load(Ordering::Relaxed),
            resolved: self.resolved.load(Ordering::Relaxed),
        }
    }
}

/// A delivery that failed for good.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: ReplicationError,
    pub(crate) attempts: u32,
}

/// One replicator at run time.
pub(crate) struct Lane {
    pub(crate) name: String,
    pub(crate) target: Arc<dyn Target>,
    pub(crate) rules: BTreeMap<String, ResourceRule>,
    max_retries: u32,
    backoff: Duration,
    timeout: Duration,
    pub(crate) concurrency: usize,
    permits: Semaphore,
    prepared: tokio::sync::Mutex<BTreeSet<String>>,
    pub(crate) counters: Counters,
}

impl Lane {
    pub(crate) fn new(r: &Replicator) -> Self {
        Self {
            name: r.name.clone(),
            target: Arc::clone(&r.target),
            rules: r
                .rules
                .iter()
                .map(|rule| (rule.source().to_owned(), rule.clone()))
                .collect(),
            max_retries: r.max_retries,
            backoff: r.backoff,
            timeout: r.timeout,
            concurrency: r.concurrency,
            permits: Semaphore::new(r.concurrency),
            prepared: tokio::sync::Mutex::new(BTreeSet::new()),
            counters: Counters::default(),
        }
    }

    pub(crate) fn stats(&self) -> TargetStats {
        self.counters.snapshot()
    }

    /// Forgets which resources were prepared (the target was closed).
    pub(crate) async fn reset(&self) {
        self.prepared.lock().await.clear();
    }

    /// The pause before retry number `retry` (1-based).
    fn pause(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }

    /// One attempt: prepare the source resource (once), then send; both under the timeout and
    /// a permit.
    async fn attempt(
        &self,
        change: &Change,
        source: Option<&Resource>,
    ) -> Result<(), ReplicationError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ReplicationError::Rejected("the replicator is closed".to_owned()))?;
        let work = async {
            if let (Some(source), Some(rule)) = (source, self.rules.get(&change.source_resource)) {
                let mut prepared = self.prepared.lock().await;
                if !prepared.contains(source.name()) {
                    let info = SourceResource {
                        name: source.name().to_owned(),
                        target_name: rule.target_name().to_owned(),
                        definition: source.definition(),
                        secrets: rule.secrets,
                        transformed: rule.transform.is_some(),
                    };
                    self.target.prepare(&info).await?;
                    prepared.insert(source.name().to_owned());
                }
            }
            self.target.send(change).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ReplicationError::Timeout(self.timeout)),
        }
    }

    /// Delivers `change`, retrying transient failures; returns the attempts made.
    pub(crate) async fn deliver(
        &self,
        change: &Change,
        source: Option<&Resource>,
    ) -> Result<u32, Failure> {
        let span = tracing::debug_span!(
            "replicate",
            replicator = %self.name,
            target = self.target.kind(),
            resource = %change.resource,
            action = change.action.as_str(),
            id = %change.id
        );
        async {
            let mut attempts = 0;
            loop {
                if attempts > 0 {
                    Counters::bump(&self.counters.retried);
                    tokio::time::sleep(self.pause(attempts)).await;
                }
                attempts += 1;
                match self.attempt(change, source).await {
                    Ok(()) => return Ok(attempts),
                    Err(error) => {
                        let retry = error.is_transient() && attempts <= self.max_retries;
                        tracing::debug!(attempt = attempts, error = %error, retry, "replicator: delivery failed");
                        if !retry {
                            return Err(Failure { error, attempts });
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::WebhookTarget;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let lane = Lane::new(
            &Replicator::new("r", WebhookTarget::new("http://127.0.0.1:9/"))
                .resource("users")
                .backoff(Duration::from_millis(100)),
        );
        assert_eq!(lane.pause(1), Duration::from_millis(100));
        assert_eq!(lane.pause(2), Duration::from_millis(200));
        assert_eq!(lane.pause(4), Duration::from_millis(800));
        assert_eq!(lane.pause(40), MAX_BACKOFF);
    }
}
