//! [`EventualHandle`]: the operations on one managed field, reached with
//! `resource.eventual("field")` ([`EventualExt`]) or [`crate::EventualConsistencyPlugin::field`].

use std::collections::BTreeMap;
use std::sync::Arc;

use s3db_core::plugin::Resource;
use s3db_core::{Error, Result};

use crate::analytics::{self, Bucket, Period, RecordTotal};
use crate::consolidation::{Base, Consolidation};
use crate::field::{FieldRuntime, Receipt};
use crate::gc::GcReport;
use crate::transaction::{Operation, Transaction};

/// The managed fields of one resource, attached to it as a resource extension.
#[derive(Debug, Default)]
pub(crate) struct EventualFields {
    pub(crate) fields: BTreeMap<String, Arc<FieldRuntime>>,
}

/// The operations on one managed (resource, field). Cheap to clone.
///
/// A handle for a field the plugin does not manage (or once the plugin is uninstalled) answers
/// every operation with [`Error::Refused`] saying so.
#[derive(Debug, Clone)]
pub struct EventualHandle {
    inner: std::result::Result<Arc<FieldRuntime>, (String, String)>,
}

impl EventualHandle {
    pub(crate) fn managed(runtime: Arc<FieldRuntime>) -> Self {
        Self { inner: Ok(runtime) }
    }

    pub(crate) fn unmanaged(resource: &str, field: &str) -> Self {
        Self {
            inner: Err((resource.to_owned(), field.to_owned())),
        }
    }

    fn runtime(&self) -> Result<&Arc<FieldRuntime>> {
        self.inner.as_ref().map_err(|(resource, field)| Error::Refused {
            operation: "eventual",
            reason: format!(
                "field {field:?} of resource {resource:?} is not managed by the eventual consistency plugin: \
                 configure it with EventualConsistencyPlugin::builder().field({resource:?}, {field:?})"
            ),
        })
    }

    /// Whether the plugin manages this field.
    #[must_use]
    pub fn is_managed(&self) -> bool {
        self.inner.is_ok()
    }

    /// Records a transaction adding `amount` to record `id`'s field.
    ///
    /// # Errors
    /// [`Error::Validation`] for a non-finite amount, [`Error::BadKey`] for a bad id (nothing
    /// written); storage errors. Once it returns `Ok`, the transaction is durable.
    pub async fn add(&self, id: &str, amount: impl Into<f64>) -> Result<Receipt> {
        self.runtime()?
            .write(id, Operation::Add, amount.into())
            .await
    }

    /// Records a transaction subtracting `amount`.
    ///
    /// # Errors
    /// As [`EventualHandle::add`].
    pub async fn sub(&self, id: &str, amount: impl Into<f64>) -> Result<Receipt> {
        self.runtime()?
            .write(id, Operation::Sub, amount.into())
            .await
    }

    /// Records a transaction setting the field to `value` (transactions after it add to it).
    ///
    /// # Errors
    /// As [`EventualHandle::add`].
    pub async fn set(&self, id: &str, value: impl Into<f64>) -> Result<Receipt> {
        self.runtime()?
            .write(id, Operation::Set, value.into())
            .await
    }

    /// `add(id, 1)`.
    ///
    /// # Errors
    /// As [`EventualHandle::add`].
    pub async fn increment(&self, id: &str) -> Result<Receipt> {
        self.add(id, 1).await
    }

    /// `sub(id, 1)`.
    ///
    /// # Errors
    /// As [`EventualHandle::add`].
    pub async fn decrement(&self, id: &str) -> Result<Receipt> {
        self.sub(id, 1).await
    }

    /// Folds record `id`'s unapplied transactions into its field (creating the record if
    /// missing) and returns the new value; waits for the record's lock up to the lock timeout.
    ///
    /// # Errors
    /// [`Error::Refused`] when the lock stays busy, or the field was changed outside the plugin
    /// while an interrupted consolidation was pending (call [`EventualHandle::recalculate`]);
    /// validation errors of the record; storage errors. Nothing is applied twice whatever fails.
    pub async fn consolidate(&self, id: &str) -> Result<f64> {
        Ok(self.consolidate_report(id).await?.value)
    }

    /// [`EventualHandle::consolidate`], with what it did.
    ///
    /// # Errors
    /// As [`EventualHandle::consolidate`].
    pub async fn consolidate_report(&self, id: &str) -> Result<Consolidation> {
        self.runtime()?
            .consolidate(id, Base::Current, None)
            .await?
            .ok_or_else(|| Error::Refused {
                operation: "eventual consolidate",
                reason: format!("the lock of record {id:?} stayed busy"),
            })
    }

    /// Replays record `id`'s whole transaction log (applied ones in the order they were folded,
    /// then the unapplied ones) from the initial value, writes the result to the field if it
    /// differs, marks everything applied, and returns it. Equal to [`EventualHandle::consolidate`]
    /// when the field is only changed through the plugin; repairs it otherwise.
    ///
    /// # Errors
    /// As [`EventualHandle::consolidate`].
    pub async fn recalculate(&self, id: &str) -> Result<f64> {
        self.runtime()?
            .consolidate(id, Base::Replay, None)
            .await?
            .map(|c| c.value)
            .ok_or_else(|| Error::Refused {
                operation: "eventual recalculate",
                reason: format!("the lock of record {id:?} stayed busy"),
            })
    }

    /// Consolidates every record with pending transactions now (what the background task does
    /// every interval); returns how many records were consolidated.
    ///
    /// # Errors
    /// Storage errors while listing; a record's failure is reported by an event and skipped.
    pub async fn consolidate_pending(&self) -> Result<usize> {
        self.runtime()?.consolidate_pending().await
    }

    /// The record's current (consolidated) value of the field; `None` if it has none.
    ///
    /// # Errors
    /// Storage errors; [`Error::Refused`] if the field holds something else than a number.
    pub async fn value(&self, id: &str) -> Result<Option<f64>> {
        self.runtime()?.value(id).await
    }

    /// Record `id`'s transactions in fold order (applied ones by consolidation, then pending
    /// ones), without those left over from a deleted incarnation of the record (see
    /// [`EventualHandle::purge`]).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn transactions(&self, id: &str) -> Result<Vec<Transaction>> {
        self.runtime()?.live_transactions_of(id).await
    }

    /// Deletes what a deleted record left of its transaction log, under the record's
    /// consolidation lock: every transaction, the intent and the pending marker if record `id`
    /// does not exist; if it exists, only the transactions fenced off as belonging to an earlier,
    /// deleted incarnation. Returns how many transactions were deleted.
    ///
    /// Deleting a record does this already; call it to retry after an
    /// [`crate::EventualEvent::CleanupFailed`] (the background consolidation retries too).
    ///
    /// # Errors
    /// [`Error::Refused`] when the lock stays busy past the lock timeout or some transactions
    /// still cannot be deleted; [`Error::BadKey`] for a bad id; storage errors.
    pub async fn purge(&self, id: &str) -> Result<usize> {
        let runtime = self.runtime()?;
        runtime.check_active("eventual purge")?;
        runtime.clear_log(id).await
    }

    /// Amounts per cohort of `period` (count, sum, avg, min, max), over the transactions in the
    /// log.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn analytics(&self, period: Period) -> Result<Vec<Bucket>> {
        let txs = self.runtime()?.all_transactions().await?;
        Ok(analytics::buckets(period, &txs))
    }

    /// The records with the largest sums in one cohort (`"2024-05-01"` for [`Period::Day`]).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn top_records(
        &self,
        period: Period,
        cohort: &str,
        limit: usize,
    ) -> Result<Vec<RecordTotal>> {
        let txs = self.runtime()?.all_transactions().await?;
        Ok(analytics::top_records(period, cohort, limit, &txs))
    }

    /// Folds applied transactions older than `retention` into checkpoints (what the background
    /// collector does with the configured retention).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn garbage_collect(&self, retention: std::time::Duration) -> Result<GcReport> {
        self.runtime()?.collect(retention).await
    }
}

/// Adds `resource.eventual("field")` to resources.
pub trait EventualExt {
    /// The eventual handle of `field` on this resource. A field the plugin does not manage gets
    /// a handle whose operations fail with a message saying how to configure it.
    fn eventual(&self, field: &str) -> EventualHandle;
}

impl EventualExt for Resource {
    fn eventual(&self, field: &str) -> EventualHandle {
        self.extension::<EventualFields>()
            .and_then(|fields| fields.fields.get(field).cloned())
            .map_or_else(
                || EventualHandle::unmanaged(self.name(), field),
                EventualHandle::managed,
            )
    }
}
