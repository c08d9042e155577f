//! The hooks installed on each followed resource: after every successful insert, update and
//! delete (bulk ones run them per record), the change goes to every replicator that follows the
//! resource. They always return `Ok`: a failing target never fails the user's write.
//!
//! Deletes: when some replicator follows the resource's deletes, the hooks [want the deleted
//! record](ResourceHooks::wants_deleted_record): the core reads it before deleting (one GET, past
//! every middleware: a cache neither answers nor sees it; resources with partitions or
//! versioning read it anyway) and hands it to the after-delete hook, so that filters see it and
//! messages carry `before`. A delete of a record that does not exist then runs no hook: nothing
//! changed, nothing is replicated.

use std::sync::Arc;

use s3db_core::plugin::{Record, ResourceHooks, Result, async_trait};

use crate::Shared;
use crate::change::Action;

/// The hooks of one followed resource.
pub(crate) struct ReplicateHooks {
    pub(crate) shared: Arc<Shared>,
    /// Whether some replicator follows the resource's deletes (their changes carry `before`).
    pub(crate) wants_deleted_record: bool,
}

#[async_trait]
impl ResourceHooks for ReplicateHooks {
    async fn after_insert(&self, resource: &str, record: &Record) -> Result<()> {
        self.shared
            .on_write(
                resource,
                Action::Insert,
                record.id(),
                None,
                Some(record.data()),
            )
            .await;
        Ok(())
    }

    async fn after_update(&self, resource: &str, before: &Record, after: &Record) -> Result<()> {
        self.shared
            .on_write(
                resource,
                Action::Update,
                after.id(),
                Some(before.data()),
                Some(after.data()),
            )
            .await;
        Ok(())
    }

    fn wants_deleted_record(&self) -> bool {
        self.wants_deleted_record
    }

    async fn after_delete(&self, resource: &str, id: &str, record: Option<&Record>) -> Result<()> {
        self.shared
            .on_write(resource, Action::Delete, id, record.map(Record::data), None)
            .await;
        Ok(())
    }
}
