//! Garbage collection: old applied transactions are folded into a checkpoint so the log stays
//! small and `recalculate` still replays to the same value.
//!
//! For each record (under its consolidation lock), the longest prefix of the log in fold order
//! whose transactions are all applied before the cutoff is collapsed: its **last** transaction
//! is rewritten (conditionally) into a `set` to the value of the whole prefix, marked
//! `checkpoint`, and only then are the others deleted. At every step a replay gives the same
//! value (a `set` overrides everything before it), so a collector that dies half-way leaves a
//! correct log, and the next run finishes the job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use s3db_core::plugin::{LockGuard, LockOptions};
use s3db_core::{Error, Result};
use serde_json::json;

use crate::consolidation::Base;
use crate::events::EventualEvent;
use crate::field::FieldRuntime;
use crate::transaction::{self, Transaction};

/// What one garbage collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Transactions deleted.
    pub deleted: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Records with stranded unapplied transactions that were consolidated on the way.
    pub consolidated: u64,
}

impl FieldRuntime {
    /// Collects applied transactions older than `retention`, and consolidates records whose
    /// unapplied transactions are older than two consolidation intervals (a writer that died
    /// before leaving its pending marker).
    pub(crate) async fn collect(self: &Arc<Self>, retention: Duration) -> Result<GcReport> {
        self.check_active("eventual gc")?;
        let cutoff =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let stranded_before = Utc::now()
            - chrono::Duration::from_std(self.settings.consolidation_interval * 2)
                .unwrap_or(chrono::Duration::MAX);
        let mut by_record: BTreeMap<String, Vec<Transaction>> = BTreeMap::new();
        for tx in self.all_transactions().await? {
            by_record.entry(tx.record_id.clone()).or_default().push(tx);
        }
        let mut report = GcReport::default();
        for (id, txs) in by_record {
            if txs
                .iter()
                .any(|t| !t.applied && t.timestamp < stranded_before)
                && self
                    .consolidate(&id, Base::Current, Some(Duration::ZERO))
                    .await?
                    .is_some()
            {
                report.consolidated += 1;
            }
            let collectable = txs
                .iter()
                .filter(|t| t.applied && t.applied_at.is_some_and(|a| a < cutoff))
                .count();
            if collectable >= 2 {
                let (deleted, checkpointed) = self.checkpoint(&id, cutoff).await?;
                report.deleted += deleted;
                report.checkpoints += u64::from(checkpointed);
            }
        }
        if report.deleted > 0 {
            self.emit(&EventualEvent::GarbageCollected {
                resource: self.resource().to_owned(),
                field: self.field().to_owned(),
                deleted: report.deleted,
                checkpoints: report.checkpoints,
            });
        }
        Ok(report)
    }

    /// Collapses one record's old prefix; returns how many transactions were deleted and whether
    /// a checkpoint was written.
    async fn checkpoint(&self, id: &str, cutoff: chrono::DateTime<Utc>) -> Result<(u64, bool)> {
        let opts = LockOptions::new()
            .ttl(self.settings.lock_ttl)
            .timeout(Duration::ZERO);
        let Some(lock) = self
            .cx
            .storage()
            .acquire_lock(&self.lock_name(id), opts)
            .await?
        else {
            return Ok((0, false));
        };
        let mut lock = lock;
        let result = self.checkpoint_locked(id, cutoff, &mut lock).await;
        if let Err(e) = lock.release().await {
            tracing::warn!(id, error = %e, "eventual: could not release a gc lock");
        }
        result
    }

    async fn checkpoint_locked(
        &self,
        id: &str,
        cutoff: chrono::DateTime<Utc>,
        lock: &mut LockGuard,
    ) -> Result<(u64, bool)> {
        let intent_key = self.intent_key(id)?;
        let (entry, intent) = self.read_intent(&intent_key).await?;
        let mut txs = self.transactions_of(id).await?;
        // Left over from a deleted incarnation of the record: deleted, never folded in.
        let mut buried = 0;
        if let Some(intent) = &intent
            && txs.iter().any(|t| intent.fences(t))
        {
            let fenced = |t: &Transaction| intent.fences(t);
            let (deleted, _) = self
                .bury(
                    lock,
                    &intent_key,
                    entry.as_ref(),
                    Some(intent),
                    &txs,
                    fenced,
                )
                .await?;
            buried = deleted as u64;
            txs.retain(|t| !intent.fences(t));
        }
        let prefix: Vec<&Transaction> = txs
            .iter()
            .take_while(|t| t.applied && t.applied_at.is_some_and(|a| a < cutoff))
            .collect();
        let Some((last, before)) = prefix.split_last() else {
            return Ok((buried, false));
        };
        if before.is_empty() {
            return Ok((buried, false));
        }
        let value = transaction::fold(
            &self.config,
            self.config.initial_value,
            prefix.iter().copied(),
        );
        let resource = self.transactions_resource()?;
        let changes = json!({"operation": "set", "value": value, "checkpoint": true});
        match resource
            .update_if_match(&last.id, &changes, &last.etag)
            .await
        {
            Ok(_) => {}
            // Changed since read (another collector): leave it to the next run.
            Err(e) if e.is_conflict() => return Ok((buried, false)),
            Err(e) => return Err(e),
        }
        let ids: Vec<&str> = before.iter().map(|t| t.id.as_str()).collect();
        let mut deleted = buried;
        for result in resource.delete_many(&ids).await {
            match result {
                Ok(()) => deleted += 1,
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(
            id,
            deleted,
            value,
            "eventual: transactions folded into a checkpoint"
        );
        Ok((deleted, true))
    }
}
