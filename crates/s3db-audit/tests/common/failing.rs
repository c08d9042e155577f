//! A store decorator that makes every write under one resource's keys fail while a switch is on:
//! a real storage failure of the audit's own writes, with the user's writes untouched.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::Switch;

pub struct FailWritesUnder {
    inner: Arc<dyn ObjectStore>,
    /// A key part such as `resource=plg_audits`.
    part: String,
    switch: Switch,
}

impl FailWritesUnder {
    pub fn new(inner: Arc<dyn ObjectStore>, part: &str, switch: Switch) -> Self {
        Self {
            inner,
            part: part.to_owned(),
            switch,
        }
    }

    fn refuses(&self, location: &Path) -> bool {
        self.switch.is_on() && location.as_ref().split('/').any(|p| p == self.part)
    }
}

impl fmt::Debug for FailWritesUnder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailWritesUnder({})", self.part)
    }
}

impl fmt::Display for FailWritesUnder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailWritesUnder({}, {})", self.part, self.inner)
    }
}

#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the test store refuses writes to {}", self.0)
    }
}

impl std::error::Error for Refused {}

#[async_trait::async_trait]
impl ObjectStore for FailWritesUnder {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.refuses(location) {
            return Err(object_store::Error::Generic {
                store: "FailWritesUnder",
                source: Box::new(Refused(location.to_string())),
            });
        }
        self.inner.put_opts(location, payload, opts).await
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
        self.inner.delete_stream(locations)
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
