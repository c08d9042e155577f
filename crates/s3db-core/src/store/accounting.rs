//! Request accounting: an [`ObjectStore`] decorator that counts every request by kind and the
//! bytes sent and received, and shows each request to observers.
//!
//! Requests are counted as S3 would bill them, whatever the backend: a `put` is one PUT, a `get`
//! one GET (or HEAD when only metadata is read), a copy one COPY, a delete one DELETE per key, and
//! a listing one LIST per page of up to 1000 keys. A multipart upload counts one POST to start, one
//! PUT per part and one POST to complete. Failed requests count too (S3 bills them).
//!
//! This is what the Costs and Metrics plugins read: they never wrap resource methods to guess.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use serde::{Deserialize, Serialize};

/// Keys per LIST page, as S3 returns them.
pub const LIST_PAGE_SIZE: u64 = 1000;

/// The kind of an S3 request, as S3 prices them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RequestKind {
    /// Read an object.
    Get,
    /// Read an object's metadata.
    Head,
    /// Write an object (or a part of a multipart upload).
    Put,
    /// Copy an object.
    Copy,
    /// List a page of keys.
    List,
    /// Delete an object.
    Delete,
    /// Start or complete a multipart upload, bulk delete.
    Post,
}

impl RequestKind {
    /// All kinds, in a fixed order.
    pub const ALL: [RequestKind; 7] = [
        RequestKind::Get,
        RequestKind::Head,
        RequestKind::Put,
        RequestKind::Copy,
        RequestKind::List,
        RequestKind::Delete,
        RequestKind::Post,
    ];

    /// The HTTP-style name (`GET`, `PUT`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Get => "GET",
            RequestKind::Head => "HEAD",
            RequestKind::Put => "PUT",
            RequestKind::Copy => "COPY",
            RequestKind::List => "LIST",
            RequestKind::Delete => "DELETE",
            RequestKind::Post => "POST",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, as observers see it (borrowed: copy what you keep).
#[derive(Debug, Clone, Copy)]
pub struct RequestEvent<'a> {
    /// What kind of request.
    pub kind: RequestKind,
    /// The full key (or listed prefix) in the bucket, database prefix included.
    pub key: &'a str,
    /// Bytes sent to the store (request bodies).
    pub bytes_sent: u64,
    /// Bytes received from the store (response bodies). AWS bills these as "data transfer out".
    pub bytes_received: u64,
    /// How long the request took (zero for pages of a listing after the first).
    pub duration: Duration,
    /// Whether it succeeded. "Not found", "already exists" and "precondition failed" answers are
    /// failures here, but ordinary ones.
    pub ok: bool,
}

/// Something that wants to see every request (the Costs and Metrics plugins, a test…).
///
/// `on_request` runs on the request's task: keep it short and never block.
pub trait RequestObserver: Send + Sync + 'static {
    /// Called once per request, after it completed.
    fn on_request(&self, event: &RequestEvent<'_>);
}

impl<F> RequestObserver for F
where
    F: Fn(&RequestEvent<'_>) + Send + Sync + 'static,
{
    fn on_request(&self, event: &RequestEvent<'_>) {
        self(event);
    }
}

/// Identifies an observer added with [`RequestAccounting::observe`], to remove it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserverId(u64);

/// Counters of requests and bytes, shared by a store and everyone who reads them.
#[derive(Default)]
pub struct RequestAccounting {
    counts: [AtomicU64; 7],
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    observers: RwLock<Vec<(ObserverId, Arc<dyn RequestObserver>)>>,
    /// Whether `observers` is non-empty, read without the lock on every request.
    observed: AtomicBool,
    next_observer: AtomicU64,
}

impl fmt::Debug for RequestAccounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestAccounting")
            .field("stats", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl RequestAccounting {
    /// Fresh counters.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far.
    #[must_use]
    pub fn snapshot(&self) -> RequestStats {
        let mut counts = [0; 7];
        for (slot, counter) in counts.iter_mut().zip(&self.counts) {
            *slot = counter.load(Ordering::Relaxed);
        }
        RequestStats {
            counts,
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }

    /// Adds an observer that sees every later request.
    pub fn observe(&self, observer: Arc<dyn RequestObserver>) -> ObserverId {
        let id = ObserverId(self.next_observer.fetch_add(1, Ordering::Relaxed));
        let mut observers = self
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        observers.push((id, observer));
        self.observed.store(true, Ordering::Release);
        id
    }

    /// How many observers are registered (for plugin conformance checks).
    #[must_use]
    pub fn observer_count(&self) -> usize {
        self.observers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Removes an observer; returns whether it was there.
    pub fn unobserve(&self, id: ObserverId) -> bool {
        let mut observers = self
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = observers.len();
        observers.retain(|(other, _)| *other != id);
        self.observed
            .store(!observers.is_empty(), Ordering::Release);
        observers.len() != before
    }

    fn record(&self, event: &RequestEvent<'_>) {
        self.counts[event.kind.index()].fetch_add(1, Ordering::Relaxed);
        self.bytes_sent
            .fetch_add(event.bytes_sent, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(event.bytes_received, Ordering::Relaxed);
        if self.observed.load(Ordering::Acquire) {
            let observers = self
                .observers
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (_, observer) in observers.iter() {
                observer.on_request(event);
            }
        }
        tracing::trace!(
            kind = event.kind.as_str(),
            key = %event.key,
            ok = event.ok,
            sent = event.bytes_sent,
            received = event.bytes_received,
            micros = u64::try_from(event.duration.as_micros()).unwrap_or(u64::MAX),
            "s3 request"
        );
    }
}

/// A snapshot of request counts and bytes; subtract two to see what happened in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    counts: [u64; 7],
    /// Bytes sent to the store.
    pub bytes_sent: u64,
    /// Bytes received from the store.
    pub bytes_received: u64,
}

impl RequestStats {
    /// Requests of one kind.
    #[must_use]
    pub fn count(&self, kind: RequestKind) -> u64 {
        self.counts[kind.index()]
    }

    /// All requests.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What happened since `earlier` (counts never go down, so this saturates at zero).
    #[must_use]
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        let mut counts = [0; 7];
        for (i, slot) in counts.iter_mut().enumerate() {
            *slot = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        RequestStats {
            counts,
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
        }
    }

    /// `(kind, count)` for every kind with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (RequestKind, u64)> + '_ {
        RequestKind::ALL
            .into_iter()
            .map(|k| (k, self.count(k)))
            .filter(|(_, n)| *n > 0)
    }
}

impl fmt::Display for RequestStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests", self.total())?;
        let mut first = true;
        for (kind, n) in self.iter() {
            f.write_str(if first { " (" } else { ", " })?;
            first = false;
            write!(f, "{kind} {n}")?;
        }
        if !first {
            f.write_str(")")?;
        }
        write!(
            f,
            ", {} B sent, {} B received",
            self.bytes_sent, self.bytes_received
        )
    }
}

/// The decorator: forwards to `inner` and records every request in a [`RequestAccounting`].
pub struct AccountingStore {
    inner: Arc<dyn ObjectStore>,
    accounting: Arc<RequestAccounting>,
}

impl AccountingStore {
    /// Wraps `inner`, recording into `accounting`.
    pub fn new(inner: Arc<dyn ObjectStore>, accounting: Arc<RequestAccounting>) -> Self {
        Self { inner, accounting }
    }

    /// The start of a request, when someone will see its duration (an observer or a `TRACE`
    /// log): reading the clock twice per request is a measurable part of a memory request.
    fn start(&self) -> Option<Instant> {
        (self.accounting.observed.load(Ordering::Acquire)
            || tracing::enabled!(tracing::Level::TRACE))
        .then(Instant::now)
    }

    fn record(
        &self,
        kind: RequestKind,
        key: &Path,
        started: Option<Instant>,
        ok: bool,
        sent: u64,
        received: u64,
    ) {
        self.accounting.record(&RequestEvent {
            kind,
            key: key.as_ref(),
            bytes_sent: sent,
            bytes_received: received,
            duration: started.map(|t| t.elapsed()).unwrap_or_default(),
            ok,
        });
    }
}

impl fmt::Debug for AccountingStore {
    // The inner store is shown by its Display only: some stores' Debug shows access key ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountingStore")
            .field("inner", &format_args!("{}", self.inner))
            .finish_non_exhaustive()
    }
}

impl fmt::Display for AccountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Accounting({})", self.inner)
    }
}

fn len(range: &Range<u64>) -> u64 {
    range.end.saturating_sub(range.start)
}

#[async_trait]
impl ObjectStore for AccountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let started = self.start();
        let sent = payload.content_length() as u64;
        let result = self.inner.as_ref().put_opts(location, payload, opts).await;
        self.record(RequestKind::Put, location, started, result.is_ok(), sent, 0);
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let started = self.start();
        let result = self.inner.put_multipart_opts(location, opts).await;
        self.record(RequestKind::Post, location, started, result.is_ok(), 0, 0);
        Ok(Box::new(AccountedUpload {
            inner: result?,
            location: location.clone(),
            accounting: Arc::clone(&self.accounting),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let started = self.start();
        let kind = if options.head {
            RequestKind::Head
        } else {
            RequestKind::Get
        };
        let result = self.inner.as_ref().get_opts(location, options).await;
        let received = match &result {
            Ok(r) if kind == RequestKind::Get => len(&r.range),
            _ => 0,
        };
        self.record(kind, location, started, result.is_ok(), 0, received);
        result
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        let started = self.start();
        let result = self.inner.get_ranges(location, ranges).await;
        for range in ranges {
            let received = if result.is_ok() { len(range) } else { 0 };
            self.record(
                RequestKind::Get,
                location,
                started,
                result.is_ok(),
                0,
                received,
            );
        }
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let accounting = Arc::clone(&self.accounting);
        let started = self.start();
        self.inner
            .delete_stream(locations)
            .inspect(move |result| {
                let key = match result {
                    Ok(path) => path.as_ref(),
                    Err(object_store::Error::NotFound { path, .. }) => path.as_str(),
                    Err(_) => "",
                };
                accounting.record(&RequestEvent {
                    kind: RequestKind::Delete,
                    key,
                    bytes_sent: 0,
                    bytes_received: 0,
                    duration: started.map(|t| t.elapsed()).unwrap_or_default(),
                    ok: result.is_ok(),
                });
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let stream = self.inner.as_ref().list(prefix);
        paged(stream, prefix, Arc::clone(&self.accounting))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let stream = self.inner.as_ref().list_with_offset(prefix, offset);
        paged(stream, prefix, Arc::clone(&self.accounting))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let started = self.start();
        let result = self.inner.as_ref().list_with_delimiter(prefix).await;
        let entries = result
            .as_ref()
            .map_or(0, |r| (r.objects.len() + r.common_prefixes.len()) as u64);
        let pages = entries.div_ceil(LIST_PAGE_SIZE).max(1);
        let root = Path::ROOT;
        for _ in 0..pages {
            self.record(
                RequestKind::List,
                prefix.unwrap_or(&root),
                started,
                result.is_ok(),
                0,
                0,
            );
        }
        result
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let started = self.start();
        let result = self.inner.as_ref().copy_opts(from, to, options).await;
        self.record(RequestKind::Copy, to, started, result.is_ok(), 0, 0);
        result
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let started = self.start();
        let result = self.inner.rename_opts(from, to, options).await;
        self.record(RequestKind::Copy, to, started, result.is_ok(), 0, 0);
        self.record(RequestKind::Delete, from, started, result.is_ok(), 0, 0);
        result
    }
}

/// Counts one LIST when the listing starts and one more per further page of 1000 keys; an empty
/// listing is one LIST too.
fn paged(
    stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
    prefix: Option<&Path>,
    accounting: Arc<RequestAccounting>,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    struct Paging {
        stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
        accounting: Arc<RequestAccounting>,
        key: String,
        started: Instant,
        seen: u64,
    }
    impl Paging {
        fn record(&self, ok: bool) {
            self.accounting.record(&RequestEvent {
                kind: RequestKind::List,
                key: &self.key,
                bytes_sent: 0,
                bytes_received: 0,
                duration: if self.seen == 0 {
                    self.started.elapsed()
                } else {
                    Duration::ZERO
                },
                ok,
            });
        }
    }
    let state = Paging {
        stream,
        accounting,
        key: prefix.map(ToString::to_string).unwrap_or_default(),
        started: Instant::now(),
        seen: 0,
    };
    futures::stream::unfold(state, |mut state| async move {
        match state.stream.next().await {
            Some(item) => {
                if state.seen % LIST_PAGE_SIZE == 0 {
                    state.record(item.is_ok());
                }
                state.seen += 1;
                Some((item, state))
            }
            None => {
                if state.seen == 0 {
                    state.record(true);
                }
                None
            }
        }
    })
    .boxed()
}

#[derive(Debug)]
struct AccountedUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    accounting: Arc<RequestAccounting>,
}

impl AccountedUpload {
    fn event(&self, kind: RequestKind, started: Instant, ok: bool, sent: u64) -> RequestEvent<'_> {
        RequestEvent {
            kind,
            key: self.location.as_ref(),
            bytes_sent: sent,
            bytes_received: 0,
            duration: started.elapsed(),
            ok,
        }
    }
}

#[async_trait]
impl MultipartUpload for AccountedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let sent = data.content_length() as u64;
        let part = self.inner.put_part(data);
        let accounting = Arc::clone(&self.accounting);
        let key = self.location.to_string();
        Box::pin(async move {
            let started = Instant::now();
            let result = part.await;
            accounting.record(&RequestEvent {
                kind: RequestKind::Put,
                key: &key,
                bytes_sent: sent,
                bytes_received: 0,
                duration: started.elapsed(),
                ok: result.is_ok(),
            });
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let started = Instant::now();
        let result = self.inner.complete().await;
        self.accounting
            .record(&self.event(RequestKind::Post, started, result.is_ok(), 0));
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let started = Instant::now();
        let result = self.inner.abort().await;
        self.accounting
            .record(&self.event(RequestKind::Delete, started, result.is_ok(), 0));
        result
    }
}
