#![doc = include_str!("../README.md")]

mod change;
mod config;
mod delivery;
mod events;
mod hooks;
mod log;
mod rule;
mod target;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::Utc;
use futures::StreamExt as _;
use s3db_core::Page;
use s3db_core::plugin::{
    Database, Document, Error, Plugin, PluginContext, Resource, Result, async_trait,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

pub use crate::change::{Action, Change};
pub use crate::config::{
    ConfigError, DEFAULT_BACKOFF, DEFAULT_CLAIM_TTL, DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES,
    DEFAULT_SYNC_PAGE_SIZE, DEFAULT_TIMEOUT, MAX_BACKOFF, Replicator, ReplicatorBuilder,
};
pub use crate::delivery::TargetStats;
pub use crate::events::ReplicatorEvent;
pub use crate::log::{BY_STATUS, LOGS_RESOURCE, LogEntry, LogStatus};
pub use crate::rule::{Filter, ResourceRule, SecretPolicy, Transform};
#[cfg(feature = "sqs")]
pub use crate::target::SqsTarget;
#[cfg(feature = "sql")]
pub use crate::target::{DEFAULT_BUSY_TIMEOUT, SqlTarget};
pub use crate::target::{ReplicationError, S3dbTarget, SourceResource, Target, WebhookTarget};

use crate::config::Config;
use crate::delivery::{Counters, Lane};
use crate::hooks::ReplicateHooks;
use crate::log::Claim;

/// The plugin's name (and storage slug).
pub const PLUGIN_NAME: &str = "replicator";

/// Log entries replayed at once by [`ReplicatorPlugin::retry_failed`].
const REPLAY_CONCURRENCY: usize = 8;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`ReplicatorPlugin::retry_failed`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryReport {
    /// Entries this call delivered and marked resolved.
    pub resolved: u64,
    /// Entries this call replayed that failed again (back to `failed`).
    pub failed: u64,
    /// Entries it left alone: claimed by another process, or resolved meanwhile.
    pub skipped: u64,
}

/// What [`ReplicatorPlugin::sync_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Records read.
    pub records: u64,
    /// Deliveries made (one per record and replicator that sends it).
    pub replicated: u64,
    /// Deliveries that failed (logged, when the log is on).
    pub failed: u64,
    /// Record and replicator pairs skipped by a filter, a transform or the actions.
    pub skipped: u64,
}

/// The replicator plugin. Make it with [`ReplicatorPlugin::builder`]; find it again with
/// `db.plugin::<ReplicatorPlugin>()`.
pub struct ReplicatorPlugin {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ReplicatorPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorPlugin")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What the plugin and its hooks share.
pub(crate) struct Shared {
    config: Config,
    lanes: Vec<Arc<Lane>>,
    /// Identifies this plugin instance in log ids and claims.
    instance: String,
    seq: AtomicU64,
    cx: Mutex<Option<PluginContext>>,
    logs: Mutex<Option<Resource>>,
}

/// One delivery to do: a change for one lane, and where it came from.
struct Job<'a> {
    lane: &'a Lane,
    change: change::Change,
    source: Option<&'a Resource>,
    source_id: &'a str,
    secret_paths: &'a [String],
}

impl Shared {
    fn context(&self) -> Option<PluginContext> {
        lock(&self.cx).clone()
    }

    fn database(&self) -> Option<Database> {
        self.context().and_then(|cx| cx.database().ok())
    }

    fn emit(&self, event: &ReplicatorEvent) {
        if let Some(cx) = self.context() {
            cx.emit_event(event);
        }
    }

    fn lane(&self, name: &str) -> Option<&Arc<Lane>> {
        self.lanes.iter().find(|l| l.name == name)
    }

    fn next_log_id(&self) -> String {
        format!(
            "{:013}-{}-{:06}",
            Utc::now().timestamp_millis().max(0),
            self.instance,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Replicates one successful write to every replicator that follows the resource.
    pub(crate) async fn on_write(
        &self,
        resource: &str,
        action: Action,
        id: &str,
        before: Option<&Document>,
        after: Option<&Document>,
    ) {
        let Some(source) = self.database().and_then(|db| db.resource(resource)) else {
            // Without the definition its secrets could not be removed: nothing is sent.
            tracing::warn!(
                resource,
                id,
                "replicator: resource unknown here; change not replicated"
            );
            return;
        };
        let secret_paths = source.definition().secret_paths();
        let jobs = self.lanes.iter().filter_map(|lane| {
            let change =
                lane.rules
                    .get(resource)?
                    .plan(action, id, before, after, &secret_paths)?;
            Some(self.process(Job {
                lane,
                change,
                source: Some(&source),
                source_id: id,
                secret_paths: &secret_paths,
            }))
        });
        futures::future::join_all(jobs).await;
    }

    /// Delivers one change; on failure counts, logs and reports it. Returns whether it was
    /// delivered.
    async fn process(&self, job: Job<'_>) -> bool {
        let Job {
            lane,
            change,
            source,
            source_id,
            secret_paths,
        } = job;
        match lane.deliver(&change, source).await {
            Ok(attempts) => {
                Counters::bump(&lane.counters.replicated);
                self.emit(&ReplicatorEvent::Replicated {
                    replicator: lane.name.clone(),
                    resource: change.source_resource.clone(),
                    action: change.action,
                    id: change.id.clone(),
                    attempts,
                });
                true
            }
            Err(failure) => {
                Counters::bump(&lane.counters.failed);
                let error = failure.error.to_string();
                let log_entry = self
                    .log_failure(
                        lane,
                        &change,
                        source_id,
                        secret_paths,
                        failure.attempts,
                        &error,
                    )
                    .await;
                tracing::warn!(
                    replicator = %lane.name,
                    resource = %change.source_resource,
                    action = change.action.as_str(),
                    id = %change.id,
                    attempts = failure.attempts,
                    error = %error,
                    logged = log_entry.is_some(),
                    "replication failed (the write itself succeeded)"
                );
                self.emit(&ReplicatorEvent::Failed {
                    replicator: lane.name.clone(),
                    resource: change.source_resource.clone(),
                    action: change.action,
                    id: change.id.clone(),
                    attempts: failure.attempts,
                    error,
                    log_entry,
                });
                false
            }
        }
    }

    /// Writes a failure to the log (when on); its id.
    async fn log_failure(
        &self,
        lane: &Lane,
        change: &change::Change,
        source_id: &str,
        secret_paths: &[String],
        attempts: u32,
        error: &str,
    ) -> Option<String> {
        let logs = lock(&self.logs).clone()?;
        let replicates_secrets = lane
            .rules
            .get(&change.source_resource)
            .is_some_and(|r| r.secrets == SecretPolicy::Replicate);
        let mut change = change.clone();
        let secrets_omitted = replicates_secrets && !secret_paths.is_empty();
        if secrets_omitted {
            // The log never holds secret values in clear.
            for doc in [change.data.as_mut(), change.before.as_mut()]
                .into_iter()
                .flatten()
            {
                for path in secret_paths {
                    change::remove_path(doc, path);
                }
            }
        }
        let entry = LogEntry {
            id: self.next_log_id(),
            replicator: lane.name.clone(),
            resource: change.source_resource.clone(),
            record_id: source_id.to_owned(),
            action: change.action,
            status: LogStatus::Failed,
            attempts,
            error: error.to_owned(),
            change,
            secrets_omitted,
            claimed_by: None,
            claimed_until: None,
            resolved_at: None,
        };
        match log::append(&logs, &entry).await {
            Ok(()) => {
                Counters::bump(&lane.counters.logged);
                Some(entry.id)
            }
            Err(e) => {
                tracing::error!(
                    replicator = %lane.name,
                    resource = %entry.resource,
                    id = %entry.record_id,
                    error = %e,
                    "replicator: the failure could not be logged; this change is lost for retry_failed"
                );
                None
            }
        }
    }

    /// Replays one logged failure, if this process wins its claim.
    async fn replay(&self, logs: &Resource, id: &str) -> Result<Replayed> {
        let claimant = format!("{}-{}", std::process::id(), self.instance);
        let (entry, etag) =
            match log::claim(logs, id, &claimant, Utc::now(), self.config.claim_ttl).await? {
                Claim::Held { entry, etag } => (entry, etag),
                Claim::Taken => return Ok(Replayed::Skipped),
            };
        let Some(lane) = self.lane(&entry.replicator) else {
            let error = format!("no replicator named {:?} in this process", entry.replicator);
            log::settle(logs, id, &etag, entry.attempts, Err(error)).await?;
            return Ok(Replayed::Failed);
        };
        let source = self.database().and_then(|db| db.resource(&entry.resource));
        let Some(change) = self.change_to_replay(lane, &entry, source.as_ref()).await? else {
            // Nothing left to send (the record is gone; its delete is a change of its own).
            let settled = log::settle(logs, id, &etag, entry.attempts, Ok(Utc::now())).await?;
            return Ok(if settled {
                Replayed::Resolved
            } else {
                Replayed::Skipped
            });
        };
        match lane.deliver(&change, source.as_ref()).await {
            Ok(attempts) => {
                Counters::bump(&lane.counters.replicated);
                let total = entry.attempts.saturating_add(attempts);
                if !log::settle(logs, id, &etag, total, Ok(Utc::now())).await? {
                    tracing::warn!(
                        entry = id,
                        "replicator: delivered, but another process took the entry over (claim_ttl too short?)"
                    );
                    return Ok(Replayed::Skipped);
                }
                Counters::bump(&lane.counters.resolved);
                self.emit(&ReplicatorEvent::Resolved {
                    replicator: lane.name.clone(),
                    resource: entry.resource.clone(),
                    id: change.id.clone(),
                    log_entry: id.to_owned(),
                });
                Ok(Replayed::Resolved)
            }
            Err(failure) => {
                Counters::bump(&lane.counters.failed);
                let total = entry.attempts.saturating_add(failure.attempts);
                log::settle(logs, id, &etag, total, Err(failure.error.to_string())).await?;
                Ok(Replayed::Failed)
            }
        }
    }

    /// The change a log entry replays: as logged, or, when its secrets were omitted, an insert
    /// or update made again from the record as it is now (`None`: the record is gone).
    async fn change_to_replay(
        &self,
        lane: &Lane,
        entry: &LogEntry,
        source: Option<&Resource>,
    ) -> Result<Option<change::Change>> {
        if !entry.secrets_omitted || entry.action == Action::Delete {
            return Ok(Some(entry.change.clone()));
        }
        let (Some(source), Some(rule)) = (source, lane.rules.get(&entry.resource)) else {
            return Ok(Some(entry.change.clone()));
        };
        match source.get_from_store(&entry.record_id).await {
            Ok(record) => Ok(rule.plan(
                entry.action,
                record.id(),
                None,
                Some(record.data()),
                &source.definition().secret_paths(),
            )),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What replaying one entry did.
enum Replayed {
    Resolved,
    Failed,
    Skipped,
}

impl ReplicatorPlugin {
    /// A builder with validated configuration.
    pub fn builder() -> ReplicatorBuilder {
        ReplicatorBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let instance = format!(
            "{:012x}",
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                & 0xffff_ffff_ffff
        );
        let lanes = config
            .replicators
            .iter()
            .map(|r| Arc::new(Lane::new(r)))
            .collect();
        Self {
            shared: Arc::new(Shared {
                config,
                lanes,
                instance,
                seq: AtomicU64::new(0),
                cx: Mutex::new(None),
                logs: Mutex::new(None),
            }),
        }
    }

    fn context(&self, operation: &'static str) -> Result<PluginContext> {
        self.shared.context().ok_or_else(|| Error::Refused {
            operation,
            reason: "the replicator plugin is not installed in a database".to_owned(),
        })
    }

    fn logs(&self, operation: &'static str) -> Result<Resource> {
        self.context(operation)?;
        lock(&self.shared.logs)
            .clone()
            .ok_or_else(|| Error::Refused {
                operation,
                reason: "the failure log is off; build the plugin with .log_failures(true)"
                    .to_owned(),
            })
    }

    /// Statistics per replicator (by name), since install, in this process.
    #[must_use]
    pub fn stats(&self) -> BTreeMap<String, TargetStats> {
        self.shared
            .lanes
            .iter()
            .map(|l| (l.name.clone(), l.stats()))
            .collect()
    }

    /// The names of the replicators.
    #[must_use]
    pub fn replicators(&self) -> Vec<String> {
        self.shared.lanes.iter().map(|l| l.name.clone()).collect()
    }

    /// Replays every logged failure (`failed`, or `replaying` with an expired claim) to its
    /// replicator, once: with several processes calling it at once, each entry is claimed by
    /// exactly one of them (conditional writes), delivered by it, and marked `resolved` (or
    /// `failed` again with the new error).
    ///
    /// # Errors
    /// [`Error::Refused`] when the plugin is not installed or the log is off; storage errors of
    /// the log.
    pub async fn retry_failed(&self) -> Result<RetryReport> {
        let logs = self.logs("retry_failed")?;
        let span = tracing::info_span!("replicator_retry_failed");
        async {
            let mut ids = log::ids_with_status(&logs, LogStatus::Failed).await?;
            ids.extend(log::ids_with_status(&logs, LogStatus::Replaying).await?);
            ids.sort();
            ids.dedup();
            let shared = &self.shared;
            let logs = &logs;
            let results: Vec<Result<Replayed>> = futures::stream::iter(ids)
                .map(|id| async move { shared.replay(logs, &id).await })
                .buffer_unordered(REPLAY_CONCURRENCY)
                .collect()
                .await;
            let mut report = RetryReport::default();
            for r in results {
                match r? {
                    Replayed::Resolved => report.resolved += 1,
                    Replayed::Failed => report.failed += 1,
                    Replayed::Skipped => report.skipped += 1,
                }
            }
            tracing::info!(?report, "replicator: retried logged failures");
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// The log's entries with `status` (every entry with `None`), oldest first.
    ///
    /// # Errors
    /// As [`ReplicatorPlugin::retry_failed`].
    pub async fn log_entries(&self, status: Option<LogStatus>) -> Result<Vec<LogEntry>> {
        let logs = self.logs("log_entries")?;
        let records = match status {
            None => logs.list().await?,
            Some(status) => {
                let ids = log::ids_with_status(&logs, status).await?;
                let mut records = Vec::with_capacity(ids.len());
                for r in logs.get_many(&ids).await {
                    match r {
                        Ok(record) => records.push(record),
                        // Moved to another status since the listing.
                        Err(Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                records
            }
        };
        let mut entries = records.iter().map(log::parse).collect::<Result<Vec<_>>>()?;
        if let Some(status) = status {
            entries.retain(|e| e.status == status);
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(entries)
    }

    /// Deletes the log's `resolved` entries; returns how many.
    ///
    /// # Errors
    /// As [`ReplicatorPlugin::retry_failed`].
    pub async fn prune_resolved(&self) -> Result<u64> {
        let logs = self.logs("prune_resolved")?;
        let ids = log::ids_with_status(&logs, LogStatus::Resolved).await?;
        let mut deleted = 0;
        for r in logs.delete_many(&ids).await {
            r?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Copies every existing record of `resource` to every replicator that follows it (as
    /// inserts: an `s3db` target upserts), a page at a time ([`ReplicatorBuilder::sync_page_size`]
    /// records in memory), with each replicator's filter, transform, retries and concurrency.
    /// Failures are logged like those of writes.
    ///
    /// # Errors
    /// [`Error::Refused`] when the plugin is not installed, the resource does not exist, or no
    /// replicator follows it (or its inserts); storage errors reading it.
    pub async fn sync_all(&self, resource: &str) -> Result<SyncReport> {
        let cx = self.context("sync_all")?;
        let refused = |reason: String| Error::Refused {
            operation: "sync_all",
            reason,
        };
        let source = cx
            .database()?
            .resource(resource)
            .ok_or_else(|| refused(format!("resource {resource:?} does not exist")))?;
        let lanes: Vec<&Arc<Lane>> = self
            .shared
            .lanes
            .iter()
            .filter(|l| {
                l.rules
                    .get(resource)
                    .is_some_and(|r| r.actions.contains(&Action::Insert))
            })
            .collect();
        if lanes.is_empty() {
            return Err(refused(format!(
                "no replicator follows the inserts of resource {resource:?}"
            )));
        }
        let span = tracing::info_span!("replicator_sync_all", resource);
        let report = async {
            let secret_paths = source.definition().secret_paths();
            let mut report = SyncReport::default();
            let mut page = Page::size(self.shared.config.sync_page_size);
            loop {
                let result = source.page(page.clone()).await?;
                report.records += result.items.len() as u64;
                for lane in &lanes {
                    let Some(rule) = lane.rules.get(resource) else {
                        continue;
                    };
                    let jobs: Vec<_> = result
                        .items
                        .iter()
                        .filter_map(|record| {
                            let change = rule.plan(
                                Action::Insert,
                                record.id(),
                                None,
                                Some(record.data()),
                                &secret_paths,
                            );
                            if change.is_none() {
                                report.skipped += 1;
                            }
                            change.map(|change| (record.id(), change))
                        })
                        .collect();
                    let delivered: Vec<bool> = futures::stream::iter(jobs)
                        .map(|(id, change)| {
                            self.shared.process(Job {
                                lane,
                                change,
                                source: Some(&source),
                                source_id: id,
                                secret_paths: &secret_paths,
                            })
                        })
                        .buffer_unordered(lane.concurrency)
                        .collect()
                        .await;
                    for ok in delivered {
                        if ok {
                            report.replicated += 1;
                        } else {
                            report.failed += 1;
                        }
                    }
                }
                match result.next_cursor() {
                    Some(cursor) if result.has_more => page = page.after(cursor),
                    _ => break,
                }
            }
            Ok::<_, Error>(report)
        }
        .instrument(span)
        .await?;
        self.shared.emit(&ReplicatorEvent::Synced {
            resource: resource.to_owned(),
            records: report.records,
            replicated: report.replicated,
            failed: report.failed,
        });
        Ok(report)
    }
}

#[async_trait]
impl Plugin for ReplicatorPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        if self.shared.config.log {
            let logs = cx.create_resource(log::definition()).await?;
            *lock(&self.shared.logs) = Some(logs);
        }
        *lock(&self.shared.cx) = Some(cx.clone());
        let mut sources: Vec<&str> = self
            .shared
            .lanes
            .iter()
            .flat_map(|l| l.rules.keys().map(String::as_str))
            .collect();
        sources.sort_unstable();
        sources.dedup();
        for name in sources {
            let (shared, hook_cx) = (Arc::clone(&self.shared), cx.clone());
            let wants_deleted_record = self.shared.lanes.iter().any(|l| {
                l.rules
                    .get(name)
                    .is_some_and(|r| r.actions.contains(&Action::Delete))
            });
            cx.when_resource(name, move |resource| {
                hook_cx.add_resource_hooks(
                    &resource,
                    ReplicateHooks {
                        shared: Arc::clone(&shared),
                        wants_deleted_record,
                    },
                );
                tracing::debug!(resource = resource.name(), "replicator: following");
                async { Ok(()) }
            })
            .await?;
        }
        Ok(())
    }

    async fn stop(&self, _cx: &PluginContext) -> Result<()> {
        for lane in &self.shared.lanes {
            lane.target.close().await;
            lane.reset().await;
        }
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        lock(&self.shared.cx).take();
        lock(&self.shared.logs).take();
        Ok(())
    }
}
