//! The hooks that keep an indexed resource's index up to date: a pending marker before every
//! write, the index change (and the marker's removal) after it.

use std::sync::Arc;

use s3db_core::plugin::{InsertOp, Record, ResourceHooks, Result, UpdateOp, async_trait};

use crate::index::Index;

/// Registered on every indexed resource.
pub(crate) struct IndexHooks {
    pub(crate) index: Arc<Index>,
}

impl IndexHooks {
    async fn mark(&self, resource: &str, id: Option<&str>) -> Result<()> {
        self.index
            .mark(resource, id)
            .await
            .map_err(|e| self.index.error(e))
    }
}

#[async_trait]
impl ResourceHooks for IndexHooks {
    async fn before_insert(&self, resource: &str, op: &mut InsertOp) -> Result<()> {
        self.mark(resource, op.id.as_deref()).await
    }

    async fn after_insert(&self, resource: &str, record: &Record) -> Result<()> {
        self.index.written(resource, record.id()).await
    }

    async fn before_update(&self, resource: &str, op: &mut UpdateOp) -> Result<()> {
        self.mark(resource, Some(&op.id)).await
    }

    async fn after_update(&self, resource: &str, _before: &Record, after: &Record) -> Result<()> {
        self.index.written(resource, after.id()).await
    }

    async fn before_delete(&self, resource: &str, id: &str) -> Result<()> {
        self.mark(resource, Some(id)).await
    }

    async fn after_delete(&self, resource: &str, id: &str, _record: Option<&Record>) -> Result<()> {
        self.index.written(resource, id).await
    }

    async fn after_delete_all(&self, resource: &str, _objects: u64) -> Result<()> {
        self.index
            .clear(resource)
            .await
            .map(|_| ())
            .map_err(|e| self.index.error(e))
    }
}
