//! Keeping the index up to date: the change protocol, group commit, recovery, rebuild and clear.
//!
//! ## The change protocol
//! A change of record `r` (insert, update, delete — the hooks do not trust the order in which
//! after-hooks of concurrent writers run) is applied in three steps, each a conditional write:
//!
//! 1. **claim**: read `docs/r` (its ETag, the terms `r` is indexed under and any `dirty` terms
//!    left by an unfinished change), then read the record itself; write `docs/r` back with
//!    `dirty = old terms ∪ old dirty ∪ terms this process touched for r ∪ new terms`,
//!    conditionally on the ETag read (or as a create).
//! 2. **postings**: for every dirty term, set `r`'s postings in its `terms/<shard>` object to what
//!    the record now holds (or remove them), and set (or remove) `r`'s field lengths in its
//!    `lengths/<n>` object; each object is a compare-and-swap loop on its ETag, and touches only
//!    `r`'s entries, so writers of different records commute.
//! 3. **finish**: write `docs/r = {terms: new terms, dirty: []}` conditionally on the ETag of
//!    step 1. If that fails, another writer claimed `r` meanwhile: start again at step 1, now
//!    carrying every term this process touched.
//!
//! The last writer whose finish succeeds claimed after every other writer's last finish, read
//! the record after that, and rewrote every term anyone touched: the index ends up equal to
//! the record's last state whatever the interleaving, across tasks and processes.
//!
//! ## Group commit
//! Within a process, changes of one resource are queued; one caller at a time applies the whole
//! queue as a batch (claims in parallel, then each shard once for the batch). Many concurrent
//! writes (`insert_many`) thus share shard writes instead of fighting over them. The caller's
//! write returns once its batch is applied: **the index change is durable when the write
//! returns**.
//!
//! ## Crash recovery
//! A before-hook writes a pending marker (`pending/<id>/<token>`, or `pending-insert/<token>` for
//! an insert without an id) before the record is written; the after-hook deletes it once the
//! index change is applied. A process that dies in between leaves the marker: at the next
//! install (and on [`crate::FullTextPlugin::recover`]) markers older than the recovery grace
//! are redone — a named record is re-applied from its current state, an anonymous insert
//! triggers a reconciliation of the record ids with the index's entries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use s3db_core::plugin::{
    Error, LockOptions, MAX_CONFLICTS, MAX_TRANSIENT_RETRIES, PluginContext, PluginStorage,
    Resource, Result, SetOptions,
};
use s3db_core::{Behavior, ETag, Key};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::analysis::{Analysis, analyze};
use crate::config::{IndexedResource, Settings};
use crate::events::FullTextEvent;
use crate::layout::{self, Layout};
use crate::tokenizer::Tokenizer;

/// Records claimed, read or written at once.
const CONCURRENCY: usize = 16;
/// Records applied per batch by rebuild and recovery.
const REBUILD_CHUNK: usize = 200;
/// Version of the stored layout.
const LAYOUT_VERSION: u64 = 1;

pub(crate) fn body_only() -> SetOptions {
    SetOptions::new().behavior(Behavior::BodyOnly)
}

/// The plugin's working state, shared by hooks and the public API.
pub(crate) struct Index {
    pub(crate) settings: Settings,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) layout: Layout,
    pub(crate) cx: PluginContext,
    committers: Mutex<HashMap<String, Arc<Committer>>>,
    /// Tokens of the pending markers this process wrote, per resource and id (`None`: inserts
    /// without an id).
    markers: Mutex<HashMap<MarkerOwner, Vec<String>>>,
}

/// Whose pending markers: a resource and a record id (`None`: an insert without an id).
type MarkerOwner = (String, Option<String>);

/// The queue of one resource's changes.
#[derive(Default)]
struct Committer {
    queue: Mutex<Vec<Ticket>>,
    gate: tokio::sync::Mutex<()>,
}

/// One queued change and where its outcome goes.
struct Ticket {
    ticket: u64,
    id: String,
    tx: oneshot::Sender<std::result::Result<(), String>>,
}

/// A record's entry in `docs/`.
#[derive(Debug, Default, Clone)]
struct DocEntry {
    terms: BTreeSet<String>,
    dirty: BTreeSet<String>,
}

impl DocEntry {
    fn parse(data: &Map<String, Value>) -> Self {
        let set = |name: &str| -> BTreeSet<String> {
            data.get(name)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            terms: set("terms"),
            dirty: set("dirty"),
        }
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("terms".to_owned(), json!(self.terms));
        map.insert("dirty".to_owned(), json!(self.dirty));
        map
    }
}

/// A record claimed for a change (step 1 done).
struct Claim {
    id: String,
    etag: ETag,
    target: Option<Analysis>,
    dirty: BTreeSet<String>,
}

enum Claimed {
    /// Nothing indexed and nothing to index.
    Nothing,
    /// Claimed.
    Claim(Claim),
    /// Lost a race (or a transient failure): try again next round.
    Retry(Error),
}

/// One change to a postings shard: set (or remove) one record's postings of one term.
type PostingChange = (String, String, Option<BTreeMap<String, u32>>);
/// One change to a length shard.
type LengthChange = (String, Option<BTreeMap<String, u32>>);

impl Index {
    pub(crate) fn new(settings: Settings, storage: PluginStorage, cx: PluginContext) -> Self {
        Self {
            tokenizer: Tokenizer::new(settings.min_word_length, settings.stemming),
            layout: Layout {
                storage,
                shard_prefix: settings.shard_prefix,
                length_shards: settings.length_shards,
            },
            settings,
            cx,
            committers: Mutex::default(),
            markers: Mutex::default(),
        }
    }

    pub(crate) fn storage(&self) -> &PluginStorage {
        &self.layout.storage
    }

    /// The configuration of an indexed resource.
    pub(crate) fn config(&self, resource: &str) -> Result<&IndexedResource> {
        self.settings.resources.get(resource).ok_or_else(|| {
            self.error(Error::Refused {
                operation: "fulltext",
                reason: format!(
                    "resource {resource} is not indexed by plugin {} (indexed: {})",
                    self.settings.name,
                    self.settings
                        .resources
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        })
    }

    /// The resource handle, from the database.
    pub(crate) fn resource(&self, name: &str) -> Result<Resource> {
        self.config(name)?;
        self.cx
            .database()?
            .resource(name)
            .ok_or_else(|| Error::NotFound {
                key: format!("resource {name}"),
            })
    }

    /// Wraps an error with the plugin's name (once).
    pub(crate) fn error(&self, e: Error) -> Error {
        match e {
            Error::Plugin { .. } => e,
            other => Error::Plugin {
                plugin: self.settings.name.clone(),
                source: Box::new(other),
            },
        }
    }

    pub(crate) fn emit(&self, event: &FullTextEvent) {
        self.cx.emit_event(event);
    }

    // ----- pending markers -----

    /// Writes a pending marker before a write of `id` (or of an insert without an id).
    pub(crate) async fn mark(&self, resource: &str, id: Option<&str>) -> Result<()> {
        let token = format!("{:016x}", rand::random::<u64>());
        let key = self.layout.pending(resource, id, &token)?;
        let mut data = Map::new();
        data.insert("at".to_owned(), json!(now_ms()));
        self.storage().set(&key, &data, body_only()).await?;
        self.markers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((resource.to_owned(), id.map(str::to_owned)))
            .or_default()
            .push(token);
        Ok(())
    }

    /// Removes one marker of `id` (or, failing that, of an insert without an id) after its
    /// change was applied. A marker that cannot be deleted only costs a redundant recovery.
    async fn unmark(&self, resource: &str, id: &str) {
        let popped = {
            let mut markers = self.markers.lock().unwrap_or_else(PoisonError::into_inner);
            let mut pop = |key: MarkerOwner| {
                let tokens = markers.get_mut(&key)?;
                let token = tokens.pop();
                if tokens.is_empty() {
                    markers.remove(&key);
                }
                token.map(|t| (key.1, t))
            };
            pop((resource.to_owned(), Some(id.to_owned())))
                .or_else(|| pop((resource.to_owned(), None)))
        };
        if let Some((id, token)) = popped {
            let deleted = match self.layout.pending(resource, id.as_deref(), &token) {
                Ok(key) => self.storage().delete(&key).await,
                Err(e) => Err(e),
            };
            if let Err(e) = deleted {
                tracing::warn!(resource, error = %e, "fulltext: could not delete a pending marker");
            }
        }
    }

    /// After a write of `id`: applies its change, then removes its marker.
    pub(crate) async fn written(&self, resource: &str, id: &str) -> Result<()> {
        let handle = self.resource(resource)?;
        match self.commit(&handle, id).await {
            Ok(()) => {
                self.unmark(resource, id).await;
                Ok(())
            }
            Err(e) => {
                self.emit(&FullTextEvent::IndexFailed {
                    resource: resource.to_owned(),
                    id: id.to_owned(),
                    error: e.to_string(),
                });
                Err(self.error(e))
            }
        }
    }

    // ----- group commit -----

    fn committer(&self, resource: &str) -> Arc<Committer> {
        Arc::clone(
            self.committers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(resource.to_owned())
                .or_default(),
        )
    }

    /// Applies the change of record `id`, batched with the process's other pending changes of
    /// the resource; returns once it is applied.
    pub(crate) async fn commit(&self, resource: &Resource, id: &str) -> Result<()> {
        let committer = self.committer(resource.name());
        // A leader cancelled mid-batch drops the senders: queue again.
        for _ in 0..8 {
            let ticket = rand::random::<u64>();
            let (tx, rx) = oneshot::channel();
            committer
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Ticket {
                    ticket,
                    id: id.to_owned(),
                    tx,
                });
            {
                let _gate = committer.gate.lock().await;
                let batch = std::mem::take(
                    &mut *committer
                        .queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner),
                );
                if !batch.is_empty() {
                    let ids: Vec<String> = batch.iter().map(|t| t.id.clone()).collect();
                    let result = self.apply(resource, &ids).await;
                    let shared = result.as_ref().map(|_| ()).map_err(ToString::to_string);
                    let mut mine = false;
                    for t in batch {
                        if t.ticket == ticket {
                            mine = true;
                        } else {
                            let _ = t.tx.send(shared.clone());
                        }
                    }
                    // The leader's own change was in its batch: it gets the typed error.
                    if mine {
                        return result;
                    }
                }
            }
            match rx.await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(reason)) => {
                    return Err(Error::Refused {
                        operation: "fulltext index",
                        reason,
                    });
                }
                Err(_) => {}
            }
        }
        Err(Error::Refused {
            operation: "fulltext index",
            reason: format!("the change of record {id} was abandoned by cancelled callers"),
        })
    }

    /// Applies the changes of `ids` (the protocol of the module docs).
    pub(crate) async fn apply(&self, resource: &Resource, ids: &[String]) -> Result<()> {
        let span = tracing::debug_span!(
            "fulltext.apply",
            resource = resource.name(),
            records = ids.len()
        );
        self.apply_in_span(resource, ids).instrument(span).await
    }

    async fn apply_in_span(&self, resource: &Resource, ids: &[String]) -> Result<()> {
        let name = resource.name().to_owned();
        let config = self.config(&name)?;
        let mut todo: Vec<String> = ids
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let total = todo.len();
        let mut touched: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut retry = Retry::new();
        while !todo.is_empty() {
            // 1. claim
            // The futures are made first: a stream of closures that borrow would not be `Send`.
            let claims: Vec<_> = todo
                .iter()
                .map(|id| {
                    let touched = touched.get(id).cloned().unwrap_or_default();
                    self.claim(resource, config, id.clone(), touched)
                })
                .collect();
            let claims: Vec<Result<Claimed>> =
                stream::iter(claims).buffered(CONCURRENCY).collect().await;
            let mut next = Vec::new();
            let mut claimed = Vec::new();
            let mut last_retry = None;
            for (id, claim) in todo.iter().zip(claims) {
                match claim? {
                    Claimed::Nothing => {}
                    Claimed::Claim(c) => claimed.push(c),
                    Claimed::Retry(e) => {
                        next.push(id.clone());
                        last_retry = Some(e);
                    }
                }
            }
            // 2. postings and lengths
            self.write_postings(&name, &claimed).await?;
            for c in &claimed {
                touched
                    .entry(c.id.clone())
                    .or_default()
                    .extend(c.dirty.iter().cloned());
            }
            // 3. finish
            let finishes: Vec<_> = claimed.iter().map(|c| self.finish(&name, c)).collect();
            let finishes: Vec<Result<Option<Error>>> =
                stream::iter(finishes).buffered(CONCURRENCY).collect().await;
            for (c, finish) in claimed.iter().zip(finishes) {
                if let Some(e) = finish? {
                    next.push(c.id.clone());
                    last_retry = Some(e);
                }
            }
            todo = next;
            if let Some(e) = last_retry {
                tracing::debug!(resource = %name, records = todo.len(), "fulltext: retrying records claimed by other writers");
                retry.after(e).await?;
            }
        }
        tracing::debug!(resource = %name, records = total, "fulltext: changes applied");
        Ok(())
    }

    async fn claim(
        &self,
        resource: &Resource,
        config: &IndexedResource,
        id: String,
        touched: BTreeSet<String>,
    ) -> Result<Claimed> {
        let key = self.layout.doc(resource.name(), &id)?;
        let entry = self.storage().get_entry(&key).await?;
        let old = entry
            .as_ref()
            .map(|e| DocEntry::parse(&e.data))
            .unwrap_or_default();
        // The stored state, past every middleware (a cache must not answer the index).
        let target = match resource.get_from_store(&id).await {
            Ok(record) => Some(analyze(config, &self.tokenizer, record.data())),
            Err(e) if e.is_not_found() => None,
            Err(e) if e.is_transient() => return Ok(Claimed::Retry(e)),
            Err(e) => return Err(e),
        };
        if target.is_none() && old.terms.is_empty() && old.dirty.is_empty() && touched.is_empty() {
            // Not indexed, nothing to index (a delete of an unindexed record, a clean tombstone).
            // Its lengths entry may remain only if a claim of it never finished: then `dirty`
            // would not be empty.
            return Ok(Claimed::Nothing);
        }
        let mut dirty: BTreeSet<String> = old.terms.union(&old.dirty).cloned().collect();
        dirty.extend(touched.iter().cloned());
        if let Some(target) = &target {
            dirty.extend(target.postings.keys().cloned());
        }
        let pending = DocEntry {
            terms: old.terms,
            dirty: dirty.clone(),
        };
        let written = match &entry {
            Some(e) => {
                self.storage()
                    .update_entry(&key, &pending.to_map(), body_only(), &e.etag)
                    .await
            }
            None => {
                self.storage()
                    .create(&key, &pending.to_map(), body_only())
                    .await
            }
        };
        match written {
            Ok(etag) => Ok(Claimed::Claim(Claim {
                id,
                etag,
                target,
                dirty,
            })),
            Err(e) if retryable(&e) => Ok(Claimed::Retry(e)),
            Err(e) => Err(e),
        }
    }

    async fn finish(&self, resource: &str, claim: &Claim) -> Result<Option<Error>> {
        let key = self.layout.doc(resource, &claim.id)?;
        let done = DocEntry {
            terms: claim
                .target
                .as_ref()
                .map(|t| t.postings.keys().cloned().collect())
                .unwrap_or_default(),
            dirty: BTreeSet::new(),
        };
        match self
            .storage()
            .update_entry(&key, &done.to_map(), body_only(), &claim.etag)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if retryable(&e) => Ok(Some(e)),
            Err(e) => Err(e),
        }
    }

    /// Step 2 for a batch of claims: every touched shard once.
    async fn write_postings(&self, resource: &str, claims: &[Claim]) -> Result<()> {
        let mut shards: BTreeMap<String, Vec<PostingChange>> = BTreeMap::new();
        let mut lengths: BTreeMap<usize, Vec<LengthChange>> = BTreeMap::new();
        for c in claims {
            for term in &c.dirty {
                let value = c
                    .target
                    .as_ref()
                    .and_then(|t| t.postings.get(term).cloned());
                shards.entry(self.layout.shard_of(term)).or_default().push((
                    term.clone(),
                    c.id.clone(),
                    value,
                ));
            }
            lengths
                .entry(self.layout.length_shard_of(&c.id))
                .or_default()
                .push((c.id.clone(), c.target.as_ref().map(|t| t.lengths.clone())));
        }
        let postings: Vec<_> = shards
            .into_iter()
            .map(|(shard, changes)| self.write_postings_shard(resource, shard, changes))
            .collect();
        let lengths: Vec<_> = lengths
            .into_iter()
            .map(|(shard, changes)| self.write_lengths_shard(resource, shard, changes))
            .collect();
        let postings = stream::iter(postings)
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>();
        let lengths = stream::iter(lengths)
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>();
        futures::try_join!(postings, lengths)?;
        Ok(())
    }

    async fn write_postings_shard(
        &self,
        resource: &str,
        shard: String,
        changes: Vec<PostingChange>,
    ) -> Result<()> {
        let key = self.layout.postings(resource, &shard)?;
        self.modify(&key, |data| apply_postings(data, &changes))
            .await
    }

    async fn write_lengths_shard(
        &self,
        resource: &str,
        shard: usize,
        changes: Vec<LengthChange>,
    ) -> Result<()> {
        let key = self.layout.lengths(resource, shard)?;
        self.modify(&key, |data| apply_lengths(data, &changes))
            .await
    }

    /// A compare-and-swap loop on one object: read, change, write back conditionally; no write
    /// when nothing changed. Shards are never deleted (an unconditional delete could drop a
    /// concurrent writer's change): an emptied one stays as `{}`.
    async fn modify<F>(&self, key: &Key, mut change: F) -> Result<()>
    where
        F: FnMut(&mut Map<String, Value>) -> bool,
    {
        let mut retry = Retry::new();
        loop {
            let entry = match self.storage().get_entry(key).await {
                Ok(entry) => entry,
                Err(e) => {
                    retry.after(e).await?;
                    continue;
                }
            };
            let (mut data, etag) = match entry {
                Some(e) => (e.data, Some(e.etag)),
                None => (Map::new(), None),
            };
            if !change(&mut data) {
                return Ok(());
            }
            let written = match etag {
                Some(etag) => {
                    self.storage()
                        .update_entry(key, &data, body_only(), &etag)
                        .await
                }
                None => self.storage().create(key, &data, body_only()).await,
            };
            match written {
                Ok(_) => return Ok(()),
                Err(e) => retry.after(e).await?,
            }
        }
    }

    // ----- settings, recovery, rebuild, clear -----

    fn meta(&self, resource: &str) -> Result<Map<String, Value>> {
        let config = self.config(resource)?;
        let mut meta = Map::new();
        meta.insert("layout".to_owned(), json!(LAYOUT_VERSION));
        meta.insert("fields".to_owned(), json!(config.fields()));
        meta.insert(
            "min_word_length".to_owned(),
            json!(self.settings.min_word_length),
        );
        meta.insert("stemming".to_owned(), json!(self.settings.stemming));
        meta.insert("shard_prefix".to_owned(), json!(self.settings.shard_prefix));
        meta.insert(
            "length_shards".to_owned(),
            json!(self.settings.length_shards),
        );
        Ok(meta)
    }

    /// At setup: an index built with other settings (or none: the plugin is new to the
    /// resource) is rebuilt, once across processes; otherwise unfinished changes are recovered.
    pub(crate) async fn ensure(&self, resource: &Resource) -> Result<()> {
        let name = resource.name();
        let key = self.layout.meta(name)?;
        let wanted = self.meta(name)?;
        if self.storage().get(&key).await?.as_ref() == Some(&wanted) {
            self.recover(name, self.settings.recovery_grace).await?;
            return Ok(());
        }
        let lock = self
            .storage()
            .acquire_lock(
                &format!("rebuild-{name}"),
                LockOptions::new()
                    .ttl(Duration::from_secs(300))
                    .timeout(Duration::from_secs(600)),
            )
            .await?;
        // Another process may have rebuilt while this one waited.
        let result = if self.storage().get(&key).await?.as_ref() == Some(&wanted) {
            Ok(())
        } else {
            tracing::info!(
                resource = name,
                "fulltext: index missing or built with other settings; rebuilding"
            );
            self.rebuild(name).await.map(|_| ())
        };
        if let Some(lock) = lock {
            lock.release().await?;
        }
        result
    }

    /// Redoes the changes whose pending markers are at least `grace` old; returns how many
    /// records were re-applied.
    pub(crate) async fn recover(&self, resource: &str, grace: Duration) -> Result<usize> {
        let handle = self.resource(resource)?;
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let named = self.old_markers(resource, layout::PENDING, cutoff).await?;
        let anonymous = self
            .old_markers(resource, layout::PENDING_INSERT, cutoff)
            .await?;
        if named.is_empty() && anonymous.is_empty() {
            return Ok(0);
        }
        let span = tracing::info_span!(
            "fulltext.recover",
            resource,
            markers = named.len() + anonymous.len()
        );
        self.redo(&handle, named, anonymous).instrument(span).await
    }

    async fn redo(&self, handle: &Resource, named: Vec<Key>, anonymous: Vec<Key>) -> Result<usize> {
        let resource = handle.name();
        let mut ids: BTreeSet<String> = named
            .iter()
            .filter_map(|k| {
                let parts: Vec<&str> = k.parts().collect();
                parts
                    .len()
                    .checked_sub(2)
                    .and_then(|i| parts.get(i))
                    .map(|s| (*s).to_owned())
            })
            .collect();
        if !anonymous.is_empty() {
            // The id of a crashed insert is unknown: compare the records with the index.
            let records: BTreeSet<String> = handle.list_ids().await?.into_iter().collect();
            let indexed = self.doc_ids(resource).await?;
            ids.extend(records.symmetric_difference(&indexed).cloned());
        }
        let ids: Vec<String> = ids.into_iter().collect();
        for chunk in ids.chunks(REBUILD_CHUNK) {
            self.apply(handle, chunk).await?;
        }
        let markers: Vec<Key> = named.into_iter().chain(anonymous).collect();
        for result in self
            .storage()
            .store()
            .delete_many(&markers, CONCURRENCY)
            .await
        {
            result?;
        }
        self.emit(&FullTextEvent::Recovered {
            resource: resource.to_owned(),
            records: ids.len(),
        });
        Ok(ids.len())
    }

    async fn old_markers(
        &self,
        resource: &str,
        sub: &str,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Key>> {
        let prefix = self.layout.sub(resource, sub)?;
        self.storage()
            .store()
            .list(Some(&prefix))
            .try_filter(|e| futures::future::ready(e.last_modified <= cutoff))
            .map_ok(|e| e.key)
            .try_collect()
            .await
    }

    /// Ids with an entry in `docs/` (tombstones of deleted records included).
    async fn doc_ids(&self, resource: &str) -> Result<BTreeSet<String>> {
        let keys = self
            .storage()
            .list_for_resource(resource, Some(layout::DOCS), None)
            .await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.parts().last().map(str::to_owned))
            .collect())
    }

    /// Deletes the index of `resource` (postings, lengths, entries); its settings and pending
    /// markers stay. Returns how many objects were deleted.
    pub(crate) async fn clear(&self, resource: &str) -> Result<u64> {
        self.config(resource)?;
        let mut deleted = 0;
        for sub in [layout::TERMS, layout::LENGTHS, layout::DOCS] {
            let prefix = self.layout.sub(resource, sub)?;
            deleted += self.storage().store().delete_prefix(&prefix).await?;
        }
        Ok(deleted)
    }

    /// Clears the index of `resource`, then indexes every record again; returns how many.
    pub(crate) async fn rebuild(&self, resource: &str) -> Result<usize> {
        let span = tracing::info_span!("fulltext.rebuild", resource);
        self.rebuild_in_span(resource).instrument(span).await
    }

    async fn rebuild_in_span(&self, resource: &str) -> Result<usize> {
        let handle = self.resource(resource)?;
        self.clear(resource).await?;
        // Listed after the clear: a record written meanwhile is either listed here or indexed
        // by its writer after the clear.
        let ids = handle.list_ids().await?;
        for chunk in ids.chunks(REBUILD_CHUNK) {
            self.apply(&handle, chunk).await?;
        }
        let key = self.layout.meta(resource)?;
        self.storage()
            .set(&key, &self.meta(resource)?, body_only())
            .await?;
        self.emit(&FullTextEvent::Rebuilt {
            resource: resource.to_owned(),
            records: ids.len(),
        });
        Ok(ids.len())
    }

    // ----- reading -----

    /// The postings shards of `resource` whose names start with `encoded` (for short prefixes).
    pub(crate) async fn shards_starting_with(
        &self,
        resource: &str,
        encoded: &str,
    ) -> Result<Vec<Key>> {
        let keys = self
            .storage()
            .list_for_resource(resource, Some(layout::TERMS), None)
            .await?;
        Ok(keys
            .into_iter()
            .filter(|k| k.parts().last().is_some_and(|s| s.starts_with(encoded)))
            .collect())
    }

    /// Every record's field lengths.
    pub(crate) async fn all_lengths(
        &self,
        resource: &str,
    ) -> Result<HashMap<String, BTreeMap<String, u32>>> {
        let keys = (0..self.settings.length_shards)
            .map(|n| self.layout.lengths(resource, n))
            .collect::<Result<Vec<_>>>()?;
        let mut out = HashMap::new();
        for shard in self.read_shards(&keys).await? {
            for (id, lengths) in shard {
                out.insert(id, parse_counts(&lengths));
            }
        }
        Ok(out)
    }

    /// The contents of postings shards (an empty map for a missing one).
    pub(crate) async fn read_shards(&self, keys: &[Key]) -> Result<Vec<Map<String, Value>>> {
        self.storage()
            .batch_get(keys)
            .await
            .into_iter()
            .map(|shard| shard.map(Option::unwrap_or_default))
            .collect()
    }

    /// Every postings shard of `resource`.
    pub(crate) async fn all_shards(&self, resource: &str) -> Result<Vec<Map<String, Value>>> {
        let keys = self
            .storage()
            .list_for_resource(resource, Some(layout::TERMS), None)
            .await?;
        self.read_shards(&keys).await
    }

    /// How many pending markers `resource` has.
    pub(crate) async fn pending(&self, resource: &str) -> Result<usize> {
        let mut n = 0;
        for sub in [layout::PENDING, layout::PENDING_INSERT] {
            n += self
                .storage()
                .list_for_resource(resource, Some(sub), None)
                .await?
                .len();
        }
        Ok(n)
    }
}

/// field → count, from stored JSON.
pub(crate) fn parse_counts(value: &Value) -> BTreeMap<String, u32> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((k.clone(), u32::try_from(v.as_u64()?).unwrap_or(u32::MAX)))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn apply_postings(data: &mut Map<String, Value>, changes: &[PostingChange]) -> bool {
    let mut changed = false;
    for (term, id, value) in changes {
        match value {
            Some(fields) => {
                let new = json!(fields);
                let docs = data
                    .entry(term.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(docs) = docs {
                    if docs.get(id) != Some(&new) {
                        docs.insert(id.clone(), new);
                        changed = true;
                    }
                } else {
                    *docs = json!({ id.clone(): new });
                    changed = true;
                }
            }
            None => {
                if let Some(Value::Object(docs)) = data.get_mut(term) {
                    changed |= docs.remove(id).is_some();
                    if docs.is_empty() {
                        data.remove(term);
                    }
                }
            }
        }
    }
    changed
}

fn apply_lengths(data: &mut Map<String, Value>, changes: &[LengthChange]) -> bool {
    let mut changed = false;
    for (id, value) in changes {
        match value {
            Some(lengths) => {
                let new = json!(lengths);
                if data.get(id) != Some(&new) {
                    data.insert(id.clone(), new);
                    changed = true;
                }
            }
            None => changed |= data.remove(id).is_some(),
        }
    }
    changed
}

fn retryable(e: &Error) -> bool {
    e.is_conflict() || e.is_not_found() || e.is_transient()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Retries of a compare-and-swap loop: conflicts (up to [`MAX_CONFLICTS`]) with jittered
/// exponential backoff, transient failures (up to [`MAX_TRANSIENT_RETRIES`]) at once.
pub(crate) struct Retry {
    next: Duration,
    conflicts: u32,
    transient: u32,
}

impl Retry {
    pub(crate) fn new() -> Self {
        Self {
            next: Duration::from_millis(2),
            conflicts: 0,
            transient: 0,
        }
    }

    pub(crate) async fn after(&mut self, e: Error) -> Result<()> {
        if retryable(&e) && !e.is_transient() && self.conflicts < MAX_CONFLICTS {
            self.conflicts += 1;
            let current = self.next;
            self.next = (current * 2).min(Duration::from_millis(200));
            let micros = u64::try_from(current.as_micros()).unwrap_or(u64::MAX);
            tokio::time::sleep(Duration::from_micros(rand::random_range(
                micros / 2..=micros,
            )))
            .await;
            Ok(())
        } else if e.is_transient() && self.transient < MAX_TRANSIENT_RETRIES {
            self.transient += 1;
            Ok(())
        } else {
            Err(e)
        }
    }
}
