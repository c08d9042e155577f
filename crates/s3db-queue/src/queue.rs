//! The queue in the bucket: enqueue, claim, settle, clean up, count.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use s3db_core::Key;
use s3db_core::plugin::{Error, PluginContext, Resource, ResourceConfig, Result, SetOptions};
use s3db_core::store::{ETag, ListEntry};
use serde_json::{Value, json};

use crate::QueueStats;
use crate::claim::{Claim, Written};
use crate::config::{Config, Order};
use crate::entry::{DONE, LIVE, MessageInfo, State, StoredEntry, StoredReceipt, now_ms};
use crate::events::QueueEvent;

/// What this process last saw of an entry it could not claim: skipped while the listing shows
/// the same ETag and the deadline is ahead (a read saved, never a decision: the claim itself is
/// always the conditional write).
#[derive(Debug, Clone)]
struct Hint {
    etag: ETag,
    visible_at: i64,
}

/// A queue installed in a database.
pub(crate) struct QueueCore {
    pub(crate) config: Config,
    pub(crate) cx: PluginContext,
    /// Who this process is, written in its claims (for humans).
    pub(crate) worker: String,
    ids: Mutex<ulid::Generator>,
    hints: Mutex<HashMap<String, Hint>>,
}

/// The outcome of a handler run.
pub(crate) type Outcome = std::result::Result<(), String>;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl QueueCore {
    pub(crate) fn new(config: Config, cx: PluginContext) -> Self {
        let worker = format!(
            "{}-{}",
            std::process::id(),
            ulid::Ulid::new().to_string().get(20..).unwrap_or_default()
        );
        Self {
            config,
            cx,
            worker,
            ids: Mutex::new(ulid::Generator::new()),
            hints: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn dead_letter_config(name: &str) -> ResourceConfig {
        ResourceConfig::new(name)
            .attribute("data", "json")
            .attribute("attempts", "number")
            .attribute("error", "string")
            .attribute("token", "string")
            .attribute("worker", "string")
            .attribute("enqueued_at", "number")
            .attribute("died_at", "number")
    }

    fn dead_letters(&self) -> Result<Resource> {
        let name = &self.config.dead_letter_resource;
        self.cx
            .database()?
            .resource(name)
            .ok_or_else(|| Error::NotFound {
                key: format!("resource {name}"),
            })
    }

    fn key(&self, area: &str, id: &str) -> Result<Key> {
        self.cx.storage().key(None, &[area, id])
    }

    pub(crate) fn emit(&self, event: &QueueEvent) {
        self.cx.emit_event(event);
    }

    fn hints(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hint>> {
        self.hints.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new message id: a ULID, monotonic in this process, so key order is enqueue order.
    fn next_id(&self) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string()
    }

    // ----- producing -----

    pub(crate) async fn enqueue(&self, data: Value, delay: Duration) -> Result<String> {
        let id = self.next_id();
        let now = now_ms();
        let entry = StoredEntry::new(data, now, now.saturating_add(millis(delay)));
        self.cx
            .storage()
            .create(&self.key(LIVE, &id)?, &entry.to_map(), SetOptions::new())
            .await?;
        tracing::debug!(queue = %self.config.queue, %id, "enqueued");
        self.emit(&QueueEvent::Enqueued {
            queue: self.config.queue.clone(),
            id: id.clone(),
        });
        Ok(id)
    }

    // ----- claiming -----

    /// Claims up to `want` messages, in the configured order.
    pub(crate) async fn claim_some(self: &Arc<Self>, want: usize) -> Result<Vec<Arc<Claim>>> {
        let prefix = self.cx.storage().key(None, &[LIVE])?;
        let mut listing = self.cx.storage().store().list(Some(&prefix));
        let mut claims = Vec::new();
        match self.config.order {
            Order::Fifo => {
                while let Some(item) = listing.next().await {
                    if let Some(claim) = self.try_claim(item?).await? {
                        claims.push(claim);
                        if claims.len() >= want {
                            return Ok(claims);
                        }
                    }
                }
            }
            Order::Lifo => {
                let all: Vec<ListEntry> = listing.try_collect().await?;
                for item in all.into_iter().rev() {
                    if let Some(claim) = self.try_claim(item).await? {
                        claims.push(claim);
                        if claims.len() >= want {
                            return Ok(claims);
                        }
                    }
                }
            }
        }
        Ok(claims)
    }

    /// Claims one listed entry if it is claimable: a conditional update (If-Match on the ETag
    /// just read) from pending-and-visible (or processing-and-expired) to processing, with a fresh
    /// token and a new deadline. Also finishes entries left in a final state by a worker that
    /// died before cleaning up.
    async fn try_claim(self: &Arc<Self>, listed: ListEntry) -> Result<Option<Arc<Claim>>> {
        let id = listed.key.last_part().to_owned();
        let now = now_ms();
        if let Some(hint) = self.hints().get(&id)
            && hint.visible_at > now
            && listed.etag.as_ref().is_none_or(|e| *e == hint.etag)
        {
            return Ok(None);
        }
        let storage = self.cx.storage();
        let Some(found) = storage.get_entry(&listed.key).await? else {
            return Ok(None);
        };
        let entry = match StoredEntry::from_map(found.data) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(queue = %self.config.queue, %id, error = %e, "s3queue: skipping an unreadable entry");
                return Ok(None);
            }
        };
        if entry.state.is_final() {
            self.finish_up(&id, &entry).await?;
            return Ok(None);
        }
        if !entry.claimable(now) {
            self.hints().insert(
                id,
                Hint {
                    etag: found.etag,
                    visible_at: entry.visible_at,
                },
            );
            return Ok(None);
        }
        if entry.state == State::Processing && entry.attempts >= self.config.max_attempts {
            // The last attempt's worker died or overran: no attempt is left.
            let error = format!(
                "the visibility timeout of attempt {} expired (the worker died or the handler overran it)",
                entry.attempts
            );
            let dead = entry.finished(State::Dead, Some(error.clone()), now);
            match storage
                .update_entry(&listed.key, &dead.to_map(), SetOptions::new(), &found.etag)
                .await
            {
                Ok(_) => {
                    self.emit(&QueueEvent::Dead {
                        queue: self.config.queue.clone(),
                        id: id.clone(),
                        attempts: dead.attempts,
                        error,
                    });
                    self.finish_up(&id, &dead).await?;
                }
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
            return Ok(None);
        }
        let token = ulid::Ulid::new().to_string();
        let claimed = entry.claimed(
            &token,
            &self.worker,
            now.saturating_add(millis(self.config.visibility_timeout)),
        );
        match storage
            .update_entry(
                &listed.key,
                &claimed.to_map(),
                SetOptions::new(),
                &found.etag,
            )
            .await
        {
            Ok(etag) => {
                self.hints().remove(&id);
                tracing::debug!(queue = %self.config.queue, %id, attempt = claimed.attempts, %token, "claimed");
                self.emit(&QueueEvent::Claimed {
                    queue: self.config.queue.clone(),
                    id: id.clone(),
                    attempt: claimed.attempts,
                    token: token.clone(),
                });
                Ok(Some(Arc::new(Claim::new(
                    Arc::clone(self),
                    id,
                    listed.key,
                    token,
                    etag,
                    claimed,
                ))))
            }
            // Another worker claimed it first.
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ----- settling -----

    /// Writes the outcome of a handler run under its claim, then cleans up a final state.
    pub(crate) async fn settle(&self, claim: &Claim, outcome: Outcome) -> Result<()> {
        let attempt = claim.entry().attempts;
        let queue = self.config.queue.clone();
        let written = match &outcome {
            Ok(()) => {
                claim
                    .write(|e| e.finished(State::Completed, None, now_ms()))
                    .await?
            }
            Err(error) if attempt < self.config.max_attempts => {
                let delay = self.backoff(attempt);
                let written = claim
                    .write(|e| e.retry_at(error.clone(), now_ms().saturating_add(millis(delay))))
                    .await?;
                if matches!(written, Written::Done(_)) {
                    tracing::info!(%queue, id = %claim.id, attempt, %error, ?delay, "attempt failed; retrying");
                    self.emit(&QueueEvent::Retrying {
                        queue: queue.clone(),
                        id: claim.id.clone(),
                        attempt,
                        error: error.clone(),
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    });
                    self.hints().remove(&claim.id);
                }
                written
            }
            Err(error) => {
                claim
                    .write(|e| e.finished(State::Dead, Some(error.clone()), now_ms()))
                    .await?
            }
        };
        match written {
            Written::Lost => {
                tracing::warn!(%queue, id = %claim.id, token = %claim.token,
                    "s3queue: claim lost before its outcome was written (visibility timeout too short?)");
                self.emit(&QueueEvent::ClaimLost {
                    queue,
                    id: claim.id.clone(),
                    token: claim.token.clone(),
                });
            }
            Written::Done(entry) => match entry.state {
                State::Completed => {
                    self.emit(&QueueEvent::Completed {
                        queue,
                        id: claim.id.clone(),
                        attempt,
                    });
                    self.finish_up(&claim.id, &entry).await?;
                }
                State::Dead => {
                    tracing::warn!(%queue, id = %claim.id, attempt, "message failed its last attempt; dead");
                    self.emit(&QueueEvent::Dead {
                        queue,
                        id: claim.id.clone(),
                        attempts: entry.attempts,
                        error: entry.last_error.clone().unwrap_or_default(),
                    });
                    self.finish_up(&claim.id, &entry).await?;
                }
                State::Pending | State::Processing => {}
            },
        }
        Ok(())
    }

    /// The delay before retrying after failed attempt `attempt`: `retry_backoff × 2^(attempt-1)`,
    /// at most `max_backoff`, minus a random jitter of up to half.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.retry_backoff;
        let doubled = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = doubled.min(self.config.max_backoff);
        // 0..=1000 per mille of half the delay, from fresh randomness.
        let per_mille = u32::try_from(ulid::Ulid::new().random() % 1001).unwrap_or(0);
        capped - (capped / 2) * per_mille / 1000
    }

    /// Moves a message in a final state out of `live/`: a receipt (completed) or a dead-letter
    /// record (dead), each created at most once (keyed by the message id), then the entry is
    /// deleted. A final state never changes, so whoever finds it may do this, any number of
    /// times.
    pub(crate) async fn finish_up(&self, id: &str, entry: &StoredEntry) -> Result<()> {
        let now = now_ms();
        match entry.state {
            State::Completed => {
                let receipt = StoredReceipt::of(entry, now);
                match self
                    .cx
                    .storage()
                    .create(&self.key(DONE, id)?, &receipt.to_map(), SetOptions::new())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
            State::Dead => {
                let record = json!({
                    "data": entry.data,
                    "attempts": entry.attempts,
                    "error": entry.last_error.clone().unwrap_or_default(),
                    "token": entry.token.clone().unwrap_or_default(),
                    "worker": entry.worker.clone().unwrap_or_default(),
                    "enqueued_at": entry.enqueued_at,
                    "died_at": entry.finished_at.unwrap_or(now),
                });
                match self.dead_letters()?.insert_with_id(id, record).await {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
            State::Pending | State::Processing => return Ok(()),
        }
        self.hints().remove(id);
        self.cx.storage().delete(&self.key(LIVE, id)?).await
    }

    /// Whether the completion receipt of `id` carries `token`.
    pub(crate) async fn receipt_is(&self, id: &str, token: &str) -> bool {
        let Ok(key) = self.key(DONE, id) else {
            return false;
        };
        matches!(
            self.cx.storage().get(&key).await,
            Ok(Some(r)) if r.get("token").and_then(Value::as_str) == Some(token)
        )
    }

    // ----- looking -----

    pub(crate) async fn message(&self, id: &str) -> Result<Option<MessageInfo>> {
        let storage = self.cx.storage();
        if let Some(found) = storage.get(&self.key(LIVE, id)?).await? {
            let entry = StoredEntry::from_map(found).map_err(|e| Error::Corrupt {
                key: id.to_owned(),
                reason: e.to_string(),
            })?;
            return Ok(Some(MessageInfo::live(id, entry)));
        }
        if let Some(found) = storage.get(&self.key(DONE, id)?).await? {
            let receipt: StoredReceipt =
                serde_json::from_value(Value::Object(found)).map_err(|e| Error::Corrupt {
                    key: id.to_owned(),
                    reason: e.to_string(),
                })?;
            return Ok(Some(MessageInfo::completed(id, receipt)));
        }
        match self.dead_letters()?.get(id).await {
            Ok(record) => Ok(Some(MessageInfo {
                id: id.to_owned(),
                state: State::Dead,
                attempts: record
                    .get("attempts")
                    .and_then(Value::as_u64)
                    .and_then(|a| u32::try_from(a).ok())
                    .unwrap_or_default(),
                data: record.get("data").cloned().unwrap_or_default(),
                token: record
                    .get("token")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                worker: record
                    .get("worker")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                last_error: record
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                enqueued_at: record
                    .get("enqueued_at")
                    .and_then(Value::as_i64)
                    .and_then(crate::entry::time),
                visible_at: None,
                finished_at: record
                    .get("died_at")
                    .and_then(Value::as_i64)
                    .and_then(crate::entry::time),
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn stats(&self) -> Result<QueueStats> {
        let storage = self.cx.storage();
        let live = storage.list(Some(LIVE), None).await?;
        let mut stats = QueueStats::default();
        let mut completed: BTreeSet<String> = BTreeSet::new();
        let mut dead: BTreeSet<String> =
            self.dead_letters()?.list_ids().await?.into_iter().collect();
        for key in storage.list(Some(DONE), None).await? {
            completed.insert(key.last_part().to_owned());
        }
        let now = now_ms();
        let values = storage.batch_get(&live).await;
        for (key, value) in live.iter().zip(values) {
            let Some(map) = value? else { continue };
            let Ok(entry) = StoredEntry::from_map(map) else {
                continue;
            };
            let id = key.last_part().to_owned();
            match entry.state {
                State::Completed => {
                    completed.insert(id);
                }
                State::Dead => {
                    dead.insert(id);
                }
                State::Processing if entry.visible_at > now => stats.processing += 1,
                State::Pending | State::Processing => {
                    stats.pending += 1;
                    if entry.state == State::Pending && entry.last_error.is_some() {
                        stats.failed += 1;
                    }
                }
            }
        }
        stats.completed = completed.len() as u64;
        stats.dead = dead.len() as u64;
        Ok(stats)
    }
}
