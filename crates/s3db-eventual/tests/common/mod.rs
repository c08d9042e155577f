//! Helpers shared by the eventual plugin's tests.
#![allow(dead_code)]

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use s3db_core::{ConnectionString, Database, ResourceConfig, Result};
use s3db_eventual::{EventualConsistencyPlugin, EventualHandle, Mode, Transaction};

pub type TestResult = Result<()>;

pub fn wallets() -> ResourceConfig {
    ResourceConfig::new("wallets")
        .attribute("balance", "number")
        .attribute("owner", "string")
}

pub fn plugin(mode: Mode) -> EventualConsistencyPlugin {
    EventualConsistencyPlugin::builder()
        .field("wallets", "balance")
        .mode(mode)
        .consolidation_interval(Duration::from_secs(3600))
        .lock_ttl(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("plugin config: {e}"))
}

pub async fn connect(conn: &ConnectionString) -> Result<Database> {
    Database::builder().connection(conn.clone()).connect().await
}

/// A database with the plugin and the wallets resource.
pub async fn open(
    conn: &ConnectionString,
    p: EventualConsistencyPlugin,
) -> Result<(Database, EventualHandle)> {
    let db = connect(conn).await?;
    let p = db.use_plugin(p).await?;
    db.create_resource(wallets()).await?;
    Ok((db, p.field("wallets", "balance")))
}

/// Asserts every transaction of `id` is applied exactly once: all applied, each by one batch.
pub async fn assert_all_applied(h: &EventualHandle, id: &str) -> Result<Vec<Transaction>> {
    let txs = h.transactions(id).await?;
    for t in &txs {
        assert!(
            t.applied && t.batch.is_some(),
            "{id}: transaction {} not applied",
            t.id
        );
    }
    Ok(txs)
}

/// What the crash store does to matching PUTs while armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Fail before the store sees the request.
    Fail,
    /// Let the store apply it, then fail (the answer is lost).
    AnswerLost,
    /// Never answer (the process "froze" or died mid-request).
    Hang,
}

/// Arms failures of PUT requests (or, with [`CrashSwitch::arm_deletes`], DELETE requests) whose
/// path contains one of the needles, after letting `skip` of them through.
#[derive(Debug, Default)]
pub struct CrashSwitch {
    armed: AtomicBool,
    deletes: AtomicBool,
    skip: AtomicU64,
    needles: Mutex<Vec<String>>,
    mode: Mutex<Option<Crash>>,
    pub hits: AtomicU64,
}

impl CrashSwitch {
    pub fn arm(&self, needles: &[&str], skip: u64, crash: Crash) {
        self.deletes.store(false, Ordering::SeqCst);
        self.arm_requests(needles, skip, crash);
    }

    /// Arms failures of DELETE requests (PUTs go through).
    pub fn arm_deletes(&self, needles: &[&str], skip: u64, crash: Crash) {
        self.deletes.store(true, Ordering::SeqCst);
        self.arm_requests(needles, skip, crash);
    }

    fn arm_requests(&self, needles: &[&str], skip: u64, crash: Crash) {
        *self
            .needles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            needles.iter().map(|s| (*s).to_owned()).collect();
        *self
            .mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(crash);
        self.skip.store(skip, Ordering::SeqCst);
        self.hits.store(0, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    fn decide(&self, path: &Path, delete: bool) -> Option<Crash> {
        if !self.armed.load(Ordering::SeqCst) || self.deletes.load(Ordering::SeqCst) != delete {
            return None;
        }
        let p = path.as_ref();
        let matches = self
            .needles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|n| p.contains(n.as_str()));
        if !matches {
            return None;
        }
        if self
            .skip
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| s.checked_sub(1))
            .is_ok()
        {
            return None;
        }
        self.hits.fetch_add(1, Ordering::SeqCst);
        *self
            .mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct CrashStore {
    inner: Arc<dyn ObjectStore>,
    switch: Arc<CrashSwitch>,
}

impl fmt::Debug for CrashStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CrashStore")
    }
}

impl fmt::Display for CrashStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crash({})", self.inner)
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "CrashStore",
        source: "injected crash".into(),
    }
}

#[async_trait]
impl ObjectStore for CrashStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        match self.switch.decide(location, false) {
            None => self.inner.put_opts(location, payload, opts).await,
            Some(Crash::Fail) => Err(injected()),
            Some(Crash::AnswerLost) => {
                let _ = self.inner.put_opts(location, payload, opts).await;
                Err(injected())
            }
            Some(Crash::Hang) => futures::future::pending().await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (inner, switch) = (Arc::clone(&self.inner), Arc::clone(&self.switch));
        locations
            .then(move |location| {
                let (inner, switch) = (Arc::clone(&inner), Arc::clone(&switch));
                async move {
                    let location = location?;
                    let crash = switch.decide(&location, true);
                    if crash == Some(Crash::Fail) {
                        return Err(injected());
                    }
                    if crash == Some(Crash::Hang) {
                        return futures::future::pending().await;
                    }
                    let one = futures::stream::once(async move { Ok(location) }).boxed();
                    let deleted = inner
                        .delete_stream(one)
                        .next()
                        .await
                        .unwrap_or_else(|| Err(injected()));
                    if crash == Some(Crash::AnswerLost) {
                        return Err(injected());
                    }
                    deleted
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A database whose store goes through a crash switch.
pub async fn crashable(conn: &ConnectionString) -> Result<(Database, Arc<CrashSwitch>)> {
    let switch = Arc::new(CrashSwitch::default());
    let s = Arc::clone(&switch);
    let db = Database::builder()
        .connection(conn.clone())
        .store_layer(move |inner| {
            Arc::new(CrashStore {
                inner,
                switch: Arc::clone(&s),
            })
        })
        .connect()
        .await?;
    Ok((db, switch))
}
