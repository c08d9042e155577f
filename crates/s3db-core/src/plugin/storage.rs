//! [`PluginStorage`]: namespaced key-value storage of one plugin, with TTLs, race-free counters and
//! race-free locks.
//!
//! ## Layout
//! ```text
//! plugin=<slug>/<path…>                 plugin-global entries
//! resource=<r>/plugin=<slug>/<path…>    entries scoped to resource <r>
//! plugin=<slug>/locks/<name>            lock leases (see below): `locks/` is reserved for them
//! ```
//! Every operation that takes a [`Key`] refuses keys outside these two namespaces
//! ([`Error::BadKey`]), so a plugin cannot overwrite a record or another plugin's data by mistake.
//!
//! ## Values
//! A value is a JSON object, written with the document codec ([`crate::codec`]) under a
//! [`Behavior`] (default [`Behavior::BodyOverflow`]: small fields in S3 user metadata, the rest in
//! the body). Field names are free (they are escaped), and the codec hashes the metadata into the
//! body, so every change of a value changes its ETag — on S3 too, where the ETag is the MD5 of the
//! body. System metadata entries (never visible in the value):
//! `_e` expiry (epoch milliseconds), `_b` the behavior when it is not the default, `_o` the last
//! write ids of a counter.
//!
//! ## TTL
//! An entry written with a TTL carries its expiry. Once expired it reads as absent: [`get`],
//! [`get_entry`], [`batch_get`], [`has`], [`ttl`], [`touch`] and the counters treat it as missing,
//! and the next write replaces it. Nothing deletes expired objects in the background, so [`list`] and
//! [`list_for_resource`] (which only list keys, without reading them) may still return them;
//! [`is_expired`] tells them apart. Expiry is judged by the reader's clock.
//!
//! ## Counters
//! A counter is an entry `{"value": <i64>}`. [`increment`] is a compare-and-swap loop on the
//! ETag: read, add, write back with `If-Match` (or `If-None-Match: *` when absent), retry on
//! conflict with jittered exponential backoff. Concurrent increments from any number of tasks and
//! processes sum exactly. A write whose answer was lost (a transient failure after the store
//! applied it) is recognised on the next read by its write id, so retrying never counts twice
//! (the last [`COUNTER_WRITE_IDS`] write ids are kept).
//!
//! ## Locks
//! A lock is a lease object `plugin=<slug>/locks/<name>` holding `{owner, token, expires_at,
//! released}`. [`acquire_lock`] creates it conditionally; when it exists and its lease is expired
//! or released, it is taken over **only** by a conditional update on that lease's ETag — never
//! delete-then-create — so two contenders can never both win. Otherwise it waits with jittered
//! exponential backoff until the timeout. [`LockGuard::renew`] and [`LockGuard::release`] are
//! conditional updates on the ETag the guard holds; release writes a released lease (a tombstone)
//! instead of deleting, so it can never remove someone else's lease. A guard whose lease expired
//! and was taken over gets [`Error::Refused`] from `renew`/`release` and leaves the new holder
//! alone. Lease expiry is judged by wall clocks: keep the TTL well above the clock skew between
//! the processes sharing a lock, and renew long critical sections.
//!
//! ```
//! # async fn demo() -> s3db_core::Result<()> {
//! use s3db_core::Store;
//! use s3db_core::plugin::{LockOptions, PluginStorage, SetOptions};
//! use std::time::Duration;
//!
//! let storage = PluginStorage::new(Store::open("memory://docs/plugin-storage")?, "my-plugin")?;
//! let config = storage.key(None, &["config"])?;
//! let value = serde_json::json!({"enabled": true});
//! let value = value.as_object().cloned().unwrap_or_default();
//! storage.set(&config, &value, SetOptions::new()).await?;
//! assert_eq!(storage.get(&config).await?, Some(value));
//!
//! let hits = storage.key(Some("users"), &["hits"])?;
//! assert_eq!(storage.increment(&hits, 2).await?, 2);
//!
//! if let Some(lock) = storage.acquire_lock("rebuild", LockOptions::new().timeout(Duration::from_secs(1))).await? {
//!     // … critical section …
//!     lock.release().await?;
//! }
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! [`get`]: PluginStorage::get
//! [`get_entry`]: PluginStorage::get_entry
//! [`batch_get`]: PluginStorage::batch_get
//! [`has`]: PluginStorage::has
//! [`ttl`]: PluginStorage::ttl
//! [`touch`]: PluginStorage::touch
//! [`list`]: PluginStorage::list
//! [`list_for_resource`]: PluginStorage::list_for_resource
//! [`is_expired`]: PluginStorage::is_expired
//! [`increment`]: PluginStorage::increment
//! [`acquire_lock`]: PluginStorage::acquire_lock

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use crate::codec::{self, Behavior, Encoded, FieldMap};
use crate::error::{Error, KeyProblem, Result};
use crate::key::{Key, check_part};
use crate::store::{ETag, Store};

/// How many items [`PluginStorage::batch_set`] and [`PluginStorage::batch_get`] run at once.
pub const BATCH_CONCURRENCY: usize = 16;

/// How many of a counter's last write ids are kept (to recognise a write whose answer was lost):
/// an increment whose write was applied but reported as failed re-reads at once, and counts it as
/// done if its id is among these. (32 ids take about 450 bytes of metadata.)
pub const COUNTER_WRITE_IDS: usize = 32;

/// Transient failures a counter, touch or lock operation retries before giving up.
pub const MAX_TRANSIENT_RETRIES: u32 = 5;

/// Conflicting writes a compare-and-swap loop ([`PluginStorage::increment`],
/// [`PluginStorage::touch`]) tolerates before returning [`Error::PreconditionFailed`].
pub const MAX_CONFLICTS: u32 = 10_000;

/// Metadata entry of the expiry (epoch milliseconds).
const EXPIRES: &str = "_e";
/// Metadata entry of the behavior, when it is not the default.
const BEHAVIOR: &str = "_b";
/// Metadata entry of a counter's last write ids (comma-separated).
const WRITE_IDS: &str = "_o";
/// Field of a counter's value.
const COUNTER_FIELD: &str = "value";
/// Sub-path of lock leases below `plugin=<slug>/`.
const LOCKS: &str = "locks";
/// Latest representable expiry (9999-12-31T23:59:59.999Z).
const MAX_EXPIRES_MS: i64 = 253_402_300_799_999;

/// How [`PluginStorage::set`] writes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// Where the fields go (default [`Behavior::BodyOverflow`]).
    pub behavior: Behavior,
    /// Time to live; `None` (the default) never expires.
    pub ttl: Option<Duration>,
}

impl Default for SetOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SetOptions {
    /// Body-overflow, no TTL.
    #[must_use]
    pub fn new() -> Self {
        Self {
            behavior: Behavior::BodyOverflow,
            ttl: None,
        }
    }

    /// Sets the behavior.
    #[must_use]
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// Sets the time to live.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// A live value with what a compare-and-swap needs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The value.
    pub data: Map<String, Value>,
    /// Its version: pass to [`PluginStorage::update_entry`].
    pub etag: ETag,
    /// When it expires, if it has a TTL.
    pub expires_at: Option<DateTime<Utc>>,
}

/// How [`PluginStorage::acquire_lock`] tries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// Lease duration: the lock frees itself this long after acquisition unless renewed
    /// (default 30 s).
    pub ttl: Duration,
    /// How long to wait for a held lock (default zero: one try).
    pub timeout: Duration,
    /// Who holds the lock, for humans (default `<hostname>-<pid>-<random>`).
    pub owner: String,
    /// Longest pause between two tries while waiting (default 100 ms). Each waiter polls with one
    /// request per pause: raise it when many processes wait on a slow or billed store.
    pub max_backoff: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            timeout: Duration::ZERO,
            owner: default_owner(),
            max_backoff: Duration::from_millis(100),
        }
    }
}

impl LockOptions {
    /// The defaults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the lease duration.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how long to wait for a held lock.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the owner shown in the lease.
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Sets the longest pause between two tries.
    #[must_use]
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }
}

/// Namespaced storage of one plugin. Cheap to clone (the store is shared).
#[derive(Debug, Clone)]
pub struct PluginStorage {
    store: Store,
    slug: String,
    /// Lock objects this storage has seen exist: acquiring one starts by reading its lease
    /// instead of a create that would fail (a released lease stays as a tombstone). Only a hint:
    /// a lease deleted meanwhile is created again on the next try.
    known_leases: Arc<Mutex<HashSet<Key>>>,
}

/// At most this many remembered lock names per storage (forgotten all at once beyond).
const KNOWN_LEASES: usize = 1024;

/// An object as stored, expired or not.
#[derive(Debug)]
struct Raw {
    etag: ETag,
    data: Map<String, Value>,
    system: BTreeMap<String, String>,
    expires_at: Option<i64>,
}

impl Raw {
    fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    fn write_ids(&self) -> impl Iterator<Item = &str> {
        self.system
            .get(WRITE_IDS)
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
    }
}

impl PluginStorage {
    /// Storage of the plugin `slug` in `store`. No request is made.
    ///
    /// # Errors
    /// [`Error::BadKey`] if `slug` is empty or has anything but `a-z`, `0-9` and `-`.
    pub fn new(store: Store, slug: &str) -> Result<Self> {
        if slug.is_empty()
            || !slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::BadKey {
                key: slug.chars().take(200).collect(),
                reason: KeyProblem::Invalid(
                    "a plugin slug must be non-empty and made of a-z, 0-9 and '-'".to_owned(),
                ),
            });
        }
        Ok(Self {
            store,
            slug: slug.to_owned(),
            known_leases: Arc::default(),
        })
    }

    /// The plugin's slug.
    #[must_use]
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The store underneath.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn plugin_part(&self) -> String {
        format!("plugin={}", self.slug)
    }

    /// The key of `path` in the plugin's global namespace (`plugin=<slug>/<path…>`), or in the one
    /// scoped to `resource` (`resource=<r>/plugin=<slug>/<path…>`).
    ///
    /// ```
    /// # fn demo() -> s3db_core::Result<()> {
    /// # let storage = s3db_core::plugin::PluginStorage::new(s3db_core::Store::open("memory://docs/k")?, "cache")?;
    /// assert_eq!(storage.key(None, &["config"])?.as_str(), "plugin=cache/config");
    /// assert_eq!(storage.key(Some("users"), &["u", "1"])?.as_str(), "resource=users/plugin=cache/u/1");
    /// assert!(storage.key(None, &["a/b"]).is_err());
    /// # Ok(()) }
    /// # demo().unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::BadKey`] if `path` is empty or a part (or the resource name) is not a valid key
    /// part (empty, containing `/` or `..`, control characters).
    pub fn key(&self, resource: Option<&str>, path: &[&str]) -> Result<Key> {
        if path.is_empty() {
            return Err(Error::BadKey {
                key: String::new(),
                reason: KeyProblem::Empty,
            });
        }
        let mut parts = self.namespace_parts(resource)?;
        for part in path {
            check_part(part)?;
            parts.push((*part).to_owned());
        }
        Key::from_parts(parts)
    }

    /// The parts of a namespace root: `[plugin=<slug>]` or `[resource=<r>, plugin=<slug>]`.
    fn namespace_parts(&self, resource: Option<&str>) -> Result<Vec<String>> {
        Ok(match resource {
            None => vec![self.plugin_part()],
            Some(r) => {
                check_part(r)?;
                vec![format!("resource={r}"), self.plugin_part()]
            }
        })
    }

    /// A namespace root with a `/`-separated sub-prefix below it (leading and trailing `/`
    /// ignored).
    fn prefix(&self, resource: Option<&str>, sub_prefix: Option<&str>) -> Result<Key> {
        let mut parts = self.namespace_parts(resource)?;
        let sub = sub_prefix.unwrap_or_default().trim_matches('/');
        if !sub.is_empty() {
            for part in sub.split('/') {
                check_part(part)?;
                parts.push(part.to_owned());
            }
        }
        Key::from_parts(parts)
    }

    /// Refuses keys outside the plugin's namespaces.
    fn check_own(&self, key: &Key) -> Result<()> {
        let plugin = self.plugin_part();
        let parts: Vec<&str> = key.parts().collect();
        let own = match parts.as_slice() {
            [first, _, ..] if *first == plugin => true,
            [first, second, _, ..] => {
                first
                    .strip_prefix("resource=")
                    .is_some_and(|r| !r.is_empty())
                    && *second == plugin
            }
            _ => false,
        };
        if own {
            Ok(())
        } else {
            Err(Error::BadKey {
                key: key.as_str().chars().take(200).collect(),
                reason: KeyProblem::Invalid(format!(
                    "outside the storage of plugin {:?} (plugin={}/… or resource=<r>/plugin={}/…)",
                    self.slug, self.slug, self.slug
                )),
            })
        }
    }

    // ----- values -----

    /// Writes `data` at `key`, replacing whatever is there.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a key outside the plugin's namespaces; [`Error::MetadataLimit`] under
    /// [`Behavior::EnforceLimits`] when the fields do not fit; storage errors.
    pub async fn set(
        &self,
        key: &Key,
        data: &Map<String, Value>,
        opts: SetOptions,
    ) -> Result<ETag> {
        self.check_own(key)?;
        let expires_at = opts.ttl.map(|ttl| expiry_after(now_ms(), ttl));
        let encoded = encode(data, opts.behavior, expires_at, None)?;
        self.store.put(key, encoded.metadata, encoded.body).await
    }

    /// Writes `data` at `key` only if nothing live is there (an expired entry is replaced, by a
    /// conditional update on its ETag).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if a live entry is there; otherwise as [`PluginStorage::set`].
    pub async fn create(
        &self,
        key: &Key,
        data: &Map<String, Value>,
        opts: SetOptions,
    ) -> Result<ETag> {
        self.check_own(key)?;
        let mut conflicts = 0;
        loop {
            let now = now_ms();
            let expires_at = opts.ttl.map(|ttl| expiry_after(now, ttl));
            let encoded = encode(data, opts.behavior, expires_at, None)?;
            let written = match self.read_raw(key).await? {
                Some(raw) if raw.live(now) => {
                    return Err(Error::AlreadyExists {
                        key: key.to_string(),
                    });
                }
                Some(raw) => {
                    self.store
                        .update(key, encoded.metadata, encoded.body, &raw.etag)
                        .await
                }
                None => self.store.create(key, encoded.metadata, encoded.body).await,
            };
            match written {
                // Someone wrote in between: look again (it may be live now).
                Err(e) if e.is_conflict() && conflicts < MAX_CONFLICTS => conflicts += 1,
                other => return other,
            }
        }
    }

    /// The value at `key`; `None` if missing or expired.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a key outside the plugin's namespaces; [`Error::Corrupt`] for an
    /// object that is not a stored value; storage errors.
    pub async fn get(&self, key: &Key) -> Result<Option<Map<String, Value>>> {
        Ok(self.get_entry(key).await?.map(|e| e.data))
    }

    /// The value at `key` with its ETag and expiry; `None` if missing or expired.
    ///
    /// # Errors
    /// As [`PluginStorage::get`].
    pub async fn get_entry(&self, key: &Key) -> Result<Option<Entry>> {
        self.check_own(key)?;
        let now = now_ms();
        Ok(self
            .read_raw(key)
            .await?
            .filter(|raw| raw.live(now))
            .map(|raw| Entry {
                expires_at: raw.expires_at.and_then(DateTime::from_timestamp_millis),
                data: raw.data,
                etag: raw.etag,
            }))
    }

    /// Replaces the value at `key` only if its version is still `expected` (`If-Match`).
    ///
    /// The condition is on the version only: an entry that expired since it was read is still
    /// replaced if nobody wrote it in between.
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] if the entry changed or is gone; otherwise as
    /// [`PluginStorage::set`].
    pub async fn update_entry(
        &self,
        key: &Key,
        data: &Map<String, Value>,
        opts: SetOptions,
        expected: &ETag,
    ) -> Result<ETag> {
        self.check_own(key)?;
        let expires_at = opts.ttl.map(|ttl| expiry_after(now_ms(), ttl));
        let encoded = encode(data, opts.behavior, expires_at, None)?;
        self.store
            .update(key, encoded.metadata, encoded.body, expected)
            .await
    }

    /// Deletes the entry at `key` (deleting a missing one succeeds).
    ///
    /// # Errors
    /// [`Error::BadKey`] for a key outside the plugin's namespaces; storage errors.
    pub async fn delete(&self, key: &Key) -> Result<()> {
        self.check_own(key)?;
        self.store.delete(key).await
    }

    /// Whether a live (present and not expired) entry is at `key` (one HEAD request).
    ///
    /// # Errors
    /// As [`PluginStorage::get`].
    pub async fn has(&self, key: &Key) -> Result<bool> {
        let now = now_ms();
        Ok(self
            .head_expiry(key)
            .await?
            .is_some_and(|e| e.is_none_or(|e| e > now)))
    }

    /// Whether an entry is at `key` but expired (one HEAD request). A missing key is **not**
    /// expired (`false`): use [`PluginStorage::has`] to ask whether a value is readable.
    ///
    /// # Errors
    /// As [`PluginStorage::get`].
    pub async fn is_expired(&self, key: &Key) -> Result<bool> {
        let now = now_ms();
        Ok(self
            .head_expiry(key)
            .await?
            .is_some_and(|e| e.is_some_and(|e| e <= now)))
    }

    /// The time left before the entry at `key` expires; `None` if it has no TTL, or is missing or
    /// already expired (one HEAD request).
    ///
    /// # Errors
    /// As [`PluginStorage::get`].
    pub async fn ttl(&self, key: &Key) -> Result<Option<Duration>> {
        let now = now_ms();
        Ok(self
            .head_expiry(key)
            .await?
            .flatten()
            .and_then(|e| u64::try_from(e - now).ok().filter(|left| *left > 0))
            .map(Duration::from_millis))
    }

    /// Pushes the expiry of the entry at `key` back by `extra`, with a conditional update (retried
    /// on conflict). Returns `false` if the entry is missing or expired. An entry without a TTL is
    /// left as it is (it never expires) and gives `true`.
    ///
    /// A transient failure whose write had in fact happened is retried, and then extends twice.
    ///
    /// # Errors
    /// As [`PluginStorage::get`]; [`Error::PreconditionFailed`] after [`MAX_CONFLICTS`] conflicts.
    pub async fn touch(&self, key: &Key, extra: Duration) -> Result<bool> {
        self.check_own(key)?;
        let mut retry = Retry::new(Duration::from_millis(1), Duration::from_millis(50));
        loop {
            let attempt = async {
                let now = now_ms();
                let Some(raw) = self.read_raw(key).await?.filter(|raw| raw.live(now)) else {
                    return Ok(false);
                };
                let Some(expires_at) = raw.expires_at else {
                    return Ok(true);
                };
                let behavior = stored_behavior(key, &raw.system)?;
                let expires_at = add_ms(expires_at, extra);
                let encoded = encode(
                    &raw.data,
                    behavior,
                    Some(expires_at),
                    raw.system.get(WRITE_IDS).map(String::as_str),
                )?;
                self.store
                    .update(key, encoded.metadata, encoded.body, &raw.etag)
                    .await?;
                Ok(true)
            };
            match attempt.await {
                Err(e) => retry.after(e).await?,
                done => return done,
            }
        }
    }

    // ----- listing and deleting -----

    /// Keys below `plugin=<slug>/` (or below `plugin=<slug>/<sub_prefix>/`, where `sub_prefix` is
    /// `/`-separated parts), in key order, at most `limit`. Lists keys only: expired entries and
    /// lock leases (`locks/…`) may be among them.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a bad sub-prefix; storage errors.
    pub async fn list(&self, sub_prefix: Option<&str>, limit: Option<usize>) -> Result<Vec<Key>> {
        let prefix = self.prefix(None, sub_prefix)?;
        self.list_below(&prefix, limit).await
    }

    /// Keys below `resource=<resource>/plugin=<slug>/` (and `sub_prefix`), as
    /// [`PluginStorage::list`].
    ///
    /// # Errors
    /// [`Error::BadKey`] for a bad resource name or sub-prefix; storage errors.
    pub async fn list_for_resource(
        &self,
        resource: &str,
        sub_prefix: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Key>> {
        let prefix = self.prefix(Some(resource), sub_prefix)?;
        self.list_below(&prefix, limit).await
    }

    async fn list_below(&self, prefix: &Key, limit: Option<usize>) -> Result<Vec<Key>> {
        self.store
            .list(Some(prefix))
            .take(limit.unwrap_or(usize::MAX))
            .map_ok(|entry| entry.key)
            .try_collect()
            .await
    }

    /// Deletes everything of the plugin: `plugin=<slug>/…` and `resource=<r>/plugin=<slug>/…` for
    /// each of `resources` (pass the database's resource names). Only these prefixes are listed:
    /// never the whole bucket. Returns how many objects were deleted.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a bad resource name (checked before anything is deleted); the first
    /// storage error.
    pub async fn delete_all(&self, resources: &[String]) -> Result<u64> {
        let mut prefixes = vec![self.prefix(None, None)?];
        for resource in resources {
            prefixes.push(self.prefix(Some(resource), None)?);
        }
        let mut deleted = 0;
        for prefix in &prefixes {
            deleted += self.store.delete_prefix(prefix).await?;
        }
        Ok(deleted)
    }

    /// Deletes everything of the plugin scoped to `resource`; returns how many objects were deleted.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a bad resource name; the first storage error.
    pub async fn delete_for_resource(&self, resource: &str) -> Result<u64> {
        let prefix = self.prefix(Some(resource), None)?;
        self.store.delete_prefix(&prefix).await
    }

    // ----- batches -----

    /// Writes every item, [`BATCH_CONCURRENCY`] at a time; one result per item, in order (a bad key
    /// or a failed write fails only its own item).
    pub async fn batch_set(
        &self,
        items: Vec<(Key, Map<String, Value>)>,
        opts: SetOptions,
    ) -> Vec<Result<ETag>> {
        // The futures are made before the stream (not by a closure of it), so that the batch's
        // future stays `Send` for any caller, a spawned task of a generic plugin included.
        let sets: Vec<_> = items
            .into_iter()
            .map(|(key, data)| async move { self.set(&key, &data, opts).await })
            .collect();
        futures::stream::iter(sets)
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await
    }

    /// Reads every key, [`BATCH_CONCURRENCY`] at a time; one result per key, in order (`Ok(None)`
    /// for a missing or expired one).
    pub async fn batch_get(&self, keys: &[Key]) -> Vec<Result<Option<Map<String, Value>>>> {
        let gets: Vec<_> = keys.iter().map(|key| self.get(key)).collect();
        futures::stream::iter(gets)
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await
    }

    // ----- counters -----

    /// Adds `by` to the counter at `key` (a missing or expired counter counts as 0) and returns the
    /// new value. Exact under any concurrency (compare-and-swap on the ETag); an existing TTL is
    /// kept.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a key outside the plugin's namespaces; [`Error::Corrupt`] if the entry
    /// is not a counter (no integer `value`); [`Error::Refused`] on overflow; a transient storage
    /// error that persisted through [`MAX_TRANSIENT_RETRIES`] retries;
    /// [`Error::PreconditionFailed`] after [`MAX_CONFLICTS`] conflicts.
    pub async fn increment(&self, key: &Key, by: i64) -> Result<i64> {
        self.add(key, by, None, "increment").await
    }

    /// Like [`PluginStorage::increment`], but a counter that starts (missing or expired) gets this
    /// TTL: a fixed-window counter, for rate limits. A live counter keeps its expiry.
    ///
    /// # Errors
    /// As [`PluginStorage::increment`].
    pub async fn increment_with_ttl(&self, key: &Key, by: i64, ttl: Duration) -> Result<i64> {
        self.add(key, by, Some(ttl), "increment").await
    }

    /// Subtracts `by` from the counter at `key`; returns the new value.
    ///
    /// # Errors
    /// As [`PluginStorage::increment`].
    pub async fn decrement(&self, key: &Key, by: i64) -> Result<i64> {
        let by = by.checked_neg().ok_or_else(|| overflow("decrement", key))?;
        self.add(key, by, None, "decrement").await
    }

    /// The value of the counter at `key`; 0 when missing or expired.
    ///
    /// # Errors
    /// As [`PluginStorage::get`]; [`Error::Corrupt`] if the entry is not a counter.
    pub async fn counter(&self, key: &Key) -> Result<i64> {
        match self.get(key).await? {
            Some(data) => counter_value(key, &data),
            None => Ok(0),
        }
    }

    async fn add(
        &self,
        key: &Key,
        by: i64,
        ttl: Option<Duration>,
        operation: &'static str,
    ) -> Result<i64> {
        self.check_own(key)?;
        // Every write attempt gets an id; an attempt whose outcome is unknown is recognised by it.
        let mut attempts: Vec<(String, i64)> = Vec::new();
        let mut retry = Retry::new(Duration::from_millis(1), Duration::from_millis(50));
        loop {
            match self.try_add(key, by, ttl, operation, &mut attempts).await {
                Ok(value) => return Ok(value),
                Err(e) => retry.after(e).await?,
            }
        }
    }

    async fn try_add(
        &self,
        key: &Key,
        by: i64,
        ttl: Option<Duration>,
        operation: &'static str,
        attempts: &mut Vec<(String, i64)>,
    ) -> Result<i64> {
        let raw = self.read_raw(key).await?;
        if let Some(raw) = &raw {
            for id in raw.write_ids() {
                if let Some((_, value)) = attempts.iter().find(|(mine, _)| mine == id) {
                    return Ok(*value);
                }
            }
        }
        let now = now_ms();
        let (current, expires_at, mut ids, expected) = match raw {
            Some(raw) if raw.live(now) => {
                let ids: Vec<String> = raw.write_ids().map(str::to_owned).collect();
                (
                    counter_value(key, &raw.data)?,
                    raw.expires_at,
                    ids,
                    Some(raw.etag),
                )
            }
            Some(raw) => (
                0,
                ttl.map(|t| expiry_after(now, t)),
                Vec::new(),
                Some(raw.etag),
            ),
            None => (0, ttl.map(|t| expiry_after(now, t)), Vec::new(), None),
        };
        let value = current
            .checked_add(by)
            .ok_or_else(|| overflow(operation, key))?;
        let id = format!("{:x}", rand::random::<u64>());
        ids.push(id.clone());
        let skip = ids.len().saturating_sub(COUNTER_WRITE_IDS);
        let ids = ids.get(skip..).unwrap_or_default().join(",");
        let mut data = Map::new();
        data.insert(COUNTER_FIELD.to_owned(), Value::from(value));
        let encoded = encode(&data, Behavior::BodyOverflow, expires_at, Some(&ids))?;
        attempts.push((id, value));
        match expected {
            Some(etag) => {
                self.store
                    .update(key, encoded.metadata, encoded.body, &etag)
                    .await?
            }
            None => {
                self.store
                    .create(key, encoded.metadata, encoded.body)
                    .await?
            }
        };
        Ok(value)
    }

    // ----- locks -----

    fn lock_key(&self, name: &str) -> Result<Key> {
        check_part(name)?;
        Key::from_parts([self.plugin_part().as_str(), LOCKS, name])
    }

    /// Acquires the lock `name` (one key part: no `/`); `Ok(None)` if it is still held by someone
    /// else when `opts.timeout` has passed.
    ///
    /// Creates the lease conditionally (or, for a lock this storage has seen before, reads it
    /// first: a released lease stays as a tombstone, so an uncontended acquisition is 1 GET + 1
    /// PUT, and a release 1 PUT); takes over an expired or released lease only with a
    /// conditional update on its ETag; otherwise waits with jittered exponential backoff (up to
    /// `opts.max_backoff` between tries). Transient failures are retried (up to
    /// [`MAX_TRANSIENT_RETRIES`], even past the timeout, so a lease whose answer was lost is
    /// recognised as ours rather than left behind).
    ///
    /// # Errors
    /// [`Error::BadKey`] for a bad name; [`Error::Corrupt`] if the lock object is not a lease;
    /// a storage error (after the retries, for a transient one).
    pub async fn acquire_lock(&self, name: &str, opts: LockOptions) -> Result<Option<LockGuard>> {
        let key = self.lock_key(name)?;
        let token = format!("{:032x}", rand::random::<u128>());
        let deadline = Instant::now() + opts.timeout;
        let first = Duration::from_millis(2).min(opts.max_backoff);
        let mut backoff = Backoff::new(first, opts.max_backoff);
        let mut transient = 0;
        let mut try_create = !self.lease_known(&key);
        loop {
            let mut retry_now = false;
            let attempt = self.try_acquire(&key, &token, &opts, &mut try_create).await;
            self.remember_lease(&key, !try_create);
            match attempt {
                Ok(Some((etag, lease))) => {
                    return Ok(Some(LockGuard {
                        storage: self.clone(),
                        key,
                        name: name.to_owned(),
                        lease,
                        etag,
                        done: false,
                    }));
                }
                Ok(None) => {}
                Err(e) if e.is_transient() && transient < MAX_TRANSIENT_RETRIES => {
                    transient += 1;
                    retry_now = true;
                }
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline && !retry_now {
                return Ok(None);
            }
            let pause = backoff.next_delay();
            let pause = if retry_now {
                pause
            } else {
                pause.min(deadline - now)
            };
            tokio::time::sleep(pause).await;
        }
    }

    fn lease_known(&self, key: &Key) -> bool {
        self.known_leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key)
    }

    /// Records whether the lease object at `key` is known to exist.
    fn remember_lease(&self, key: &Key, exists: bool) {
        let mut known = self
            .known_leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !exists {
            known.remove(key);
        } else if !known.contains(key) {
            if known.len() >= KNOWN_LEASES {
                known.clear();
            }
            known.insert(key.clone());
        }
    }

    /// One try: `Some` with the lease now ours, `None` if someone else holds it.
    async fn try_acquire(
        &self,
        key: &Key,
        token: &str,
        opts: &LockOptions,
        try_create: &mut bool,
    ) -> Result<Option<(ETag, Lease)>> {
        let lease = |now: i64| Lease {
            owner: opts.owner.clone(),
            token: token.to_owned(),
            expires_at: expiry_after(now, opts.ttl),
            released: false,
        };
        let mut created = false;
        let read = loop {
            if *try_create {
                created = true;
                let mine = lease(now_ms());
                match self.write_lease(key, &mine, None).await {
                    Ok(etag) => {
                        *try_create = false;
                        return Ok(Some((etag, mine)));
                    }
                    Err(Error::AlreadyExists { .. }) => *try_create = false,
                    Err(e) => return Err(e),
                }
            }
            match self.read_lease(key).await? {
                // No lease where one was expected: create it now, once per try (when the create
                // itself just failed, it was deleted in between: next time).
                None => {
                    *try_create = true;
                    if created {
                        return Ok(None);
                    }
                }
                Some(found) => break found,
            }
        };
        let now = now_ms();
        match read {
            // Our own earlier write, whose answer was lost.
            (etag, current)
                if current.token == token && !current.released && current.expires_at > now =>
            {
                Ok(Some((etag, current)))
            }
            (etag, current) if current.released || current.expires_at <= now => {
                let mine = lease(now_ms());
                match self.write_lease(key, &mine, Some(&etag)).await {
                    Ok(etag) => Ok(Some((etag, mine))),
                    // Someone else took it over first.
                    Err(Error::PreconditionFailed { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(None),
        }
    }

    /// Whether the lock `name` is held: its lease exists, is not released and has not expired.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a bad name; [`Error::Corrupt`] if the lock object is not a lease;
    /// storage errors.
    pub async fn is_locked(&self, name: &str) -> Result<bool> {
        let key = self.lock_key(name)?;
        let now = now_ms();
        Ok(self
            .read_lease(&key)
            .await?
            .is_some_and(|(_, lease)| !lease.released && lease.expires_at > now))
    }

    async fn write_lease(&self, key: &Key, lease: &Lease, expected: Option<&ETag>) -> Result<ETag> {
        let encoded = encode(
            &lease.to_doc(),
            Behavior::BodyOverflow,
            Some(lease.expires_at),
            None,
        )?;
        match expected {
            Some(etag) => {
                self.store
                    .update(key, encoded.metadata, encoded.body, etag)
                    .await
            }
            None => self.store.create(key, encoded.metadata, encoded.body).await,
        }
    }

    async fn read_lease(&self, key: &Key) -> Result<Option<(ETag, Lease)>> {
        match self.read_raw(key).await? {
            Some(raw) => Ok(Some((raw.etag, Lease::from_doc(key, &raw.data)?))),
            None => Ok(None),
        }
    }

    /// Conditional update of our lease (renew or release), retrying transient failures; a lost
    /// race is recognised as ours when the stored lease is `mine` (the write had happened).
    async fn rewrite_lease(
        &self,
        key: &Key,
        name: &str,
        mine: &Lease,
        expected: &ETag,
        operation: &'static str,
    ) -> Result<ETag> {
        let mut transient = 0;
        let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
        loop {
            let outcome = async {
                match self.write_lease(key, mine, Some(expected)).await {
                    Err(Error::PreconditionFailed { .. }) => match self.read_lease(key).await? {
                        Some((etag, current)) if current == *mine => Ok(etag),
                        current => Err(Error::Refused {
                            operation,
                            reason: format!(
                                "lock {name:?} is no longer held by this guard (owner {:?}): {}",
                                mine.owner,
                                match current {
                                    None => "its lease was deleted".to_owned(),
                                    Some((_, c)) if c.token == mine.token =>
                                        "its lease was changed".to_owned(),
                                    Some((_, c)) => format!(
                                        "another acquisition replaced its lease (now {})",
                                        if c.released {
                                            "released".to_owned()
                                        } else {
                                            format!("held by {:?}", c.owner)
                                        }
                                    ),
                                }
                            ),
                        }),
                    },
                    other => other,
                }
            }
            .await;
            match outcome {
                Err(e) if e.is_transient() && transient < MAX_TRANSIENT_RETRIES => {
                    transient += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => return other,
            }
        }
    }

    // ----- reading -----

    async fn read_raw(&self, key: &Key) -> Result<Option<Raw>> {
        let object = match self.store.get(key).await {
            Ok(object) => object,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let decoded = codec::decode(
            &object.head.metadata,
            &object.body,
            &FieldMap::new(),
            key.as_str(),
        )?;
        let expires_at = parse_expiry(key, decoded.system.get(EXPIRES).map(String::as_str))?;
        Ok(Some(Raw {
            etag: object.head.etag,
            data: decoded.doc,
            system: decoded.system,
            expires_at,
        }))
    }

    /// `None` if missing, `Some(expiry)` otherwise (one HEAD request).
    async fn head_expiry(&self, key: &Key) -> Result<Option<Option<i64>>> {
        self.check_own(key)?;
        match self.store.head(key).await {
            Ok(head) => Ok(Some(parse_expiry(key, head.metadata.get(EXPIRES))?)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A held lock. Release it with [`LockGuard::release`].
///
/// Dropping a guard that was not released spawns a best-effort release on the current tokio
/// runtime, if there is one; if the runtime shuts down first, or there is none, the lease simply
/// expires after its TTL. Prefer an explicit `release().await`, which reports failures.
#[derive(Debug)]
pub struct LockGuard {
    storage: PluginStorage,
    key: Key,
    name: String,
    lease: Lease,
    etag: ETag,
    done: bool,
}

impl LockGuard {
    /// The lock's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key of the lease object.
    #[must_use]
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The owner written in the lease.
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.lease.owner
    }

    /// The random token of this acquisition.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.lease.token
    }

    /// When the lease expires unless renewed.
    #[must_use]
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.lease.expires_at).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Whether the lease has expired by this machine's clock (then another process may take the
    /// lock over at any moment; [`LockGuard::renew`] succeeds only if none did).
    #[must_use]
    pub fn is_expired(&self) -> bool {
        self.lease.expires_at <= now_ms()
    }

    /// Extends the lease to `ttl` from now, with a conditional update on the lease this guard
    /// wrote. Succeeds even after expiry as long as nobody took the lock over.
    ///
    /// # Errors
    /// [`Error::Refused`] (operation `renew`) if the lease is no longer ours (expired and taken
    /// over, or released) — the other holder's lease is left untouched; storage errors.
    pub async fn renew(&mut self, ttl: Duration) -> Result<()> {
        if self.done {
            return Err(Error::Refused {
                operation: "renew",
                reason: format!("lock {:?} was already released", self.name),
            });
        }
        let renewed = Lease {
            expires_at: expiry_after(now_ms(), ttl),
            ..self.lease.clone()
        };
        let etag = self
            .storage
            .rewrite_lease(&self.key, &self.name, &renewed, &self.etag, "renew")
            .await?;
        self.etag = etag;
        self.lease = renewed;
        Ok(())
    }

    /// Releases the lock: writes a released lease (tombstone) with a conditional update on the
    /// lease this guard wrote, so the lock is free at once and someone else's lease is never
    /// touched.
    ///
    /// # Errors
    /// [`Error::Refused`] (operation `release`) if the lease is no longer ours (it expired and was
    /// taken over); storage errors. Either way the guard is spent.
    pub async fn release(mut self) -> Result<()> {
        self.done = true;
        release(
            &self.storage,
            &self.key,
            &self.name,
            &self.lease,
            &self.etag,
        )
        .await
    }
}

async fn release(
    storage: &PluginStorage,
    key: &Key,
    name: &str,
    lease: &Lease,
    etag: &ETag,
) -> Result<()> {
    let tombstone = Lease {
        expires_at: now_ms().min(lease.expires_at),
        released: true,
        ..lease.clone()
    };
    storage
        .rewrite_lease(key, name, &tombstone, etag, "release")
        .await
        .map(drop)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let storage = self.storage.clone();
            let (key, name, lease, etag) = (
                self.key.clone(),
                self.name.clone(),
                self.lease.clone(),
                self.etag.clone(),
            );
            runtime.spawn(async move {
                if let Err(e) = release(&storage, &key, &name, &lease, &etag).await {
                    tracing::debug!("dropped lock guard could not release {name:?}: {e}");
                }
            });
        }
    }
}

/// The content of a lock object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    owner: String,
    token: String,
    /// Epoch milliseconds.
    expires_at: i64,
    released: bool,
}

impl Lease {
    fn to_doc(&self) -> Map<String, Value> {
        let mut doc = Map::new();
        doc.insert("owner".to_owned(), Value::from(self.owner.clone()));
        doc.insert("token".to_owned(), Value::from(self.token.clone()));
        doc.insert("expires_at".to_owned(), Value::from(self.expires_at));
        doc.insert("released".to_owned(), Value::from(self.released));
        doc
    }

    fn from_doc(key: &Key, doc: &Map<String, Value>) -> Result<Self> {
        let field = |name: &str| {
            doc.get(name).ok_or_else(|| Error::Corrupt {
                key: key.to_string(),
                reason: format!("lock lease without {name:?}"),
            })
        };
        let bad = |name: &str| Error::Corrupt {
            key: key.to_string(),
            reason: format!("lock lease with an invalid {name:?}"),
        };
        Ok(Self {
            owner: field("owner")?
                .as_str()
                .ok_or_else(|| bad("owner"))?
                .to_owned(),
            token: field("token")?
                .as_str()
                .ok_or_else(|| bad("token"))?
                .to_owned(),
            expires_at: field("expires_at")?
                .as_i64()
                .ok_or_else(|| bad("expires_at"))?,
            released: field("released")?
                .as_bool()
                .ok_or_else(|| bad("released"))?,
        })
    }
}

/// Retries of a compare-and-swap loop: conflicts (bounded by [`MAX_CONFLICTS`]) and transient
/// failures (bounded by [`MAX_TRANSIENT_RETRIES`]), with jittered exponential backoff.
struct Retry {
    backoff: Backoff,
    conflicts: u32,
    transient: u32,
}

impl Retry {
    fn new(first: Duration, max: Duration) -> Self {
        Self {
            backoff: Backoff::new(first, max),
            conflicts: 0,
            transient: 0,
        }
    }

    /// Waits before the next try, or gives the error back when it is not worth retrying.
    ///
    /// A conflict backs off (someone else is writing). A transient failure is retried at once:
    /// the store client has already backed off before giving up, and the next try starts by
    /// re-reading, which must happen soon to recognise a write whose answer was lost before later
    /// writes push its id out of the counter's list.
    async fn after(&mut self, e: Error) -> Result<()> {
        if e.is_conflict() && self.conflicts < MAX_CONFLICTS {
            self.conflicts += 1;
            tokio::time::sleep(self.backoff.next_delay()).await;
        } else if e.is_transient() && self.transient < MAX_TRANSIENT_RETRIES {
            self.transient += 1;
        } else {
            return Err(e);
        }
        Ok(())
    }
}

/// Exponential backoff with jitter: each delay is drawn from `[d/2, d]`, `d` doubling up to `max`.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first.min(max),
            max,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let current = self.next;
        self.next = (current * 2).min(self.max);
        let micros = u64::try_from(current.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::random_range(micros / 2..=micros))
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("next", &self.next)
            .field("max", &self.max)
            .finish()
    }
}

fn encode(
    data: &Map<String, Value>,
    behavior: Behavior,
    expires_at: Option<i64>,
    write_ids: Option<&str>,
) -> Result<Encoded> {
    let mut system: Vec<(&str, String)> = Vec::new();
    if let Some(expires_at) = expires_at {
        system.push((EXPIRES, expires_at.to_string()));
    }
    if behavior != Behavior::BodyOverflow {
        system.push((BEHAVIOR, behavior.as_str().to_owned()));
    }
    if let Some(ids) = write_ids.filter(|ids| !ids.is_empty()) {
        system.push((WRITE_IDS, ids.to_owned()));
    }
    codec::encode(data, &FieldMap::new(), behavior, &system)
}

fn stored_behavior(key: &Key, system: &BTreeMap<String, String>) -> Result<Behavior> {
    match system.get(BEHAVIOR) {
        None => Ok(Behavior::BodyOverflow),
        Some(name) => name.parse().map_err(|_| Error::Corrupt {
            key: key.to_string(),
            reason: format!("unknown behavior {name:?} in {BEHAVIOR}"),
        }),
    }
}

fn parse_expiry(key: &Key, value: Option<&str>) -> Result<Option<i64>> {
    value
        .map(|v| {
            v.parse::<i64>().map_err(|_| Error::Corrupt {
                key: key.to_string(),
                reason: format!("expiry {v:?} is not epoch milliseconds"),
            })
        })
        .transpose()
}

fn counter_value(key: &Key, data: &Map<String, Value>) -> Result<i64> {
    data.get(COUNTER_FIELD)
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::Corrupt {
            key: key.to_string(),
            reason: format!("not a counter: no integer {COUNTER_FIELD:?} field"),
        })
}

fn overflow(operation: &'static str, key: &Key) -> Error {
    Error::Refused {
        operation,
        reason: format!("counter {key} would overflow an i64"),
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn add_ms(at: i64, ttl: Duration) -> i64 {
    let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    at.saturating_add(ms).min(MAX_EXPIRES_MS)
}

fn expiry_after(now: i64, ttl: Duration) -> i64 {
    add_ms(now, ttl)
}

/// `<hostname>-<pid>-<random>` (hostname from `HOSTNAME` or the kernel, when available).
fn default_owner() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    let host = HOST.get_or_init(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().chars().take(64).collect::<String>())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned())
    });
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(slug: &str) -> Result<PluginStorage> {
        PluginStorage::new(Store::open("memory://plugin-storage-unit/p")?, slug)
    }

    #[test]
    fn slugs_and_namespaces() -> Result<()> {
        for bad in ["", "Cache", "a_b", "a/b", "é"] {
            assert!(storage(bad).is_err(), "{bad:?} accepted");
        }
        let s = storage("a")?;
        assert!(s.check_own(&Key::parse("plugin=a/x")?).is_ok());
        assert!(s.check_own(&Key::parse("resource=r/plugin=a/x/y")?).is_ok());
        for other in [
            "plugin=a",
            "plugin=ab/x",
            "plugin=b/x",
            "resource=r/plugin=a",
            "resource=/plugin=a/x",
            "resource=r/data/id=1",
            "x/plugin=a/y",
        ] {
            assert!(
                s.check_own(&Key::parse(other)?).is_err(),
                "{other} accepted"
            );
        }
        Ok(())
    }

    #[test]
    fn leases_round_trip() -> Result<()> {
        let key = Key::parse("plugin=a/locks/l")?;
        let lease = Lease {
            owner: "me".into(),
            token: "t".into(),
            expires_at: 12,
            released: true,
        };
        assert_eq!(Lease::from_doc(&key, &lease.to_doc())?, lease);
        assert!(Lease::from_doc(&key, &Map::new()).is_err());
        Ok(())
    }

    #[test]
    fn expiries_saturate() {
        assert_eq!(expiry_after(5, Duration::MAX), MAX_EXPIRES_MS);
        assert_eq!(expiry_after(5, Duration::from_millis(10)), 15);
        assert!(DateTime::from_timestamp_millis(MAX_EXPIRES_MS).is_some());
    }
}
