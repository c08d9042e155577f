//! Reading entries back: queries, statistics and retention clean-up.
//!
//! A query first picks candidate ids without reading any entry — from the `byResource`
//! partition when it names a resource, from the `byDate` partition's days when it has a bounded
//! time range of at most a year, else from the whole resource — and narrows them by the time in
//! each id. Only then are entries read, in id (time) order and in small batches, until `offset`
//! + `limit` matches are found.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use s3db_core::plugin::{Error, Operation, Outcome, Resource, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::entry::{AuditEntry, AuditOperation, BY_DATE, BY_RESOURCE, id_millis};

/// How many entries a query returns unless told otherwise (as the original).
pub const DEFAULT_QUERY_LIMIT: usize = 100;
/// Longest time range (in days) read through the `byDate` partition.
const MAX_DAYS_BY_DATE: i64 = 366;
/// How many entries are read at once.
const READ_BATCH: usize = 64;

/// Which entries to read. Every filter given must match; times are compared at millisecond
/// precision, `since` inclusive and `until` exclusive.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use s3db_audit::{AuditOperation, AuditQuery};
///
/// let deletes_in_january = AuditQuery::new()
///     .resource("users")
///     .operation(AuditOperation::Delete)
///     .since(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap())
///     .until(Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap())
///     .newest_first()
///     .limit(20);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct AuditQuery {
    resource: Option<String>,
    operation: Option<AuditOperation>,
    record_id: Option<String>,
    partition: Option<String>,
    partition_values: Option<Map<String, Value>>,
    user: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: usize,
    offset: usize,
    newest_first: bool,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditQuery {
    /// Every entry, oldest first, at most [`DEFAULT_QUERY_LIMIT`].
    pub fn new() -> Self {
        Self {
            resource: None,
            operation: None,
            record_id: None,
            partition: None,
            partition_values: None,
            user: None,
            since: None,
            until: None,
            limit: DEFAULT_QUERY_LIMIT,
            offset: 0,
            newest_first: false,
        }
    }

    /// Entries of this resource.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Entries of this operation.
    pub fn operation(mut self, operation: AuditOperation) -> Self {
        self.operation = Some(operation);
        self
    }

    /// Entries of this record id.
    pub fn record(mut self, id: impl Into<String>) -> Self {
        self.record_id = Some(id.into());
        self
    }

    /// Entries whose (first) partition is this one.
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// Entries whose record was in `partition` with exactly these field values.
    pub fn partition_values(
        mut self,
        partition: impl Into<String>,
        values: Map<String, Value>,
    ) -> Self {
        let partition = partition.into();
        let mut map = Map::new();
        map.insert(partition, Value::Object(values));
        self.partition_values = Some(map);
        self
    }

    /// Entries of this user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Entries stamped at or after this time.
    pub fn since(mut self, at: DateTime<Utc>) -> Self {
        self.since = Some(at);
        self
    }

    /// Entries stamped before this time.
    pub fn until(mut self, at: DateTime<Utc>) -> Self {
        self.until = Some(at);
        self
    }

    /// At most this many entries (default [`DEFAULT_QUERY_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// No limit.
    pub fn unlimited(self) -> Self {
        self.limit(usize::MAX)
    }

    /// Skips this many matching entries first.
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Newest entries first (default: oldest first).
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    fn range_ms(&self) -> (i64, i64) {
        (
            self.since.map_or(i64::MIN, |t| t.timestamp_millis()),
            self.until.map_or(i64::MAX, |t| t.timestamp_millis()),
        )
    }

    fn check(&self) -> Result<()> {
        let (since, until) = self.range_ms();
        if since >= until {
            return Err(Error::Refused {
                operation: "audit query",
                reason: format!(
                    "the time range is empty: since ({}) must be before until ({})",
                    self.since.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    self.until.map(|t| t.to_rfc3339()).unwrap_or_default()
                ),
            });
        }
        Ok(())
    }

    /// Whether a query needs entries read to decide (beyond resource and time).
    fn filters_entries(&self) -> bool {
        self.operation.is_some()
            || self.record_id.is_some()
            || self.partition.is_some()
            || self.partition_values.is_some()
            || self.user.is_some()
    }

    fn matches(&self, e: &AuditEntry) -> bool {
        let (since, until) = self.range_ms();
        let t = e.timestamp.timestamp_millis();
        self.resource.as_ref().is_none_or(|r| *r == e.resource)
            && self.operation.is_none_or(|o| o == e.operation)
            && self
                .record_id
                .as_ref()
                .is_none_or(|id| e.record_id.as_ref() == Some(id))
            && self
                .partition
                .as_ref()
                .is_none_or(|p| e.partition.as_ref() == Some(p))
            && self.partition_values.as_ref().is_none_or(|wanted| {
                wanted.iter().all(|(name, values)| {
                    e.partition_values
                        .as_ref()
                        .and_then(|pv| pv.get(name))
                        .is_some_and(|v| v == values)
                })
            })
            && self.user.as_ref().is_none_or(|u| *u == e.user)
            && since <= t
            && t < until
    }
}

/// Counts of entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStats {
    /// Entries counted.
    pub total: u64,
    /// By operation.
    pub by_operation: BTreeMap<AuditOperation, u64>,
    /// By audited resource.
    pub by_resource: BTreeMap<String, u64>,
    /// By (first) partition, for entries that have one.
    pub by_partition: BTreeMap<String, u64>,
    /// By user.
    pub by_user: BTreeMap<String, u64>,
    /// By day (`YYYY-MM-DD`, UTC).
    pub timeline: BTreeMap<String, u64>,
    /// Entries whose data was truncated.
    pub truncated: u64,
}

impl AuditStats {
    fn add(&mut self, e: &AuditEntry) {
        self.total += 1;
        *self.by_operation.entry(e.operation).or_default() += 1;
        *self.by_resource.entry(e.resource.clone()).or_default() += 1;
        if let Some(p) = &e.partition {
            *self.by_partition.entry(p.clone()).or_default() += 1;
        }
        *self.by_user.entry(e.user.clone()).or_default() += 1;
        *self.timeline.entry(e.date.clone()).or_default() += 1;
        self.truncated += u64::from(e.truncated);
    }
}

/// Ids of one partition of `plg_audits` (LIST requests only).
async fn partition_ids(
    audits: &Resource,
    partition: &str,
    field: &str,
    value: &str,
) -> Result<Vec<String>> {
    let mut values = BTreeMap::new();
    values.insert(field.to_owned(), Value::String(value.to_owned()));
    match audits
        .run(Operation::ListIds {
            partition: Some((partition.to_owned(), values)),
            limit: None,
        })
        .await?
    {
        Outcome::Ids(ids) => Ok(ids),
        _ => Err(Error::Corrupt {
            key: partition.to_owned(),
            reason: "a listing of ids answered something else".to_owned(),
        }),
    }
}

/// The ids that may match, in the query's order, without reading entries.
async fn candidates(audits: &Resource, q: &AuditQuery) -> Result<Vec<String>> {
    let mut ids = if let Some(resource) = &q.resource {
        partition_ids(audits, BY_RESOURCE, "resource", resource).await?
    } else if let (Some(since), Some(until)) = (q.since, q.until)
        && (until.date_naive() - since.date_naive()).num_days() <= MAX_DAYS_BY_DATE
    {
        let mut ids = Vec::new();
        let mut day = since.date_naive();
        while day <= until.date_naive() {
            let date = day.format("%Y-%m-%d").to_string();
            ids.extend(partition_ids(audits, BY_DATE, "date", &date).await?);
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        ids
    } else {
        audits.list_ids().await?
    };
    let (since, until) = q.range_ms();
    ids.retain(|id| id_millis(id).is_some_and(|t| since <= t && t < until));
    ids.sort_unstable();
    ids.dedup();
    if q.newest_first {
        ids.reverse();
    }
    Ok(ids)
}

/// Reads entries of `ids` in order, batch by batch, handing each match to `take` until it says
/// stop. Entries deleted meanwhile (clean-up) are skipped.
async fn scan(
    audits: &Resource,
    q: &AuditQuery,
    ids: &[String],
    mut take: impl FnMut(AuditEntry) -> bool,
) -> Result<()> {
    for batch in ids.chunks(READ_BATCH) {
        for result in audits.get_many(batch).await {
            let entry: AuditEntry = match result {
                Ok(record) => record.deserialize()?,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if q.matches(&entry) && !take(entry) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Runs a query.
pub(crate) async fn run(audits: &Resource, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let span = tracing::debug_span!(
        "audit_query",
        resource = q.resource.as_deref().unwrap_or("*")
    );
    run_query(audits, q).instrument(span).await
}

async fn run_query(audits: &Resource, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
    q.check()?;
    if q.limit == 0 {
        return Ok(Vec::new());
    }
    let mut ids = candidates(audits, q).await?;
    let mut skip = q.offset;
    if !q.filters_entries() {
        // Every candidate matches (ids carry the time; the partition, the resource): skip and
        // limit without reading.
        ids = ids.into_iter().skip(skip).take(q.limit).collect();
        skip = 0;
    }
    let mut out = Vec::new();
    scan(audits, q, &ids, |entry| {
        if skip > 0 {
            skip -= 1;
            return true;
        }
        out.push(entry);
        out.len() < q.limit
    })
    .await?;
    Ok(out)
}

/// Statistics of every entry matching a query.
pub(crate) async fn stats(audits: &Resource, q: &AuditQuery) -> Result<AuditStats> {
    q.check()?;
    let ids = candidates(audits, q).await?;
    let mut stats = AuditStats::default();
    scan(audits, q, &ids, |entry| {
        stats.add(&entry);
        true
    })
    .await?;
    Ok(stats)
}

/// Deletes the entries stamped before `cutoff` (found by listing ids only).
pub(crate) async fn cleanup(audits: &Resource, cutoff: DateTime<Utc>) -> Result<u64> {
    let cutoff = cutoff.timestamp_millis();
    let old: Vec<String> = audits
        .list_ids()
        .await?
        .into_iter()
        .filter(|id| id_millis(id).is_some_and(|t| t < cutoff))
        .collect();
    let mut deleted = 0;
    for result in audits.delete_many(&old).await {
        match result {
            Ok(()) => deleted += 1,
            // Another process cleaned it up first.
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    tracing::debug!(deleted, "audit entries cleaned up");
    Ok(deleted)
}
