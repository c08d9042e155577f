//! Recording: the hooks installed on every audited resource, and the writing of one entry.
//!
//! Entries are written by after-hooks, so only operations that succeeded are recorded, with the
//! record exactly as stored (before and after). A failed write is logged, counted and broadcast
//! as [`AuditEvent::WriteFailed`]; the hooks always return `Ok`, so the user's operation never
//! fails because of the audit.
//!
//! Deletes: the core hands the deleted record to after-delete hooks when it reads it (resources
//! with partitions or versioning, or when some hooks [want
//! it](ResourceHooks::wants_deleted_record)). When data is recorded and deletes are audited, the
//! hooks want it: every delete then reads the record (one GET, past every middleware, so a cache
//! neither answers nor sees it), and a delete of a record that does not exist runs no after-hook
//! and is not recorded.
//!
//! What a resource's records look like (partitions, secrets) comes from its current definition in
//! this process; a record whose definition is not known here (the resource is gone) is recorded
//! without data, since its secrets could not be masked.

use std::sync::Arc;

use s3db_core::plugin::{PluginContext, Record, Resource, ResourceHooks, Result, async_trait};
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::Shared;
use crate::entry::{AuditEntry, AuditOperation, capped, day_of, entry_id};
use crate::events::AuditEvent;
use crate::shape::Shape;

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

    /// With data recorded, a delete's entry holds the deleted record (and a delete of nothing
    /// is not recorded).
    fn wants_deleted_record(&self) -> bool {
        let config = &self.shared.config;
        config.include_data && config.records(AuditOperation::Delete)
    }

    async fn after_delete(&self, resource: &str, id: &str, record: Option<&Record>) -> Result<()> {
        self.record(Change {
            resource,
            operation: AuditOperation::Delete,
            record_id: Some(id),
            old: record,
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
