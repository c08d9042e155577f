//! The storage layer: the one module that talks to `object_store`.
//!
//! [`Store`] offers the same primitives on every backend (memory, local folder, S3 and
//! S3-compatible servers): put with user metadata and a body, get and head returning metadata,
//! body and ETag, conditional create, conditional update on an ETag, list by prefix (streaming and
//! paginated), delete and copy. It applies the database prefix to every key, refuses unsafe keys and
//! metadata before making any request, counts every request ([`accounting`]) and maps
//! `object_store` errors into [`Error`].
//!
//! ## ETags and conditional updates
//! An ETag identifies one version of an object. On memory and file every write makes a new ETag.
//! On S3 the ETag is the MD5 of the body, so two writes with the same body but different metadata
//! have the same ETag: a read-modify-write whose state lives only in metadata must also change the
//! body (for instance, carry a revision in it) for [`Store::update`] to detect a concurrent writer.

pub mod accounting;
#[cfg(feature = "testing")]
pub mod fault;
pub mod file;
mod metadata;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};

pub use self::accounting::{
    AccountingStore, ObserverId, RequestAccounting, RequestEvent, RequestKind, RequestObserver,
    RequestStats,
};
pub use self::file::FileStore;
pub use self::metadata::{METADATA_LIMIT, Metadata};
use crate::connection::{Backend, ConnectionString, S3Config};
use crate::error::{Error, Result};
use crate::key::{Key, MAX_KEY_BYTES, check_len};

/// Identifies one version of an object (S3's `ETag`). Opaque: compare, store, pass back.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ETag(String);

impl ETag {
    /// Wraps an ETag string as the store returned it.
    #[must_use]
    pub fn new(etag: impl Into<String>) -> Self {
        Self(etag.into())
    }

    /// The ETag as the store returned it (quotes included).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything about an object but its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Key below the database prefix.
    pub key: Key,
    /// Version identifier, for conditional updates.
    pub etag: ETag,
    /// Body size in bytes.
    pub size: u64,
    /// Time of the last write.
    pub last_modified: DateTime<Utc>,
    /// User metadata.
    pub metadata: Metadata,
}

/// An object: its head and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Key, ETag, size, time and user metadata.
    pub head: ObjectHead,
    /// The body.
    pub body: Bytes,
}

/// One key of a listing (S3 listings carry no user metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Key below the database prefix.
    pub key: Key,
    /// Body size in bytes.
    pub size: u64,
    /// Version identifier, when the backend lists it.
    pub etag: Option<ETag>,
    /// Time of the last write.
    pub last_modified: DateTime<Utc>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Entries in key order.
    pub entries: Vec<ListEntry>,
    /// Pass as `start_after` to get the next page; `None` when this was the last page.
    pub next_start_after: Option<Key>,
}

/// A function that wraps the backend's object store in a decorator (see [`StoreBuilder::layer`]).
pub type Layer = Box<dyn FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send>;

/// Builds a [`Store`], optionally with decorators around the backend.
pub struct StoreBuilder {
    conn: ConnectionString,
    layers: Vec<Layer>,
    accounting: Option<Arc<RequestAccounting>>,
}

impl fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("conn", &self.conn)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl StoreBuilder {
    /// Adds a decorator around the backend (inside the request accounting, so the accounting sees
    /// what the decorator lets through). Later layers wrap earlier ones.
    #[must_use]
    pub fn layer(
        mut self,
        layer: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + 'static,
    ) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Records requests into these counters instead of fresh ones (to share them between stores).
    #[must_use]
    pub fn accounting(mut self, accounting: Arc<RequestAccounting>) -> Self {
        self.accounting = Some(accounting);
        self
    }

    /// Builds the store. No request is made.
    ///
    /// # Errors
    /// [`Error::Storage`] if the backend cannot be configured (for instance a bad S3 option).
    pub fn build(self) -> Result<Store> {
        let mut objects = open_object_store(&self.conn)?;
        for layer in self.layers {
            objects = layer(objects);
        }
        let accounting = self.accounting.unwrap_or_default();
        let accounted: Arc<dyn ObjectStore> =
            Arc::new(AccountingStore::new(objects, Arc::clone(&accounting)));
        Ok(Store {
            inner: Arc::new(StoreInner {
                objects: accounted,
                prefix: self.conn.prefix().to_owned(),
                accounting,
                description: self.conn.to_string(),
            }),
        })
    }
}

/// The storage layer every higher layer uses. Cheap to clone (shared).
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    objects: Arc<dyn ObjectStore>,
    prefix: String,
    accounting: Arc<RequestAccounting>,
    description: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("connection", &self.inner.description)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store a connection string names. No request is made.
    ///
    /// ```
    /// # async fn demo() -> s3db_core::Result<()> {
    /// use s3db_core::{Key, Metadata, Store};
    /// let store = Store::open("memory://docs/example")?;
    /// let key = Key::parse("greeting")?;
    /// let etag = store.create(&key, &Metadata::new(), "hello".into()).await?;
    /// let object = store.get(&key).await?;
    /// assert_eq!(object.body, "hello");
    /// assert_eq!(object.head.etag, etag);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::BadConnectionString`] or a configuration [`Error::Storage`].
    pub fn open<C>(conn: C) -> Result<Self>
    where
        C: TryInto<ConnectionString>,
        C::Error: Into<Error>,
    {
        Self::builder(conn.try_into().map_err(Into::into)?).build()
    }

    /// A builder, to add decorators or shared accounting.
    #[must_use]
    pub fn builder(conn: ConnectionString) -> StoreBuilder {
        StoreBuilder {
            conn,
            layers: Vec::new(),
            accounting: None,
        }
    }

    /// The key prefix of the database inside the bucket.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The request counters of this store.
    #[must_use]
    pub fn accounting(&self) -> &Arc<RequestAccounting> {
        &self.inner.accounting
    }

    /// A snapshot of the requests made so far.
    #[must_use]
    pub fn requests(&self) -> RequestStats {
        self.inner.accounting.snapshot()
    }

    /// Writes an object, replacing any existing one.
    ///
    /// # Errors
    /// [`Error::BadMetadata`], [`Error::MetadataLimit`], [`Error::BadKey`] before any request;
    /// [`Error::Storage`] if the store fails.
    ///
    /// `metadata` is a `&Metadata`, or a `Metadata` given up to the write (which saves copying
    /// its names and values).
    pub async fn put<'m>(
        &self,
        key: &Key,
        metadata: impl Into<Cow<'m, Metadata>>,
        body: Bytes,
    ) -> Result<ETag> {
        self.write(key, metadata.into(), body, PutMode::Overwrite, "put")
            .await
    }

    /// Writes an object only if none exists at `key` (`If-None-Match: *`).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if an object is there; otherwise as [`Store::put`].
    pub async fn create<'m>(
        &self,
        key: &Key,
        metadata: impl Into<Cow<'m, Metadata>>,
        body: Bytes,
    ) -> Result<ETag> {
        self.write(key, metadata.into(), body, PutMode::Create, "create")
            .await
    }

    /// Replaces an object only if its current version is `expected` (`If-Match`).
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] if the object changed since `expected` was read, or no longer
    /// exists; otherwise as [`Store::put`].
    pub async fn update<'m>(
        &self,
        key: &Key,
        metadata: impl Into<Cow<'m, Metadata>>,
        body: Bytes,
        expected: &ETag,
    ) -> Result<ETag> {
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(expected.0.clone()),
            version: None,
        });
        match self.write(key, metadata.into(), body, mode, "update").await {
            // Some servers answer 404 to If-Match on a missing key; all backends report it alike.
            Err(Error::NotFound { key }) => Err(Error::PreconditionFailed { key }),
            other => other,
        }
    }

    async fn write(
        &self,
        key: &Key,
        metadata: Cow<'_, Metadata>,
        body: Bytes,
        mode: PutMode,
        operation: &'static str,
    ) -> Result<ETag> {
        metadata.check()?;
        let path = self.path(key)?;
        let attributes: Attributes = match metadata {
            Cow::Owned(metadata) => metadata
                .into_entries()
                .map(|(k, v)| {
                    (
                        Attribute::Metadata(k),
                        object_store::AttributeValue::from(v),
                    )
                })
                .collect(),
            Cow::Borrowed(metadata) => metadata
                .iter()
                .map(|(k, v)| {
                    (
                        Attribute::Metadata(k.to_owned().into()),
                        object_store::AttributeValue::from(v.to_owned()),
                    )
                })
                .collect(),
        };
        let opts = PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        };
        let result = self
            .objects()
            .put_opts(&path, PutPayload::from_bytes(body), opts)
            .await
            .map_err(|e| map_error(operation, key.as_str(), e))?;
        result.e_tag.map(ETag).ok_or_else(|| Error::Storage {
            operation,
            key: key.to_string(),
            transient: false,
            source: "the store returned no ETag".into(),
        })
    }

    /// Reads an object.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none; [`Error::Storage`] if the store fails.
    pub async fn get(&self, key: &Key) -> Result<Object> {
        let path = self.path(key)?;
        let result = self
            .objects()
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| map_error("get", key.as_str(), e))?;
        let head = head_of(key, &result.meta, &result.attributes, "get")?;
        let body = match result.payload {
            // Every backend here answers with a stream: collect it with a small future (a get's
            // future is held by every middleware above it), without copying a single chunk.
            GetResultPayload::Stream(stream) => collect_body(stream, result.range).await,
            #[allow(unreachable_patterns)] // a file payload exists when `fs` is enabled
            payload => Box::pin(object_store::GetResult { payload, ..result }.bytes()).await,
        }
        .map_err(|e| map_error("get", key.as_str(), e))?;
        Ok(Object { head, body })
    }

    /// Reads an object's metadata without its body (one HEAD request).
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none; [`Error::Storage`] if the store fails.
    pub async fn head(&self, key: &Key) -> Result<ObjectHead> {
        let path = self.path(key)?;
        let result = self
            .objects()
            .get_opts(&path, GetOptions::new().with_head(true))
            .await
            .map_err(|e| map_error("head", key.as_str(), e))?;
        head_of(key, &result.meta, &result.attributes, "head")
    }

    /// Whether an object exists (one HEAD request).
    ///
    /// # Errors
    /// [`Error::Storage`] if the store fails.
    pub async fn exists(&self, key: &Key) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes an object. Deleting a missing object succeeds, on every backend.
    ///
    /// # Errors
    /// [`Error::Storage`] if the store fails.
    pub async fn delete(&self, key: &Key) -> Result<()> {
        let path = self.path(key)?;
        match self.objects().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_error("delete", key.as_str(), e)),
        }
    }

    /// Deletes many objects, `concurrency` at a time; one result per key, in order.
    pub async fn delete_many(&self, keys: &[Key], concurrency: usize) -> Vec<Result<()>> {
        let deletes: Vec<_> = keys.iter().map(|key| self.delete(key)).collect();
        futures::stream::iter(deletes)
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// Deletes every object below `prefix`; returns how many were deleted.
    ///
    /// # Errors
    /// The first failure of the listing or of a delete.
    pub async fn delete_prefix(&self, prefix: &Key) -> Result<u64> {
        let mut deleted = 0;
        let mut stream = self
            .list(Some(prefix))
            .map_ok(|entry| async move { self.delete(&entry.key).await })
            .try_buffer_unordered(16);
        while let Some(()) = stream.try_next().await? {
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Copies an object with its metadata (one COPY request).
    ///
    /// # Errors
    /// [`Error::NotFound`] if the source is missing; [`Error::Storage`] if the store fails.
    pub async fn copy(&self, from: &Key, to: &Key) -> Result<()> {
        let (from_path, to_path) = (self.path(from)?, self.path(to)?);
        self.objects()
            .copy(&from_path, &to_path)
            .await
            .map_err(|e| map_error("copy", from.as_str(), e))
    }

    /// Streams every object below `prefix` (whole parts: `a/b` lists `a/b/…`, not `a/bc`), or below
    /// the database prefix for `None`, in key order, one LIST request per 1000 keys.
    pub fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ListEntry>> {
        self.list_from(prefix, None)
    }

    fn list_from(
        &self,
        prefix: Option<&Key>,
        start_after: Option<&Key>,
    ) -> BoxStream<'static, Result<ListEntry>> {
        let prefix_path = match prefix.map(|p| self.path(p)).transpose() {
            Ok(path) => path.or_else(|| self.root_path()),
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        let shown = prefix.map(ToString::to_string).unwrap_or_default();
        let strip = if self.inner.prefix.is_empty() {
            0
        } else {
            self.inner.prefix.len() + 1
        };
        let listing = match start_after.map(|k| self.path(k)).transpose() {
            Ok(Some(offset)) => self
                .inner
                .objects
                .list_with_offset(prefix_path.as_ref(), &offset),
            Ok(None) => self.objects().list(prefix_path.as_ref()),
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        listing
            .map(move |item| match item {
                Ok(meta) => Ok(ListEntry {
                    key: Key::listed(meta.location.as_ref().get(strip..).unwrap_or_default()),
                    size: meta.size,
                    etag: meta.e_tag.map(ETag),
                    last_modified: meta.last_modified,
                }),
                Err(e) => Err(map_error("list", &shown, e)),
            })
            .boxed()
    }

    /// One page of at most `limit` entries below `prefix`, starting after `start_after`.
    ///
    /// # Errors
    /// [`Error::Storage`] if the store fails.
    pub async fn list_page(
        &self,
        prefix: Option<&Key>,
        start_after: Option<&Key>,
        limit: usize,
    ) -> Result<ListPage> {
        let limit = limit.max(1);
        let mut entries: Vec<ListEntry> = self
            .list_from(prefix, start_after)
            .take(limit + 1)
            .try_collect()
            .await?;
        let next_start_after = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.key.clone())
        } else {
            None
        };
        Ok(ListPage {
            entries,
            next_start_after,
        })
    }

    /// Every key below `prefix`, in order.
    ///
    /// # Errors
    /// [`Error::Storage`] if the store fails.
    pub async fn list_keys(&self, prefix: Option<&Key>) -> Result<Vec<Key>> {
        self.list(prefix).map_ok(|e| e.key).try_collect().await
    }

    /// The accounted object store, called through its vtable directly (calling through the
    /// `Arc` would go through `object_store`'s forwarding impl, one more boxed future per
    /// request).
    fn objects(&self) -> &dyn ObjectStore {
        self.inner.objects.as_ref()
    }

    fn root_path(&self) -> Option<Path> {
        (!self.inner.prefix.is_empty()).then(|| Path::from_iter(self.inner.prefix.split('/')))
    }

    /// The full path of a key, database prefix included.
    fn path(&self, key: &Key) -> Result<Path> {
        let prefix = self.inner.prefix.as_bytes();
        let key_bytes = key.as_str().as_bytes();
        let separator = usize::from(!prefix.is_empty());
        let len = prefix.len() + separator + key_bytes.len();
        if len > MAX_KEY_BYTES {
            let full = format!("{}/{}", self.inner.prefix, key.as_str());
            check_len(len, &full)?;
        }
        // The full path is assembled on the stack (`Path::parse` copies it anyway): one
        // allocation per request instead of two.
        let mut buf = [0u8; MAX_KEY_BYTES];
        let (head, tail) = buf.split_at_mut(prefix.len());
        head.copy_from_slice(prefix);
        if separator == 1
            && let Some(slash) = tail.first_mut()
        {
            *slash = b'/';
        }
        if let Some(rest) = tail.get_mut(separator..separator + key_bytes.len()) {
            rest.copy_from_slice(key_bytes);
        }
        let bad = |reason: String| Error::BadKey {
            key: key.to_string(),
            reason: crate::error::KeyProblem::Invalid(reason),
        };
        let full = buf
            .get(..len)
            .and_then(|full| std::str::from_utf8(full).ok())
            .ok_or_else(|| bad("not UTF-8".to_owned()))?;
        Path::parse(full).map_err(|e| bad(e.to_string()))
    }
}

/// The bytes of a streamed body of `range.end - range.start` bytes.
async fn collect_body(
    mut stream: BoxStream<'static, object_store::Result<Bytes>>,
    range: std::ops::Range<u64>,
) -> object_store::Result<Bytes> {
    let Some(first) = stream.next().await.transpose()? else {
        return Ok(Bytes::new());
    };
    let Some(second) = stream.next().await.transpose()? else {
        return Ok(first);
    };
    let len = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(0);
    let mut body = Vec::with_capacity(len.max(first.len() + second.len()));
    body.extend_from_slice(&first);
    body.extend_from_slice(&second);
    while let Some(chunk) = stream.next().await.transpose()? {
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

fn head_of(
    key: &Key,
    meta: &object_store::ObjectMeta,
    attributes: &Attributes,
    operation: &'static str,
) -> Result<ObjectHead> {
    let etag = meta.e_tag.clone().ok_or_else(|| Error::Storage {
        operation,
        key: key.to_string(),
        transient: false,
        source: "the store returned no ETag".into(),
    })?;
    let metadata = attributes
        .iter()
        .filter_map(|(k, v)| match k {
            Attribute::Metadata(name) => Some((name.to_string(), v.to_string())),
            _ => None,
        })
        .collect();
    Ok(ObjectHead {
        key: key.clone(),
        etag: ETag(etag),
        size: meta.size,
        last_modified: meta.last_modified,
        metadata,
    })
}

/// Maps an `object_store` error into the core error type.
fn map_error(operation: &'static str, key: &str, e: object_store::Error) -> Error {
    let key = key.to_owned();
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound { key },
        object_store::Error::AlreadyExists { .. } => Error::AlreadyExists { key },
        object_store::Error::Precondition { .. } => Error::PreconditionFailed { key },
        // Network failures, 5xx and throttling that outlived object_store's retries, and injected
        // faults, arrive as `Generic`.
        e @ (object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }) => {
            Error::Storage {
                operation,
                key,
                transient: true,
                source: Box::new(e),
            }
        }
        e => Error::Storage {
            operation,
            key,
            transient: false,
            source: Box::new(e),
        },
    }
}

/// In-process buckets of `memory://`, shared by every store of this process that names them and
/// dropped when the last such store is.
static MEMORY_BUCKETS: LazyLock<Mutex<HashMap<String, Weak<InMemory>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn memory_bucket(bucket: &str) -> Arc<InMemory> {
    let mut buckets = MEMORY_BUCKETS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    buckets.retain(|_, weak| weak.strong_count() > 0);
    if let Some(existing) = buckets.get(bucket).and_then(Weak::upgrade) {
        return existing;
    }
    let created = Arc::new(InMemory::new());
    buckets.insert(bucket.to_owned(), Arc::downgrade(&created));
    created
}

/// The raw `object_store` behind a connection string, without prefix, checks or accounting (for
/// benchmarks that compare the layer with raw `object_store`, and for decorators).
///
/// # Errors
/// A configuration [`Error::Storage`] if the S3 client cannot be built.
pub fn open_object_store(conn: &ConnectionString) -> Result<Arc<dyn ObjectStore>> {
    match conn.backend() {
        Backend::Memory { bucket } => Ok(memory_bucket(bucket)),
        Backend::File { root, fsync } => Ok(Arc::new(FileStore::new(root.clone(), *fsync))),
        Backend::S3(cfg) => open_s3(cfg),
        #[allow(unreachable_patterns)]
        other => Err(Error::Storage {
            operation: "open",
            key: String::new(),
            transient: false,
            source: format!("unsupported backend {other:?}").into(),
        }),
    }
}

fn open_s3(cfg: &S3Config) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = match &cfg.credentials {
        Some(creds) => AmazonS3Builder::new()
            .with_access_key_id(creds.access_key_id.expose())
            .with_secret_access_key(creds.secret_access_key.expose()),
        None => AmazonS3Builder::from_env(),
    };
    builder = builder
        .with_bucket_name(&cfg.bucket)
        .with_region(&cfg.region)
        // One DELETE per key, as S3 bills deletes, instead of bulk POSTs.
        .with_config(AmazonS3ConfigKey::DisableBulkDelete, "true")
        .with_config(AmazonS3ConfigKey::CopyIfNotExists, "multipart")
        .with_retry(RetryConfig {
            max_retries: 5,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &cfg.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    for (key, value) in &cfg.options {
        builder = builder.with_config(*key, value.expose());
    }
    let store = builder.build().map_err(|e| Error::Storage {
        operation: "open",
        key: String::new(),
        transient: false,
        source: Box::new(e),
    })?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_takes_strings_and_parsed_connections() -> Result<()> {
        let parsed = ConnectionString::memory("open-test", "p")?;
        assert_eq!(Store::open(parsed)?.prefix(), "p");
        assert_eq!(Store::open("memory://open-test/q")?.prefix(), "q");
        let err = Store::open("nope://x").err();
        assert!(
            matches!(err, Some(Error::BadConnectionString(_))),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn credentials_never_show() -> Result<()> {
        let conn = ConnectionString::parse(
            "http://AKIDSHOWNOWHERE:SECRETSHOWNOWHERE@127.0.0.1:9/bucket/p?aws_session_token=TOKENSHOWNOWHERE",
        )?;
        let raw = open_object_store(&conn)?;
        let accounted = AccountingStore::new(raw, Arc::default());
        let store = Store::builder(conn.clone()).build()?;
        let builder = Store::builder(conn.clone());
        let shown = format!(
            "{conn} {conn:?} {store:?} {accounted:?} {accounted} {builder:?} {:?}",
            conn.backend()
        );
        for secret in ["AKIDSHOWNOWHERE", "SECRETSHOWNOWHERE", "TOKENSHOWNOWHERE"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        Ok(())
    }
}
