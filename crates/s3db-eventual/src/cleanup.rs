//! A record's transaction log goes with the record: when a record of a managed resource is
//! deleted (`delete`, `delete_many`) or the resource is cleared (`delete_all`), its transactions,
//! consolidation intent and pending marker are deleted, under the record's consolidation lock.
//!
//! The clean-up of one record ([`FieldRuntime::clear_log`]), under the lock:
//! 1. deletes the pending marker (before listing, as consolidation does: a transaction written
//!    after the listing re-creates it), reads the intent, the log and the record;
//! 2. if the record is gone, every transaction is dead; if it exists again (a consolidation of a
//!    transaction added after the delete re-created it before the clean-up got the lock), only
//!    the fenced ones are (that consolidation fenced everything applied before it);
//! 3. **buries** the dead ones: extends the fence in the intent to all of them first (`since`:
//!    applied batches before it are dead; `discard`: dead ids), then deletes them — so a
//!    clean-up that fails half-way leaves transactions that consolidation, recalculation and
//!    garbage collection ignore;
//! 4. if everything is gone and so is the record, deletes the intent.
//!
//! A failure never fails the user's delete: it is logged and reported as
//! [`EventualEvent::CleanupFailed`]; the record is marked pending so that the background
//! consolidation deletes what is left, and [`crate::EventualHandle::purge`] retries at once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use s3db_core::plugin::{LockGuard, LockOptions, Record, ResourceHooks, async_trait};
use s3db_core::{Error, Result};

use crate::events::EventualEvent;
use crate::field::{FieldRuntime, SWEEP_CONCURRENCY};

/// The hooks on a managed resource: deleting a record (or all of them) deletes its log.
pub(crate) struct LogCleanup {
    pub(crate) fields: Vec<Arc<FieldRuntime>>,
}

#[async_trait]
impl ResourceHooks for LogCleanup {
    async fn after_delete(
        &self,
        _resource: &str,
        id: &str,
        _record: Option<&Record>,
    ) -> Result<()> {
        for field in &self.fields {
            if !field.settings.active.load(Ordering::SeqCst) {
                continue;
            }
            if let Err(e) = field.clear_log(id).await {
                field.cleanup_failed(Some(id), &e);
            }
        }
        // Never fails the user's delete: the record is gone whatever happened to its log.
        Ok(())
    }

    async fn after_delete_all(&self, _resource: &str, _objects: u64) -> Result<()> {
        for field in &self.fields {
            if !field.settings.active.load(Ordering::SeqCst) {
                continue;
            }
            for (id, e) in field.clear_resource().await {
                field.cleanup_failed(id.as_deref(), &e);
            }
        }
        Ok(())
    }
}

impl FieldRuntime {
    fn cleanup_failed(&self, id: Option<&str>, e: &Error) {
        tracing::warn!(resource = self.resource(), field = self.field(), id, error = %e,
            "eventual: the transaction log of a deleted record could not be deleted");
        self.emit(&EventualEvent::CleanupFailed {
            resource: self.resource().to_owned(),
            field: self.field().to_owned(),
            id: id.map(str::to_owned),
            error: e.to_string(),
        });
    }

    /// Deletes the dead part of record `id`'s log under its lock: everything (with its intent
    /// and pending marker) if the record does not exist, only fenced transactions if it does.
    /// Returns how many transactions were deleted.
    ///
    /// # Errors
    /// [`Error::Refused`] when the lock stays busy past the lock timeout, or when some
    /// transactions could not be deleted (they stay fenced, and the record is marked pending so
    /// that the background consolidation retries); storage errors.
    pub(crate) async fn clear_log(&self, id: &str) -> Result<usize> {
        s3db_core::key::check_part(id)?;
        let result = self.clear_log_once(id).await;
        if result.is_err() {
            // The background consolidation of a deleted record buries what it left.
            if let Err(e) = self.mark_pending(id).await {
                tracing::debug!(id, error = %e, "eventual: could not mark a deleted record pending");
            }
        }
        result
    }

    async fn clear_log_once(&self, id: &str) -> Result<usize> {
        let name = self.lock_name(id);
        let opts = LockOptions::new()
            .ttl(self.settings.lock_ttl)
            .timeout(self.settings.lock_timeout);
        let Some(mut lock) = self.cx.storage().acquire_lock(&name, opts).await? else {
            return Err(Error::Refused {
                operation: "eventual clean-up",
                reason: format!(
                    "the consolidation lock of record {id:?} stayed busy for longer than the lock timeout ({:?})",
                    self.settings.lock_timeout
                ),
            });
        };
        let result = self.clear_log_locked(id, &mut lock).await;
        if let Err(e) = lock.release().await {
            tracing::warn!(lock = name, error = %e, "eventual: could not release a consolidation lock");
        }
        result
    }

    async fn clear_log_locked(&self, id: &str, lock: &mut LockGuard) -> Result<usize> {
        let storage = self.cx.storage();
        let intent_key = self.intent_key(id)?;
        storage.delete(&self.pending_key(id)?).await?;
        let (entry, intent) = self.read_intent(&intent_key).await?;
        let txs = self.transactions_of(id).await?;
        if txs.is_empty() && entry.is_none() {
            return Ok(0);
        }
        let gone = match self.target()?.get(id).await {
            Ok(_) => false,
            Err(Error::NotFound { .. }) => true,
            Err(e) => return Err(e),
        };
        let (deleted, left) = self
            .bury(
                lock,
                &intent_key,
                entry.as_ref(),
                intent.as_ref(),
                &txs,
                |t| gone || intent.as_ref().is_some_and(|i| i.fences(t)),
            )
            .await?;
        if left > 0 {
            return Err(Error::Refused {
                operation: "eventual clean-up",
                reason: format!(
                    "{left} transaction(s) of record {id:?} could not be deleted: they stay fenced \
                     (ignored) and are deleted by the next consolidation of the record or purge({id:?})"
                ),
            });
        }
        if gone {
            storage.delete(&intent_key).await?;
        } else if txs
            .iter()
            .any(|t| !t.applied && !intent.as_ref().is_some_and(|i| i.fences(t)))
        {
            // The marker deleted above was theirs: they still wait for consolidation.
            self.mark_pending(id).await?;
        }
        tracing::debug!(
            resource = self.resource(),
            field = self.field(),
            id,
            deleted,
            "eventual: transaction log of a deleted record deleted"
        );
        Ok(deleted)
    }

    /// After the resource was cleared: [`FieldRuntime::clear_log`] for every record with a
    /// transaction, an intent or a pending marker. Returns the failures (`None`: listing).
    pub(crate) async fn clear_resource(self: &Arc<Self>) -> Vec<(Option<String>, Error)> {
        let mut ids: BTreeSet<String> = BTreeSet::new();
        let listed = async {
            ids.extend(
                self.all_transactions()
                    .await?
                    .into_iter()
                    .map(|t| t.record_id),
            );
            ids.extend(self.intent_ids().await?);
            ids.extend(self.pending_ids().await?);
            Ok::<_, Error>(())
        };
        if let Err(e) = listed.await {
            return vec![(None, e)];
        }
        futures::stream::iter(ids)
            .map(|id| {
                let this = Arc::clone(self);
                async move {
                    match this.clear_log(&id).await {
                        Ok(_) => None,
                        Err(e) => Some((Some(id), e)),
                    }
                }
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .filter_map(futures::future::ready)
            .collect()
            .await
    }
}
