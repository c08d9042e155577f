//! Periodic flush of each period's measurements into `plg_metrics` (aggregates) and
//! `plg_metrics_slow` (slow operations), and retention clean-up.
//!
//! Record ids start with the flush (or slow operation) time in milliseconds, zero-padded: clean-up
//! lists ids only (LIST requests, no reads) and deletes those before the cutoff. Ids also carry a
//! per-plugin-instance token, so processes sharing a bucket never collide.

use std::time::Duration;

use chrono::{DateTime, Utc};
use s3db_core::plugin::{PluginContext, Resource, ResourceConfig, Result};
use s3db_core::{Behavior, Error};
use serde::{Deserialize, Serialize};

use crate::Shared;
use crate::events::MetricsEvent;
use crate::stats::{Agg, SlowOperation};

/// The internal resource of per-period aggregates.
pub const METRICS_RESOURCE: &str = "plg_metrics";
/// The internal resource of slow operations.
pub const SLOW_RESOURCE: &str = "plg_metrics_slow";

/// One flushed record of `plg_metrics`: one resource's operation over one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlushedMetrics {
    /// The record id (`<period_end ms>-<instance>-<n>`).
    #[serde(default)]
    pub id: String,
    /// The resource.
    pub resource: String,
    /// The operation's name.
    pub operation: String,
    /// Start of the period (the previous flush, or when measuring started).
    pub period_start: DateTime<Utc>,
    /// End of the period (this flush).
    pub period_end: DateTime<Utc>,
    /// Operations in the period.
    pub count: u64,
    /// Of which failed.
    pub errors: u64,
    /// Of which were slow.
    pub slow: u64,
    /// Fastest, in milliseconds.
    pub min_ms: f64,
    /// Mean, in milliseconds.
    pub mean_ms: f64,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, in milliseconds.
    pub p95_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// Slowest, in milliseconds.
    pub max_ms: f64,
    /// The plugin instance (process) that flushed it.
    pub instance: String,
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushReport {
    /// Aggregate records written to `plg_metrics`.
    pub records: usize,
    /// Slow operations written to `plg_metrics_slow`.
    pub slow: usize,
    /// Old records deleted by retention.
    pub deleted: u64,
}

/// A slow operation as stored in `plg_metrics_slow`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSlow {
    #[serde(default)]
    id: String,
    resource: String,
    operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record_id: Option<String>,
    duration_ms: f64,
    at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    instance: String,
}

/// Where the last flush stopped.
#[derive(Debug)]
pub(crate) struct FlushCursor {
    /// Start of the current period.
    pub(crate) period_start: DateTime<Utc>,
    /// The first slow-log sequence number not yet written.
    pub(crate) slow_seq: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn definition_metrics() -> ResourceConfig {
    ResourceConfig::new(METRICS_RESOURCE)
        .attribute("resource", "string|required")
        .attribute("operation", "string|required")
        .attribute("period_start", "date|required")
        .attribute("period_end", "date|required")
        .attribute("count", "integer|required")
        .attribute("errors", "integer|required")
        .attribute("slow", "integer|required")
        .attribute("min_ms", "number|required")
        .attribute("mean_ms", "number|required")
        .attribute("p50_ms", "number|required")
        .attribute("p95_ms", "number|required")
        .attribute("p99_ms", "number|required")
        .attribute("max_ms", "number|required")
        .attribute("instance", "string|required")
        .behavior(Behavior::BodyOverflow)
}

fn definition_slow() -> ResourceConfig {
    ResourceConfig::new(SLOW_RESOURCE)
        .attribute("resource", "string|required")
        .attribute("operation", "string|required")
        .attribute("record_id", "string")
        .attribute("duration_ms", "number|required")
        .attribute("at", "date|required")
        .attribute("error", "string")
        .attribute("instance", "string|required")
        .behavior(Behavior::BodyOverflow)
}

/// Creates (or opens) both internal resources.
pub(crate) async fn create_resources(cx: &PluginContext) -> Result<(Resource, Resource)> {
    let metrics = cx.create_resource(definition_metrics()).await?;
    let slow = cx.create_resource(definition_slow()).await?;
    Ok((metrics, slow))
}

async fn resources(cx: &PluginContext) -> Result<(Resource, Resource)> {
    let db = cx.database()?;
    match (db.resource(METRICS_RESOURCE), db.resource(SLOW_RESOURCE)) {
        (Some(m), Some(s)) => Ok((m, s)),
        _ => create_resources(cx).await,
    }
}

/// The time in milliseconds at the start of a record id.
fn id_millis(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}

fn record_id(at: DateTime<Utc>, instance: &str, suffix: &str) -> String {
    format!("{:013}-{instance}-{suffix}", at.timestamp_millis().max(0))
}

impl Shared {
    /// Writes the current period's aggregates and the new slow operations, then applies retention.
    pub(crate) async fn flush(&self, cx: &PluginContext) -> Result<FlushReport> {
        let mut cursor = self.flush_cursor.lock().await;
        let (metrics, slow_resource) = resources(cx).await?;
        let now = Utc::now();
        let period_start = std::mem::replace(&mut cursor.period_start, now);

        // Take every window; what cannot be written is merged back for the next flush.
        let mut taken: Vec<(String, &'static str, [Agg; 2])> = Vec::new();
        for (resource, stats) in self.resources() {
            let mut ops = stats.lock();
            for (op, s) in ops.iter_mut() {
                if s.window.iter().any(|a| a.count > 0) {
                    taken.push((resource.clone(), *op, std::mem::take(&mut s.window)));
                }
            }
        }
        let docs: Vec<FlushedMetrics> = taken
            .iter()
            .enumerate()
            .map(|(n, (resource, op, window))| {
                let mut all = window[0].clone();
                all.merge(&window[1]);
                let latency = all.latency();
                FlushedMetrics {
                    id: record_id(now, &self.instance, &format!("{n:05}")),
                    resource: resource.clone(),
                    operation: (*op).to_owned(),
                    period_start,
                    period_end: now,
                    count: all.count,
                    errors: window[1].count,
                    slow: all.slow,
                    min_ms: ms(latency.min),
                    mean_ms: ms(latency.mean),
                    p50_ms: ms(latency.p50),
                    p95_ms: ms(latency.p95),
                    p99_ms: ms(latency.p99),
                    max_ms: ms(latency.max),
                    instance: self.instance.clone(),
                }
            })
            .collect();
        let results = metrics.insert_many(&docs).await;
        let mut first_error = None;
        let mut records = 0;
        for (result, (resource, op, window)) in results.into_iter().zip(taken) {
            match result {
                Ok(_) => records += 1,
                Err(e) => {
                    self.merge_back(&resource, op, &window);
                    first_error.get_or_insert(e);
                }
            }
        }

        // Slow operations logged since the last flush (and still in the bounded log). Their ids
        // are deterministic, so a retry after a partial failure finds them already written.
        let pending: Vec<(u64, SlowOperation)> = self
            .slow_log()
            .entries
            .iter()
            .filter(|(seq, _)| *seq >= cursor.slow_seq)
            .cloned()
            .collect();
        let docs: Vec<StoredSlow> = pending
            .iter()
            .map(|(seq, op)| StoredSlow {
                id: record_id(op.at, &self.instance, &format!("s{seq}")),
                resource: op.resource.clone(),
                operation: op.operation.clone(),
                record_id: op.id.clone(),
                duration_ms: ms(op.duration),
                at: op.at,
                error: op.error.clone(),
                instance: self.instance.clone(),
            })
            .collect();
        let mut slow = 0;
        let mut next_seq = pending.last().map_or(cursor.slow_seq, |(seq, _)| seq + 1);
        for (result, (seq, _)) in slow_resource
            .insert_many(&docs)
            .await
            .into_iter()
            .zip(&pending)
        {
            match result {
                Ok(_) => slow += 1,
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => {
                    next_seq = next_seq.min(*seq);
                    first_error.get_or_insert(e);
                }
            }
        }
        cursor.slow_seq = next_seq;
        drop(cursor);

        if let Some(e) = first_error {
            return Err(e);
        }
        let deleted = self.cleanup(cx, self.config.retention).await?;
        let report = FlushReport {
            records,
            slow,
            deleted,
        };
        if records + slow > 0 || deleted > 0 {
            let event = MetricsEvent::Flushed {
                records,
                slow,
                deleted,
            };
            cx.emit_event(&event);
        }
        tracing::debug!(records, slow, deleted, "metrics flushed");
        Ok(report)
    }

    fn merge_back(&self, resource: &str, op: &'static str, window: &[Agg; 2]) {
        if let Some(stats) = self.resource_stats(resource) {
            let mut ops = stats.lock();
            let s = ops.entry(op).or_default();
            s.window[0].merge(&window[0]);
            s.window[1].merge(&window[1]);
        }
    }

    /// Deletes flushed records (both resources) from before `now - older_than`.
    pub(crate) async fn cleanup(&self, cx: &PluginContext, older_than: Duration) -> Result<u64> {
        let Some(cutoff) = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
        else {
            return Ok(0);
        };
        let cutoff = cutoff.timestamp_millis();
        let db = cx.database()?;
        let mut deleted = 0;
        for name in [METRICS_RESOURCE, SLOW_RESOURCE] {
            let Some(resource) = db.resource(name) else {
                continue;
            };
            let old: Vec<String> = resource
                .list_ids()
                .await?
                .into_iter()
                .filter(|id| id_millis(id).is_some_and(|t| t < cutoff))
                .collect();
            for result in resource.delete_many(&old).await {
                match result {
                    Ok(()) => deleted += 1,
                    // Another process cleaned it up first.
                    Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(deleted)
    }

    /// Every flushed aggregate record, oldest first.
    pub(crate) async fn history(&self, cx: &PluginContext) -> Result<Vec<FlushedMetrics>> {
        let Some(resource) = cx.database()?.resource(METRICS_RESOURCE) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<FlushedMetrics> = resource
            .list()
            .await?
            .iter()
            .map(s3db_core::Record::deserialize)
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| (a.period_end, &a.id).cmp(&(b.period_end, &b.id)));
        Ok(out)
    }

    /// Every flushed slow operation, oldest first.
    pub(crate) async fn slow_history(&self, cx: &PluginContext) -> Result<Vec<SlowOperation>> {
        let Some(resource) = cx.database()?.resource(SLOW_RESOURCE) else {
            return Ok(Vec::new());
        };
        let mut stored: Vec<StoredSlow> = resource
            .list()
            .await?
            .iter()
            .map(s3db_core::Record::deserialize)
            .collect::<Result<_>>()?;
        stored.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        Ok(stored
            .into_iter()
            .map(|s| SlowOperation {
                resource: s.resource,
                operation: s.operation,
                id: s.record_id,
                duration: Duration::try_from_secs_f64(s.duration_ms / 1000.0).unwrap_or_default(),
                at: s.at,
                error: s.error,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_with_their_time() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap_or_default();
        let id = record_id(at, "abcd", "00001");
        assert_eq!(id, "1700000000123-abcd-00001");
        assert_eq!(id_millis(&id), Some(1_700_000_000_123));
        assert_eq!(id_millis("nonsense"), None);
        // Zero-padded: ids sort by time.
        let early = record_id(
            DateTime::from_timestamp_millis(5).unwrap_or_default(),
            "x",
            "0",
        );
        assert!(early < id);
    }
}
