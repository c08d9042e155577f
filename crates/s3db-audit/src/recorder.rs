//! Recording: the hooks and the middleware installed on every audited resource, and the writing
//! of one entry.
//!
//! Entries are written by after-hooks, so only operations that succeeded are recorded, with the
//! record exactly as stored (before and after). A failed write is logged, counted and broadcast
//! as [`AuditEvent::WriteFailed`]; the hooks always return `Ok`, so the user's operation never
//! fails because of the audit.
//!
//! Deletes: the core hands the deleted record to after-delete hooks when it reads it anyway
//! (resources with partitions or versioning). For the others, when data is recorded, a
//! middleware reads the record from the store just before the delete (past every middleware, so
//! a cache neither answers nor sees it) and passes it to the hook through a task-local slot
//! scoped to that one delete.
//!
//! What a resource's records look like (partitions, secrets) comes from its current definition in
//! this process; a record whose definition is not known here (the resource is gone) is recorded
//! without data, since its secrets could not be masked.

use std::sync::{Arc, Mutex, PoisonError};

use s3db_core::plugin::{
    Error, Middleware, Next, Operation, Outcome, PluginContext, Record, Resource, ResourceHooks,
    Result, async_trait,
};
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::Shared;
use crate::entry::{AuditEntry, AuditOperation, capped, day_of, entry_id};
use crate::events::AuditEvent;
use crate::shape::Shape;

/// What the delete middleware learnt about a record before deleting it.
#[derive(Debug)]
enum Prior {
    /// It was there.
    Found(Box<Record>),
    /// It was not: the delete changes nothing and is not recorded.
    Missing,
}

/// The slot of one delete: resource, id, and what was read before.
struct DeleteSlot {
    resource: String,
    id: String,
    prior: Mutex<Option<Prior>>,
}

tokio::task_local! {
    static DELETE_SLOT: DeleteSlot;
}

fn take_prior(resource: &str, id: &str) -> Option<Prior> {
    DELETE_SLOT
        .try_with(|slot| {
            (slot.resource == resource && slot.id == id)
                .then(|| {
                    slot.prior
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take()
                })
                .flatten()
        })
        .ok()
        .flatten()
}

/// The hooks of one audited resource.
pub(crate) struct Recorder {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cx: PluginContext,
    pub(crate) audits: Resource,
}

/// What one entry is about.
struct Change<'a> {
    resource: &'a str,
    operation: AuditOperation,
    record_id: Option<&'a str>,
    old: Option<&'a Record>,
    new: Option<&'a Record>,
}

impl Recorder {
    async fn record(&self, change: Change<'_>) {
        let shared = &self.shared;
        let config = &shared.config;
        if !config.records(change.operation) {
            return;
        }
        let shape = self
            .cx
            .database()
            .ok()
            .and_then(|db| db.resource(change.resource))
            .map(|resource| Shape::of_resource(&resource));
        let at = config.clock.now();
        let id = entry_id(at, &shared.instance, shared.next_seq());
        let mut truncated = false;
        let mut capture = |record: Option<&Record>| -> Option<Value> {
            // Without the definition, secrets could not be masked: no data then.
            let shape = shape.as_ref().filter(|_| config.include_data)?;
            let (value, cut) = capped(
                shape.mask_secrets(record?.data().clone()),
                config.max_data_size,
            );
            truncated |= cut;
            Some(value)
        };
        let old_data = capture(change.old);
        let new_data = capture(change.new);
        let partition_values = change
            .new
            .or(change.old)
            .filter(|_| config.include_partitions)
            .zip(shape.as_ref())
            .map(|(r, shape)| shape.partition_values(r.data()))
            .filter(|v: &Map<String, Value>| !v.is_empty());
        let entry = AuditEntry {
            id: id.clone(),
            resource: change.resource.to_owned(),
            operation: change.operation,
            record_id: change.record_id.map(str::to_owned),
            user: shared.acting_user(),
            timestamp: at,
            date: day_of(at),
            old_data,
            new_data,
            truncated,
            partition: partition_values
                .as_ref()
                .and_then(|v| v.keys().next().cloned()),
            partition_values,
        };
        let span = tracing::debug_span!(
            "audit_write",
            resource = change.resource,
            operation = change.operation.as_str(),
            entry = %id
        );
        match self.audits.insert(&entry).instrument(span).await {
            Ok(_) => shared.count_written(),
            Err(e) => {
                shared.count_failed();
                tracing::warn!(
                    resource = change.resource,
                    operation = change.operation.as_str(),
                    record = change.record_id.unwrap_or(""),
                    error = %e,
                    "audit entry not written (the operation itself succeeded)"
                );
                let event = AuditEvent::WriteFailed {
                    resource: change.resource.to_owned(),
                    operation: change.operation,
                    record_id: change.record_id.map(str::to_owned),
                    entry_id: id,
                    error: e.to_string(),
                };
                self.cx.emit_event(&event);
            }
        }
    }
}

#[async_trait]
impl ResourceHooks for Recorder {
    async fn after_insert(&self, resource: &str, record: &Record) -> Result<()> {
        self.record(Change {
            resource,
            operation: AuditOperation::Insert,
            record_id: Some(record.id()),
            old: None,
            new: Some(record),
        })
        .await;
        Ok(())
    }

    async fn after_update(&self, resource: &str, before: &Record, after: &Record) -> Result<()> {
        self.record(Change {
            resource,
            operation: AuditOperation::Update,
            record_id: Some(after.id()),
            old: Some(before),
            new: Some(after),
        })
        .await;
        Ok(())
    }

    async fn after_delete(&self, resource: &str, id: &str, record: Option<&Record>) -> Result<()> {
        let prior = take_prior(resource, id);
        let read = match (record, &prior) {
            (Some(record), _) => Some(record),
            (None, Some(Prior::Found(record))) => Some(record.as_ref()),
            (None, Some(Prior::Missing)) => return Ok(()),
            (None, None) => None,
        };
        self.record(Change {
            resource,
            operation: AuditOperation::Delete,
            record_id: Some(id),
            old: read,
            new: None,
        })
        .await;
        Ok(())
    }

    async fn after_delete_all(&self, resource: &str, _objects: u64) -> Result<()> {
        self.record(Change {
            resource,
            operation: AuditOperation::DeleteAll,
            record_id: None,
            old: None,
            new: None,
        })
        .await;
        Ok(())
    }
}

/// Reads a record before it is deleted, for resources whose deletes do not read it.
pub(crate) struct DeleteSnapshot;

#[async_trait]
impl Middleware for DeleteSnapshot {
    async fn handle(&self, resource: &Resource, op: Operation, next: Next<'_>) -> Result<Outcome> {
        let Operation::Delete { id } = &op else {
            return next.run(op).await;
        };
        if Shape::of_resource(resource).delete_reads_record() {
            return next.run(op).await;
        }
        let prior = match resource.get_from_store(id).await {
            Ok(record) => Some(Prior::Found(Box::new(record))),
            Err(Error::NotFound { .. }) => Some(Prior::Missing),
            Err(e) => {
                // The delete goes on; its entry just has no data.
                tracing::debug!(resource = resource.name(), id = %id, error = %e,
                    "audit: could not read the record before deleting it");
                None
            }
        };
        let slot = DeleteSlot {
            resource: resource.name().to_owned(),
            id: id.clone(),
            prior: Mutex::new(prior),
        };
        DELETE_SLOT.scope(slot, next.run(op)).await
    }
}
