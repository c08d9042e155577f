//! Consolidation: folding a record's unapplied transactions into its field, exactly once, across
//! processes, and surviving a consolidator that dies at any step.
//!
//! See the crate documentation ("Exactly once") for the design; in short, under the record's
//! lock:
//! 1. delete the record's pending marker, read its **intent** (the last consolidation's plan),
//!    its transactions and the record;
//! 2. **recover**: if the intent's transactions are not all applied, decide whether its record
//!    write happened (a transaction of it already applied; or the record changed since the
//!    intent's version and the field holds the intent's new value) and, if so, mark them applied
//!    — they are never folded again (the record deleted since: they went with it);
//! 3. set aside **dead** transactions — named by the intent's fence (`since`, `discard`), or
//!    applied to a record that does not exist any more — and bury them ([`FieldRuntime::bury`]);
//!    fold the remaining unapplied transactions (in id order) into the current value;
//! 4. renew the lease, write the new intent `{seq, transactions, old, new, from_etag, since,
//!    discard}` with a conditional write (a record created now fences off everything applied
//!    before: `since = seq`), then the record with a conditional write on the version read in 1;
//! 5. mark the transactions applied (`batch = seq`), each with a conditional write.

use std::time::Duration;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use s3db_core::plugin::{Entry, LockGuard, LockOptions, Resource, SetOptions};
use s3db_core::{Error, Result};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::events::EventualEvent;
use crate::field::{FieldRuntime, field_value};
use crate::transaction::{self, Transaction, same};

/// How many transactions are marked applied at once.
const MARK_CONCURRENCY: usize = 16;

/// Attempts of a consolidation whose record write met a concurrent write.
const MAX_ATTEMPTS: u32 = 20;

/// What the fold starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    /// The record's current value (else the initial value): `consolidate`.
    Current,
    /// A replay of every applied transaction from the initial value: `recalculate`.
    Replay,
}

/// What one consolidation did.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Consolidation {
    /// The record's value afterwards.
    pub value: f64,
    /// Transactions folded in by this consolidation.
    pub applied: usize,
    /// Transactions of an interrupted consolidation that this one found already folded into the
    /// record and only marked applied.
    pub recovered: usize,
}

/// The plan of a record's last consolidation, kept in plugin storage, with the record's **fence**
/// (`since`, `discard`): the transactions that belong to a deleted incarnation of the record.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Intent {
    pub(crate) seq: u64,
    pub(crate) transactions: Vec<String>,
    pub(crate) old: Option<f64>,
    pub(crate) new: f64,
    pub(crate) from_etag: Option<String>,
    /// Applied transactions of a batch before `since` are dead: they were folded into a record
    /// that was deleted since (0: none).
    pub(crate) since: u64,
    /// Dead transactions by id (unapplied ones of a deleted record not deleted yet).
    pub(crate) discard: Vec<String>,
}

impl Intent {
    fn to_doc(&self) -> Map<String, Value> {
        let doc = json!({
            "seq": self.seq,
            "transactions": self.transactions,
            "old": self.old,
            "new": self.new,
            "from_etag": self.from_etag,
            "since": self.since,
            "discard": self.discard,
        });
        match doc {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn from_doc(key: &str, doc: &Map<String, Value>) -> Result<Self> {
        let corrupt = |what: &str| Error::Corrupt {
            key: key.to_owned(),
            reason: format!("consolidation intent with a missing or invalid {what}"),
        };
        let ids = |name: &'static str, required: bool| -> Result<Vec<String>> {
            match doc.get(name) {
                None | Some(Value::Null) if !required => Ok(Vec::new()),
                found => found
                    .and_then(Value::as_array)
                    .ok_or_else(|| corrupt(name))?
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| corrupt(name)))
                    .collect(),
            }
        };
        Ok(Self {
            seq: doc
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or_else(|| corrupt("seq"))?,
            transactions: ids("transactions", true)?,
            old: doc.get("old").and_then(Value::as_f64),
            new: doc
                .get("new")
                .and_then(Value::as_f64)
                .ok_or_else(|| corrupt("new"))?,
            from_etag: doc
                .get("from_etag")
                .and_then(Value::as_str)
                .map(str::to_owned),
            // Intents written before fences existed have none.
            since: match doc.get("since") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_u64().ok_or_else(|| corrupt("since"))?,
            },
            discard: ids("discard", false)?,
        })
    }

    /// Whether the fence says `tx` belongs to a deleted incarnation of the record.
    pub(crate) fn fences(&self, tx: &Transaction) -> bool {
        (tx.applied && tx.batch.unwrap_or(0) < self.since) || self.discard.contains(&tx.id)
    }
}

/// The number of the record's last consolidation: the intent's, or the highest batch in its log
/// if that is higher (an intent deleted while some of its transactions could not be).
fn last_seq(intent: Option<&Intent>, txs: &[Transaction]) -> u64 {
    txs.iter()
        .filter_map(|t| t.batch)
        .chain(intent.map(|i| i.seq))
        .max()
        .unwrap_or(0)
}

impl FieldRuntime {
    /// Consolidates record `id` under its lock. `wait`: `None` waits up to the lock timeout and
    /// fails when it passes; `Some(d)` waits `d` and returns `Ok(None)` when the lock stays busy.
    pub(crate) async fn consolidate(
        &self,
        id: &str,
        base: Base,
        wait: Option<Duration>,
    ) -> Result<Option<Consolidation>> {
        self.check_active("eventual consolidate")?;
        s3db_core::key::check_part(id)?;
        let span = tracing::debug_span!(
            "eventual consolidate",
            resource = self.resource(),
            field = self.field(),
            id,
            ?base
        );
        self.consolidate_in_span(id, base, wait)
            .instrument(span)
            .await
    }

    async fn consolidate_in_span(
        &self,
        id: &str,
        base: Base,
        wait: Option<Duration>,
    ) -> Result<Option<Consolidation>> {
        let name = self.lock_name(id);
        let opts = LockOptions::new()
            .ttl(self.settings.lock_ttl)
            .timeout(wait.unwrap_or(self.settings.lock_timeout));
        let Some(mut lock) = self.cx.storage().acquire_lock(&name, opts).await? else {
            return match wait {
                Some(_) => Ok(None),
                None => Err(Error::Refused {
                    operation: "eventual consolidate",
                    reason: format!(
                        "record {id:?} is being consolidated by someone else for longer than the lock timeout ({:?})",
                        self.settings.lock_timeout
                    ),
                }),
            };
        };
        let result = self.consolidate_locked(id, base, &mut lock).await;
        if let Err(e) = lock.release().await {
            tracing::warn!(lock = name, error = %e, "eventual: could not release a consolidation lock");
        }
        let done = result?;
        if done.applied > 0 || done.recovered > 0 {
            self.emit(&EventualEvent::Consolidated {
                resource: self.resource().to_owned(),
                field: self.field().to_owned(),
                id: id.to_owned(),
                value: done.value,
                applied: done.applied,
                recovered: done.recovered,
            });
        }
        Ok(Some(done))
    }

    async fn consolidate_locked(
        &self,
        id: &str,
        base: Base,
        lock: &mut LockGuard,
    ) -> Result<Consolidation> {
        let storage = self.cx.storage();
        let target = self.target()?;
        let transactions = self.transactions_resource()?;
        let intent_key = self.intent_key(id)?;
        // Before listing: a transaction written after the listing re-creates the marker.
        storage.delete(&self.pending_key(id)?).await?;
        let mut recovered = 0;
        // Dead transactions are buried (fenced, then deleted) at most once per consolidation.
        let mut buried = false;
        // Set when a record write found the record gone: it was deleted during this consolidation.
        let mut lost_record = false;
        for _ in 0..MAX_ATTEMPTS {
            let (entry, intent) = self.read_intent(&intent_key).await?;
            let mut txs = self.transactions_of(id).await?;
            let record = match target.get(id).await {
                Ok(record) => Some(record),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            if lost_record && record.is_none() {
                // Its transactions go with it: the delete's clean-up (waiting for this lock)
                // deletes them. Re-creating the record from them would undo the delete.
                return Err(Error::Refused {
                    operation: "eventual consolidate",
                    reason: format!(
                        "record {id:?} was deleted during its consolidation; its transactions are deleted with it"
                    ),
                });
            }
            let current = record
                .as_ref()
                .map(|r| field_value(r, self.field()))
                .transpose()?
                .flatten();

            if base == Base::Current
                && let Some(intent) = &intent
            {
                recovered += self
                    .recover(
                        id,
                        intent,
                        &mut txs,
                        record.as_ref(),
                        current,
                        &transactions,
                    )
                    .await?;
            }

            // Dead transactions: fenced by the clean-up of a deleted record, or applied to a
            // record that is gone (folded into it before it was deleted: a record created now
            // starts from the initial value, so they are no part of it).
            let gone = record.is_none();
            let is_dead = |t: &Transaction| {
                (gone && t.applied) || intent.as_ref().is_some_and(|i| i.fences(t))
            };
            if !buried && txs.iter().any(is_dead) {
                buried = true;
                self.bury(
                    lock,
                    &intent_key,
                    entry.as_ref(),
                    intent.as_ref(),
                    &txs,
                    is_dead,
                )
                .await?;
                continue;
            }
            let seq = last_seq(intent.as_ref(), &txs) + 1;
            let empty_log = txs.is_empty();
            let (dead, live): (Vec<Transaction>, Vec<Transaction>) =
                txs.into_iter().partition(|t| is_dead(t));

            let initial = self.config.initial_value;
            let start = match base {
                Base::Current => current.unwrap_or(initial),
                Base::Replay => {
                    transaction::fold(&self.config, initial, live.iter().filter(|t| t.applied))
                }
            };
            let unapplied: Vec<Transaction> = live.into_iter().filter(|t| !t.applied).collect();
            if unapplied.is_empty() && (base == Base::Current || same(current, Some(start))) {
                if gone && empty_log && entry.is_some() {
                    // A deleted record with nothing left in its log: its intent goes too.
                    if let Err(e) = storage.delete(&intent_key).await {
                        tracing::debug!(id, error = %e, "eventual: could not delete the intent of a deleted record");
                    }
                }
                return Ok(Consolidation {
                    value: current.unwrap_or(initial),
                    applied: 0,
                    recovered,
                });
            }
            let new = transaction::fold(&self.config, start, &unapplied);
            if !new.is_finite() {
                return Err(Error::Refused {
                    operation: "eventual consolidate",
                    reason: format!("the value of record {id:?} would not be a finite number"),
                });
            }
            let (since, discard) = intent
                .as_ref()
                .map(|i| (i.since, i.discard.clone()))
                .unwrap_or_default();
            let next = Intent {
                seq,
                transactions: unapplied.iter().map(|t| t.id.clone()).collect(),
                old: current,
                new,
                from_etag: record.as_ref().map(|r| r.etag().as_str().to_owned()),
                // A record created now is a new incarnation: whatever was applied before is dead.
                since: if gone { since.max(seq) } else { since },
                // Fenced transactions still there (their deletion failed) stay fenced.
                discard: discard
                    .into_iter()
                    .filter(|d| dead.iter().any(|t| &t.id == d))
                    .collect(),
            };
            // Fence: the lease is ours for another full TTL before anything is written.
            lock.renew(self.settings.lock_ttl).await?;
            self.write_intent(&intent_key, entry.as_ref(), &next)
                .await?;
            let mut changes = Map::new();
            changes.insert(self.field().to_owned(), json!(new));
            let written = match &record {
                Some(r) => target.update_if_match(id, &changes, r.etag()).await,
                None => target.insert_with_id(id, &changes).await,
            };
            match written {
                Ok(_) => {}
                // The record changed (a user update) or appeared since it was read: the intent
                // says "not written" to the next attempt (same version test), so start over.
                // Gone since it was read: deleted, which the next attempt sees.
                Err(e) if e.is_conflict() || (record.is_some() && e.is_not_found()) => {
                    tracing::debug!(
                        id,
                        "eventual: the record changed during consolidation; retrying"
                    );
                    lost_record = record.is_some();
                    continue;
                }
                Err(e) => return Err(e),
            }
            let applied = unapplied.len();
            mark_applied(&transactions, unapplied, next.seq).await?;
            tracing::debug!(
                id,
                value = new,
                applied,
                seq = next.seq,
                "eventual: consolidated"
            );
            return Ok(Consolidation {
                value: new,
                applied,
                recovered,
            });
        }
        Err(Error::PreconditionFailed {
            key: format!("resource={}/data/id={id}", self.resource()),
        })
    }

    /// The record's intent (with its version), if any.
    pub(crate) async fn read_intent(
        &self,
        key: &s3db_core::Key,
    ) -> Result<(Option<Entry>, Option<Intent>)> {
        let entry = self.cx.storage().get_entry(key).await?;
        let intent = entry
            .as_ref()
            .map(|e| Intent::from_doc(key.as_str(), &e.data))
            .transpose()?;
        Ok((entry, intent))
    }

    /// Buries the record's dead transactions (`dead`, out of its log `txs`), under its lock:
    /// first extends the fence in its intent to all of them (conditional write), so that they
    /// stay dead whatever happens next — then deletes them. A transaction that cannot be deleted
    /// stays fenced (ignored by consolidation, recalculation and garbage collection, and deleted
    /// by a later consolidation or [`FieldRuntime::clear_log`]).
    ///
    /// Returns (deleted, left); an error only if the fence could not be written (nothing was
    /// deleted then).
    pub(crate) async fn bury(
        &self,
        lock: &mut LockGuard,
        intent_key: &s3db_core::Key,
        entry: Option<&Entry>,
        intent: Option<&Intent>,
        txs: &[Transaction],
        dead: impl Fn(&Transaction) -> bool,
    ) -> Result<(usize, usize)> {
        let dead: Vec<&Transaction> = txs.iter().filter(|t| dead(t)).collect();
        if dead.is_empty() {
            return Ok((0, 0));
        }
        let old = intent.cloned().unwrap_or_else(|| Intent {
            new: self.config.initial_value,
            ..Intent::default()
        });
        let since = dead
            .iter()
            .filter(|t| t.applied)
            .map(|t| t.batch.unwrap_or(0).saturating_add(1))
            .chain([old.since])
            .max()
            .unwrap_or(old.since);
        let mut discard: Vec<String> = dead
            .iter()
            .filter(|t| !(t.applied && t.batch.unwrap_or(0) < since))
            .map(|t| t.id.clone())
            .collect();
        discard.sort();
        let mut known = old.discard.clone();
        known.sort();
        if entry.is_none() || since != old.since || discard != known {
            let fence = Intent {
                seq: last_seq(intent, txs),
                since,
                discard,
                ..old
            };
            lock.renew(self.settings.lock_ttl).await?;
            self.write_intent(intent_key, entry, &fence).await?;
        }
        let resource = self.transactions_resource()?;
        let ids: Vec<&str> = dead.iter().map(|t| t.id.as_str()).collect();
        let (mut deleted, mut left) = (0, 0);
        for (tx, result) in ids.iter().zip(resource.delete_many(&ids).await) {
            match result {
                Ok(()) | Err(Error::NotFound { .. }) => deleted += 1,
                Err(e) => {
                    left += 1;
                    tracing::warn!(resource = self.resource(), field = self.field(), intent = %intent_key, transaction = tx, error = %e,
                        "eventual: could not delete a dead transaction; it stays fenced");
                }
            }
        }
        tracing::debug!(intent = %intent_key, deleted, left, "eventual: dead transactions buried");
        Ok((deleted, left))
    }

    /// Finishes an interrupted consolidation: marks its transactions applied when its record
    /// write happened. Returns how many were marked.
    async fn recover(
        &self,
        id: &str,
        intent: &Intent,
        txs: &mut [Transaction],
        record: Option<&s3db_core::Record>,
        current: Option<f64>,
        transactions: &Resource,
    ) -> Result<usize> {
        // Fenced ones belong to a deleted incarnation of the record: nothing to recover.
        let planned = |t: &Transaction| intent.transactions.contains(&t.id) && !intent.fences(t);
        let left: Vec<usize> = (0..txs.len())
            .filter(|&i| !txs[i].applied && planned(&txs[i]))
            .collect();
        if left.is_empty() {
            return Ok(0);
        }
        let started_marking = txs.iter().any(|t| t.applied && planned(t));
        let version = record.map(|r| r.etag().as_str());
        let written = if started_marking {
            true
        } else if version.is_none() && intent.from_etag.is_some() {
            // The record it updated was deleted since: its transactions went with it, folded
            // into it or not. Marked applied, they are dead with it (never folded into a record
            // created later).
            true
        } else if intent.from_etag.as_deref() == version {
            false
        } else if same(current, Some(intent.new)) {
            true
        } else if same(current, intent.old) {
            false
        } else {
            return Err(Error::Refused {
                operation: "eventual consolidate",
                reason: format!(
                    "field {:?} of record {id:?} was changed outside the plugin while consolidation #{} was interrupted \
                     (it holds {current:?}, expected {:?} or {}): call recalculate({id:?}) to rebuild it from the transaction log",
                    self.field(),
                    intent.seq,
                    intent.old,
                    intent.new
                ),
            });
        };
        if !written {
            return Ok(0);
        }
        let finish: Vec<Transaction> = left.iter().map(|&i| txs[i].clone()).collect();
        let n = finish.len();
        mark_applied(transactions, finish, intent.seq).await?;
        for i in left {
            txs[i].applied = true;
            txs[i].batch = Some(intent.seq);
        }
        tracing::info!(
            resource = self.resource(),
            field = self.field(),
            id,
            seq = intent.seq,
            transactions = n,
            "eventual: finished an interrupted consolidation"
        );
        self.emit(&EventualEvent::Recovered {
            resource: self.resource().to_owned(),
            field: self.field().to_owned(),
            id: id.to_owned(),
            batch: intent.seq,
            transactions: n,
        });
        Ok(n)
    }

    async fn write_intent(
        &self,
        key: &s3db_core::Key,
        previous: Option<&Entry>,
        intent: &Intent,
    ) -> Result<()> {
        let storage = self.cx.storage();
        let doc = intent.to_doc();
        let written = match previous {
            Some(entry) => storage
                .update_entry(key, &doc, SetOptions::new(), &entry.etag)
                .await
                .map(drop),
            None => storage.create(key, &doc, SetOptions::new()).await.map(drop),
        };
        written.map_err(|e| {
            if e.is_conflict() {
                Error::Refused {
                    operation: "eventual consolidate",
                    reason: format!(
                        "another consolidator wrote the intent of {key} while this one held the lock (its lease expired?); nothing was written"
                    ),
                }
            } else {
                e
            }
        })
    }
}

/// Marks transactions applied by consolidation `seq`, each with a conditional write (re-read
/// and retried on conflict; one found applied already is done).
pub(crate) async fn mark_applied(
    resource: &Resource,
    transactions: Vec<Transaction>,
    seq: u64,
) -> Result<()> {
    let at = transaction::rfc3339(Utc::now());
    futures::stream::iter(transactions)
        .map(|tx| {
            let at = at.clone();
            async move {
                let changes = json!({"applied": true, "batch": seq, "applied_at": at});
                let mut etag = tx.etag.clone();
                for _ in 0..MAX_ATTEMPTS {
                    match resource.update_if_match(&tx.id, &changes, &etag).await {
                        Ok(_) => return Ok(()),
                        Err(e) if e.is_conflict() => {
                            let fresh = Transaction::from_record(&resource.get(&tx.id).await?)?;
                            if fresh.applied {
                                return Ok(());
                            }
                            etag = fresh.etag;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(Error::PreconditionFailed { key: tx.id.clone() })
            }
        })
        .buffer_unordered(MARK_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip() -> Result<()> {
        let intent = Intent {
            seq: 7,
            transactions: vec!["a".into(), "b".into()],
            old: None,
            new: 12.5,
            from_etag: Some("\"x\"".into()),
            since: 3,
            discard: vec!["c".into()],
        };
        assert_eq!(Intent::from_doc("k", &intent.to_doc())?, intent);
        assert!(Intent::from_doc("k", &Map::new()).is_err());
        // An intent written before fences existed has none.
        let mut legacy = intent.to_doc();
        legacy.remove("since");
        legacy.remove("discard");
        let read = Intent::from_doc("k", &legacy)?;
        assert_eq!((read.since, read.discard.len()), (0, 0));
        Ok(())
    }

    fn tx(id: &str, batch: Option<u64>) -> Transaction {
        let mut doc = crate::transaction::new_document(
            "r",
            crate::transaction::Operation::Add,
            1.0,
            Utc::now(),
        );
        doc.insert("applied".into(), json!(batch.is_some()));
        if let Some(b) = batch {
            doc.insert("batch".into(), json!(b));
        }
        let record = s3db_core::Record::from_parts(
            id.to_owned(),
            doc,
            s3db_core::ETag::new("e"),
            String::new(),
        );
        Transaction::from_record(&record).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fences_cover_older_batches_and_listed_ids() {
        let fence = Intent {
            since: 3,
            discard: vec!["u".into()],
            ..Intent::default()
        };
        assert!(fence.fences(&tx("a", Some(2))));
        assert!(
            !fence.fences(&tx("b", Some(3))),
            "a batch of the new incarnation"
        );
        assert!(fence.fences(&tx("u", None)));
        assert!(!fence.fences(&tx("v", None)), "a racing add");
        assert_eq!(last_seq(Some(&fence), &[tx("a", Some(9))]), 9);
        assert_eq!(last_seq(None, &[]), 0);
    }
}
