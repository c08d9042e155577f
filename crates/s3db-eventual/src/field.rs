//! One managed field at run time: writing transactions, the pending index, and reading them back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use s3db_core::plugin::{PluginContext, Resource, SetOptions};
use s3db_core::{Error, Key, Result};
use serde_json::{Map, Value, json};

use crate::config::{Config, FieldConfig, Mode};
use crate::events::EventualEvent;
use crate::transaction::{self, BY_RECORD, Operation, Transaction};

/// Transient failures a transaction write retries (an answer lost after the write is recognised
/// by its id: a retry that finds it is a success).
const WRITE_RETRIES: u32 = 3;

/// How many records the background task consolidates at once.
pub(crate) const SWEEP_CONCURRENCY: usize = 4;

/// Settings every field shares, and whether the plugin is still installed.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    pub(crate) consolidation_interval: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) active: AtomicBool,
}

impl Settings {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            mode: config.mode,
            consolidation_interval: config.consolidation_interval,
            lock_ttl: config.lock_ttl,
            lock_timeout: config.lock_timeout,
            active: AtomicBool::new(true),
        }
    }
}

/// What a write returns.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Receipt {
    /// The transaction written (durable once this is returned).
    pub transaction_id: String,
    /// In sync mode, the record's value after consolidation; `None` in async mode, or when the
    /// sync consolidation failed (the transaction is then applied by the background task, see
    /// [`crate::EventualEvent::ConsolidationFailed`]).
    pub value: Option<f64>,
}

/// One managed field of one resource.
pub(crate) struct FieldRuntime {
    pub(crate) config: FieldConfig,
    pub(crate) settings: Arc<Settings>,
    pub(crate) cx: PluginContext,
}

impl std::fmt::Debug for FieldRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldRuntime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FieldRuntime {
    pub(crate) fn resource(&self) -> &str {
        &self.config.resource
    }

    pub(crate) fn field(&self) -> &str {
        &self.config.field
    }

    pub(crate) fn check_active(&self, operation: &'static str) -> Result<()> {
        if self.settings.active.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::Refused {
                operation,
                reason: "the eventual consistency plugin was uninstalled".to_owned(),
            })
        }
    }

    /// The transaction resource `plg_<r>_tx_<f>`.
    pub(crate) fn transactions_resource(&self) -> Result<Resource> {
        let name = self.config.transaction_resource();
        self.cx
            .database()?
            .resource(&name)
            .ok_or_else(|| Error::Refused {
                operation: "eventual",
                reason: format!("the transaction resource {name} is gone"),
            })
    }

    /// The user resource whose field is managed.
    pub(crate) fn target(&self) -> Result<Resource> {
        self.cx
            .database()?
            .resource(self.resource())
            .ok_or_else(|| Error::Refused {
                operation: "eventual consolidate",
                reason: format!(
                    "resource {:?} does not exist yet: create it before consolidating",
                    self.resource()
                ),
            })
    }

    pub(crate) fn emit(&self, event: &EventualEvent) {
        self.cx.emit_event(event);
    }

    /// `resource=<r>/plugin=<slug>/pending/<f>/<id>`: a record with transactions not yet
    /// consolidated (written after the transaction, deleted by the consolidator before it lists).
    pub(crate) fn pending_key(&self, id: &str) -> Result<Key> {
        self.cx
            .storage()
            .key(Some(self.resource()), &["pending", self.field(), id])
    }

    /// `resource=<r>/plugin=<slug>/consolidation/<f>/<id>`: the record's consolidation intent.
    pub(crate) fn intent_key(&self, id: &str) -> Result<Key> {
        self.cx
            .storage()
            .key(Some(self.resource()), &["consolidation", self.field(), id])
    }

    /// The name of the record's consolidation lock.
    pub(crate) fn lock_name(&self, id: &str) -> String {
        format!("{}~{}~{}", self.resource(), self.field(), id)
    }

    /// Writes one transaction; in sync mode consolidates and returns the new value.
    pub(crate) async fn write(
        self: &Arc<Self>,
        id: &str,
        operation: Operation,
        value: f64,
    ) -> Result<Receipt> {
        self.check_active("eventual write")?;
        if !value.is_finite() {
            return Err(Error::Validation(vec![s3db_core::FieldError::new(
                "value",
                "type",
                format!("the amount of a transaction must be a finite number, not {value}"),
            )]));
        }
        s3db_core::key::check_part(id)?;
        let tx_id = transaction::next_id();
        let doc = transaction::new_document(id, operation, value, Utc::now());
        self.insert_transaction(&tx_id, doc).await?;
        tracing::debug!(
            resource = self.resource(),
            field = self.field(),
            id,
            transaction = %tx_id,
            operation = operation.as_str(),
            value,
            "eventual: transaction written"
        );
        let value = match self.settings.mode {
            Mode::Async => {
                self.mark_pending(id).await?;
                None
            }
            Mode::Sync => match self
                .consolidate(id, crate::consolidation::Base::Current, None)
                .await
            {
                Ok(Some(done)) => Some(done.value),
                Ok(None) => None,
                Err(e) => {
                    // The transaction is durable: leave it to the background task.
                    tracing::warn!(resource = self.resource(), field = self.field(), id, error = %e,
                        "eventual: sync consolidation failed; the transaction stays pending");
                    self.emit(&EventualEvent::ConsolidationFailed {
                        resource: self.resource().to_owned(),
                        field: self.field().to_owned(),
                        id: id.to_owned(),
                        error: e.to_string(),
                    });
                    self.mark_pending(id).await?;
                    None
                }
            },
        };
        Ok(Receipt {
            transaction_id: tx_id,
            value,
        })
    }

    async fn insert_transaction(&self, tx_id: &str, doc: Map<String, Value>) -> Result<()> {
        let resource = self.transactions_resource()?;
        let mut tries = 0;
        loop {
            match resource.insert_with_id(tx_id, &doc).await {
                Ok(_) => return Ok(()),
                // A retry finding our own id: the earlier try was written, its answer lost.
                Err(Error::AlreadyExists { .. }) if tries > 0 => return Ok(()),
                Err(e) if e.is_transient() && tries < WRITE_RETRIES => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) async fn mark_pending(&self, id: &str) -> Result<()> {
        let mut doc = Map::new();
        doc.insert("at".to_owned(), json!(transaction::rfc3339(Utc::now())));
        self.cx
            .storage()
            .set(&self.pending_key(id)?, &doc, SetOptions::new())
            .await
            .map(drop)
    }

    /// Ids of records with a pending marker.
    pub(crate) async fn pending_ids(&self) -> Result<Vec<String>> {
        let sub = format!("pending/{}", self.field());
        let keys = self
            .cx
            .storage()
            .list_for_resource(self.resource(), Some(&sub), None)
            .await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.as_str().rsplit('/').next().map(str::to_owned))
            .collect())
    }

    /// Ids of records with a consolidation intent.
    pub(crate) async fn intent_ids(&self) -> Result<Vec<String>> {
        let sub = format!("consolidation/{}", self.field());
        let keys = self
            .cx
            .storage()
            .list_for_resource(self.resource(), Some(&sub), None)
            .await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.as_str().rsplit('/').next().map(str::to_owned))
            .collect())
    }

    /// The transactions of one record that count, in fold order: without those its fence says
    /// belong to a deleted incarnation of the record (left by a clean-up that failed half-way).
    pub(crate) async fn live_transactions_of(&self, id: &str) -> Result<Vec<Transaction>> {
        let (_, intent) = self.read_intent(&self.intent_key(id)?).await?;
        let mut txs = self.transactions_of(id).await?;
        if let Some(intent) = intent {
            txs.retain(|t| !intent.fences(t));
        }
        Ok(txs)
    }

    /// Every transaction of one record, in fold order.
    pub(crate) async fn transactions_of(&self, id: &str) -> Result<Vec<Transaction>> {
        let records = self
            .transactions_resource()?
            .list_partition(BY_RECORD, json!({ "record_id": id }))
            .await?;
        let mut txs = records
            .iter()
            .map(Transaction::from_record)
            .collect::<Result<Vec<_>>>()?;
        // A partition reference can outlive a move; keep only this record's.
        txs.retain(|t| t.record_id == id);
        txs.sort_by(Transaction::fold_order);
        Ok(txs)
    }

    /// Every transaction of the field.
    pub(crate) async fn all_transactions(&self) -> Result<Vec<Transaction>> {
        let records = self.transactions_resource()?.list().await?;
        records.iter().map(Transaction::from_record).collect()
    }

    /// The record's current value of the field (`None` if the record or the field is missing).
    pub(crate) async fn value(&self, id: &str) -> Result<Option<f64>> {
        match self.target()?.get(id).await {
            Ok(record) => field_value(&record, self.field()),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Consolidates every record with a pending marker (records whose lock is busy are left for
    /// the next round). Returns how many were consolidated.
    pub(crate) async fn consolidate_pending(self: &Arc<Self>) -> Result<usize> {
        let ids = self.pending_ids().await?;
        let done = futures::stream::iter(ids)
            .map(|id| {
                let this = Arc::clone(self);
                async move {
                    match this
                        .consolidate(&id, crate::consolidation::Base::Current, Some(Duration::ZERO))
                        .await
                    {
                        Ok(done) => Ok::<_, Error>(usize::from(done.is_some())),
                        Err(e) => {
                            tracing::warn!(resource = this.resource(), field = this.field(), id, error = %e,
                                "eventual: background consolidation failed; retrying next round");
                            this.emit(&EventualEvent::ConsolidationFailed {
                                resource: this.resource().to_owned(),
                                field: this.field().to_owned(),
                                id: id.clone(),
                                error: e.to_string(),
                            });
                            Ok(0)
                        }
                    }
                }
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .try_fold(0, |n, d| async move { Ok(n + d) })
            .await?;
        Ok(done)
    }
}

/// The field's value in a record: `None` if missing or null.
pub(crate) fn field_value(record: &s3db_core::Record, field: &str) -> Result<Option<f64>> {
    match record.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| Error::Refused {
            operation: "eventual consolidate",
            reason: format!(
                "field {field:?} of record {:?} is not a number ({v}): the eventual plugin manages numeric fields only",
                record.id()
            ),
        }),
    }
}
