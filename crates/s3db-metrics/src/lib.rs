#![doc = include_str!("../README.md")]

mod config;
mod events;
mod flush;
mod http;
mod prometheus;
mod stats;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics::{Label, SharedString};
use s3db_core::plugin::{
    DatabaseHooks, Error, Middleware, Next, Operation, Outcome, Plugin, PluginContext, Resource,
    ResourceSelection, Result, async_trait,
};
use tokio::sync::mpsc;

pub use crate::config::{
    ConfigError, DEFAULT_FLUSH_INTERVAL, DEFAULT_HTTP_ENDPOINT, DEFAULT_PREFIX, DEFAULT_RETENTION,
    DEFAULT_SLOW_LOG_CAPACITY, DEFAULT_SLOW_THRESHOLD, MIN_FLUSH_INTERVAL, MetricsBuilder,
};
pub use crate::events::MetricsEvent;
pub use crate::flush::{FlushReport, FlushedMetrics, METRICS_RESOURCE, SLOW_RESOURCE};
pub use crate::http::METRICS_PATH;
pub use crate::prometheus::CONTENT_TYPE;
pub use crate::stats::{
    LatencySummary, MetricsSnapshot, OperationMetrics, ResourceMetrics, SlowOperation,
};
pub use crate::store::{StoreOwner, StoreRequestMetrics};
pub use s3db_core::plugin::{BadNameReason, SelectionError};

use crate::config::Config;
use crate::flush::FlushCursor;
use crate::prometheus::Names;
use crate::stats::{ERROR, FacadeKeys, OK, OpStats, ResourceStats, STATUS, SlowLog};

/// The metadata handed to the facade's recorder with every metric of the plugin.
pub(crate) static FACADE_METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The plugin's name (and storage slug).
pub const PLUGIN_NAME: &str = "metrics";

/// How many slow-operation events may wait to be broadcast; a larger burst loses the newest.
const EVENT_QUEUE: usize = 1024;

/// The metrics plugin. Make it with [`MetricsPlugin::new`] (defaults) or
/// [`MetricsPlugin::builder`]; find it again with `db.plugin::<MetricsPlugin>()`.
///
/// Every user resource — existing ones at install, and those created later — gets a middleware
/// that times each operation and counts it by resource, operation and status. Internal `plg_*`
/// resources are never measured.
pub struct MetricsPlugin {
    shared: Arc<Shared>,
    cx: Mutex<Option<PluginContext>>,
}

impl std::fmt::Debug for MetricsPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsPlugin")
            .field("config", &self.shared.config)
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

/// What the plugin, its middleware, its database hook and its tasks share. Holds no plugin
/// context: resources keep it alive (through the middleware), and a context would keep the
/// resources alive in turn.
pub(crate) struct Shared {
    pub(crate) config: Config,
    names: Names,
    metric_names: MetricNames,
    stats: RwLock<BTreeMap<String, Arc<ResourceStats>>>,
    slow: Mutex<SlowLog>,
    since: Mutex<DateTime<Utc>>,
    http_addr: Mutex<Option<SocketAddr>>,
    events: Mutex<Option<mpsc::Sender<SlowOperation>>>,
    store: Mutex<store::StoreTable>,
    pub(crate) flush_cursor: tokio::sync::Mutex<FlushCursor>,
    pub(crate) instance: String,
}

/// Metric names for the facade, shared (cheap to clone per call).
struct MetricNames {
    operations: SharedString,
    errors: SharedString,
    slow: SharedString,
    duration: SharedString,
    store_requests: SharedString,
    store_duration: SharedString,
    store_sent: SharedString,
    store_received: SharedString,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MetricsPlugin {
    /// The plugin with every default: 1 s slow threshold, 100 slow operations kept, every user
    /// resource measured, no HTTP endpoint, no flushing.
    #[must_use]
    pub fn new() -> Self {
        Self::from_config(Config {
            slow_threshold: DEFAULT_SLOW_THRESHOLD,
            slow_log_capacity: DEFAULT_SLOW_LOG_CAPACITY,
            selection: ResourceSelection::new(),
            http: None,
            flush_interval: None,
            retention: DEFAULT_RETENTION,
            prefix: DEFAULT_PREFIX.to_owned(),
            facade: true,
            store_requests: true,
        })
    }

    /// A builder with validated configuration.
    pub fn builder() -> MetricsBuilder {
        MetricsBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let names = Names::new(&config.prefix);
        let shared_name = |s: &str| SharedString::from_shared(Arc::<str>::from(s));
        let metric_names = MetricNames {
            operations: shared_name(&names.operations),
            errors: shared_name(&names.errors),
            slow: shared_name(&names.slow),
            duration: shared_name(&names.duration),
            store_requests: shared_name(&names.store_requests),
            store_duration: shared_name(&names.store_duration),
            store_sent: shared_name(&names.store_sent),
            store_received: shared_name(&names.store_received),
        };
        let now = Utc::now();
        // A random token per plugin instance, without a random-number crate.
        let instance = format!(
            "{:012x}",
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                & 0xffff_ffff_ffff
        );
        Self {
            shared: Arc::new(Shared {
                config,
                names,
                metric_names,
                stats: RwLock::new(BTreeMap::new()),
                slow: Mutex::new(SlowLog::default()),
                since: Mutex::new(now),
                http_addr: Mutex::new(None),
                events: Mutex::new(None),
                store: Mutex::new(store::StoreTable::new()),
                flush_cursor: tokio::sync::Mutex::new(FlushCursor {
                    period_start: now,
                    slow_seq: 0,
                }),
                instance,
            }),
            cx: Mutex::new(None),
        }
    }

    fn context(&self, operation: &'static str) -> Result<PluginContext> {
        lock(&self.cx).clone().ok_or_else(|| Error::Refused {
            operation,
            reason: "the metrics plugin is not installed in a database".to_owned(),
        })
    }

    fn flushing_context(&self, operation: &'static str) -> Result<PluginContext> {
        if self.shared.config.flush_interval.is_none() {
            return Err(Error::Refused {
                operation,
                reason: "flushing is not enabled: build the plugin with .flush_every(interval)"
                    .to_owned(),
            });
        }
        self.context(operation)
    }

    /// Everything measured since install (or the last [`MetricsPlugin::reset`]).
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.shared.snapshot()
    }

    /// One resource's measurements, if it is measured.
    #[must_use]
    pub fn resource(&self, name: &str) -> Option<ResourceMetrics> {
        self.shared.resource_snapshot(name)
    }

    /// The measurements in the Prometheus text format (0.0.4), see the crate documentation for
    /// the metric families.
    #[must_use]
    pub fn render(&self) -> String {
        self.shared.render()
    }

    /// The most recent slow operations (at most the configured capacity), oldest first.
    #[must_use]
    pub fn slow_operations(&self) -> Vec<SlowOperation> {
        self.shared.slow_operations(None)
    }

    /// Forgets every measurement and slow operation (what was not flushed yet too); measuring
    /// goes on. The facade's recorder, if any, is not affected.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// The bound address of the HTTP endpoint while it runs (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *lock(&self.shared.http_addr)
    }

    /// The slow-operation threshold.
    #[must_use]
    pub fn slow_threshold(&self) -> Duration {
        self.shared.config.slow_threshold
    }

    /// Flushes now: writes each (resource, operation) measured since the last flush to
    /// `plg_metrics` and the new slow operations to `plg_metrics_slow`, then deletes records
    /// older than the retention. Measurements that could not be written are kept for the next
    /// flush.
    ///
    /// # Errors
    /// [`Error::Refused`] when flushing is not enabled or the plugin is not installed; storage
    /// errors.
    pub async fn flush(&self) -> Result<FlushReport> {
        let cx = self.flushing_context("metrics flush")?;
        self.shared.flush(&cx).await
    }

    /// Deletes flushed records (aggregates and slow operations) older than `older_than`; returns
    /// how many were deleted.
    ///
    /// # Errors
    /// [`Error::Refused`] when flushing is not enabled or the plugin is not installed; storage
    /// errors.
    pub async fn cleanup(&self, older_than: Duration) -> Result<u64> {
        let cx = self.flushing_context("metrics cleanup")?;
        let deleted = self.shared.cleanup(&cx, older_than).await?;
        if deleted > 0 {
            let event = MetricsEvent::CleanedUp { deleted };
            cx.emit_event(&event);
        }
        Ok(deleted)
    }

    /// Every flushed aggregate record in `plg_metrics` (of every process), oldest first.
    ///
    /// # Errors
    /// As [`MetricsPlugin::flush`].
    pub async fn history(&self) -> Result<Vec<FlushedMetrics>> {
        let cx = self.flushing_context("metrics history")?;
        self.shared.history(&cx).await
    }

    /// Every flushed slow operation in `plg_metrics_slow` (of every process), oldest first.
    ///
    /// # Errors
    /// As [`MetricsPlugin::flush`].
    pub async fn slow_history(&self) -> Result<Vec<SlowOperation>> {
        let cx = self.flushing_context("metrics slow history")?;
        self.shared.slow_history(&cx).await
    }
}

impl Default for MetricsPlugin {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    pub(crate) fn resources(&self) -> Vec<(String, Arc<ResourceStats>)> {
        self.stats
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    pub(crate) fn resource_stats(&self, name: &str) -> Option<Arc<ResourceStats>> {
        self.stats
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn stats_for(&self, name: &str) -> Arc<ResourceStats> {
        let mut stats = self.stats.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(stats.entry(name.to_owned()).or_default())
    }

    pub(crate) fn slow_log(&self) -> MutexGuard<'_, SlowLog> {
        lock(&self.slow)
    }

    fn snapshot(&self) -> MetricsSnapshot {
        let mut everything: BTreeMap<&'static str, OpStats> = BTreeMap::new();
        let resources: BTreeMap<String, ResourceMetrics> = self
            .resources()
            .into_iter()
            .map(|(name, stats)| {
                let ops = stats.lock();
                for (op, s) in ops.iter() {
                    everything.entry(op).or_default().merge_totals(s);
                }
                let metrics = ResourceMetrics::build(&name, &ops);
                (name, metrics)
            })
            .collect();
        let all = ResourceMetrics::build("*", &everything);
        MetricsSnapshot {
            since: *lock(&self.since),
            taken_at: Utc::now(),
            count: all.count,
            errors: all.errors,
            slow: all.slow,
            latency: all.latency,
            operations: all.operations,
            resources,
            store: store::summarize(&self.store_table()),
        }
    }

    fn resource_snapshot(&self, name: &str) -> Option<ResourceMetrics> {
        let stats = self.resource_stats(name)?;
        let ops = stats.lock();
        Some(ResourceMetrics::build(name, &ops))
    }

    pub(crate) fn render(&self) -> String {
        let data: BTreeMap<String, BTreeMap<&'static str, OpStats>> = self
            .resources()
            .into_iter()
            .map(|(name, stats)| {
                let ops = stats.lock().clone();
                (name, ops)
            })
            .collect();
        let store = self.store_table().clone();
        prometheus::render(&self.names, self.config.slow_threshold, &data, &store)
    }

    fn slow_operations(&self, resource: Option<&str>) -> Vec<SlowOperation> {
        self.slow_log()
            .entries
            .iter()
            .filter(|(_, e)| resource.is_none_or(|r| e.resource == r))
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn reset(&self) {
        for (_, stats) in self.resources() {
            stats.lock().clear();
        }
        // Sequence numbers go on, so the flush cursor stays right.
        self.slow_log().entries.clear();
        self.store_table().clear();
        *lock(&self.since) = Utc::now();
    }

    /// Records one finished operation: own aggregates, slow log, facade.
    fn record(
        &self,
        resource: &str,
        stats: &ResourceStats,
        operation: &'static str,
        elapsed: Duration,
        result: &Result<Outcome>,
        id: Option<String>,
    ) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slow = elapsed >= self.config.slow_threshold;
        let (status, kind) = match result {
            Ok(_) => (OK, None),
            Err(e) => (ERROR, Some(e.kind().as_str())),
        };
        let keys =
            {
                let mut ops = stats.lock();
                let s = ops.entry(operation).or_default();
                s.by_status[status].record(nanos, slow);
                s.window[status].record(nanos, slow);
                if let Some(kind) = kind {
                    *s.errors_by_kind.entry(kind).or_default() += 1;
                }
                self.config.facade.then(|| {
                    Arc::clone(s.facade[status].get_or_insert_with(|| {
                        Arc::new(self.facade_keys(resource, operation, status))
                    }))
                })
            };
        if slow {
            let id = id.or_else(|| match result {
                Ok(Outcome::Record(r)) => Some(r.id().to_owned()),
                _ => None,
            });
            let entry = SlowOperation {
                resource: resource.to_owned(),
                operation: operation.to_owned(),
                id,
                duration: elapsed,
                at: Utc::now(),
                error: result.as_ref().err().map(ToString::to_string),
            };
            tracing::warn!(
                resource,
                operation,
                id = entry.id.as_deref().unwrap_or(""),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                error = entry.error.as_deref().unwrap_or(""),
                "slow s3db operation"
            );
            if let Some(tx) = lock(&self.events).as_ref() {
                let _ = tx.try_send(entry.clone());
            }
            self.slow_log().push(entry, self.config.slow_log_capacity);
        }
        if let Some(keys) = keys {
            self.emit_facade(&keys, resource, operation, kind, elapsed, slow);
        }
    }

    /// The facade keys of one (resource, operation, status).
    fn facade_keys(&self, resource: &str, operation: &'static str, status: usize) -> FacadeKeys {
        let labels = vec![
            Label::new("resource", resource.to_owned()),
            Label::new("operation", operation),
            Label::new("status", STATUS[status]),
        ];
        let names = &self.metric_names;
        FacadeKeys {
            operations: metrics::Key::from_parts(names.operations.clone(), labels.clone()),
            duration: metrics::Key::from_parts(names.duration.clone(), labels),
        }
    }

    fn emit_facade(
        &self,
        keys: &FacadeKeys,
        resource: &str,
        operation: &'static str,
        kind: Option<&'static str>,
        elapsed: Duration,
        slow: bool,
    ) {
        metrics::with_recorder(|recorder| {
            recorder
                .register_counter(&keys.operations, &FACADE_METADATA)
                .increment(1);
            recorder
                .register_histogram(&keys.duration, &FACADE_METADATA)
                .record(elapsed.as_secs_f64());
        });
        if kind.is_none() && !slow {
            return;
        }
        // Errors and slow operations are rare: their labels are made when they happen.
        let resource = SharedString::from_owned(resource.to_owned());
        let names = &self.metric_names;
        if let Some(kind) = kind {
            let labels = vec![
                Label::new("resource", resource.clone()),
                Label::new("operation", operation),
                Label::new("kind", kind),
            ];
            metrics::counter!(names.errors.clone(), labels).increment(1);
        }
        if slow {
            let labels = vec![
                Label::new("resource", resource),
                Label::new("operation", operation),
            ];
            metrics::counter!(names.slow.clone(), labels).increment(1);
        }
    }
}

/// The record id a single-record operation names, if any.
fn record_id(op: &Operation) -> Option<String> {
    match op {
        Operation::Insert { id, .. } => id.clone(),
        Operation::Get { id }
        | Operation::Exists { id }
        | Operation::Update { id, .. }
        | Operation::Delete { id } => Some(id.clone()),
        _ => None,
    }
}

/// Times every operation of one resource.
struct Measure {
    shared: Arc<Shared>,
    stats: Arc<ResourceStats>,
}

#[async_trait]
impl Middleware for Measure {
    async fn handle(&self, resource: &Resource, op: Operation, next: Next<'_>) -> Result<Outcome> {
        let operation = op.name();
        let id = record_id(&op);
        let started = Instant::now();
        let result = next.run(op).await;
        self.shared.record(
            resource.name(),
            &self.stats,
            operation,
            started.elapsed(),
            &result,
            id,
        );
        result
    }
}

/// Instruments resources: those that exist at install, and each one created later.
struct Instrument {
    shared: Arc<Shared>,
    cx: PluginContext,
    done: Mutex<BTreeSet<String>>,
}

impl Instrument {
    fn instrument(&self, resource: &Resource) {
        let name = resource.name();
        if !self.shared.config.selection.selects(name) || !lock(&self.done).insert(name.to_owned())
        {
            return;
        }
        let stats = self.shared.stats_for(name);
        self.cx.add_middleware(
            resource,
            Measure {
                shared: Arc::clone(&self.shared),
                stats,
            },
        );
        self.cx.add_resource_extension(
            resource,
            MetricsHandle {
                shared: Arc::clone(&self.shared),
                resource: name.to_owned(),
            },
        );
    }
}

/// The database hook that measures resources created after install.
struct InstrumentNew(Arc<Instrument>);

#[async_trait]
impl DatabaseHooks for InstrumentNew {
    async fn after_create_resource(&self, resource: &Resource) -> Result<()> {
        self.0.instrument(resource);
        Ok(())
    }
}

/// The capability attached to each measured resource; reach it with [`MetricsExt`].
#[derive(Clone)]
pub struct MetricsHandle {
    shared: Arc<Shared>,
    resource: String,
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHandle")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl MetricsHandle {
    /// This resource's measurements.
    #[must_use]
    pub fn snapshot(&self) -> ResourceMetrics {
        self.shared
            .resource_snapshot(&self.resource)
            .unwrap_or_else(|| ResourceMetrics::build(&self.resource, &BTreeMap::new()))
    }

    /// This resource's slow operations among the most recent ones, oldest first.
    #[must_use]
    pub fn slow_operations(&self) -> Vec<SlowOperation> {
        self.shared.slow_operations(Some(&self.resource))
    }
}

/// Adds `resource.metrics()` to resources.
pub trait MetricsExt {
    /// This resource's measurements, if the metrics plugin measures it.
    fn metrics(&self) -> Option<ResourceMetrics>;

    /// The metrics handle of this resource, if the metrics plugin measures it.
    fn metrics_handle(&self) -> Option<Arc<MetricsHandle>>;
}

impl MetricsExt for Resource {
    fn metrics(&self) -> Option<ResourceMetrics> {
        self.metrics_handle().map(|h| h.snapshot())
    }

    fn metrics_handle(&self) -> Option<Arc<MetricsHandle>> {
        self.extension::<MetricsHandle>()
    }
}

#[async_trait]
impl Plugin for MetricsPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        *lock(&self.cx) = Some(cx.clone());
        if self.shared.config.facade {
            describe_facade(&self.shared.names);
        }
        if self.shared.config.flush_interval.is_some() {
            flush::create_resources(cx).await?;
        }
        let instrument = Arc::new(Instrument {
            shared: Arc::clone(&self.shared),
            cx: cx.clone(),
            done: Mutex::new(BTreeSet::new()),
        });
        // Watch first, then look: a resource created in between is instrumented once.
        cx.add_database_hooks(InstrumentNew(Arc::clone(&instrument)))?;
        let db = cx.database()?;
        if self.shared.config.store_requests {
            cx.observe_requests(Arc::new(store::Observer {
                shared: Arc::clone(&self.shared),
                prefix: db.store().prefix().to_owned(),
            }))?;
        }
        for name in db.resources() {
            if let Some(resource) = db.resource(&name) {
                instrument.instrument(&resource);
            }
        }
        Ok(())
    }

    async fn start(&self, cx: &PluginContext) -> Result<()> {
        if let Some(addr) = self.shared.config.http {
            let listener =
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::Refused {
                        operation: "metrics http endpoint",
                        reason: format!("cannot listen on {addr}: {e}"),
                    })?;
            let bound = listener.local_addr().map_err(|e| Error::Refused {
                operation: "metrics http endpoint",
                reason: format!("no local address: {e}"),
            })?;
            *lock(&self.shared.http_addr) = Some(bound);
            cx.spawn(http::serve(
                listener,
                Arc::clone(&self.shared),
                cx.shutdown_signal(),
            ));
            let event = MetricsEvent::Listening { addr: bound };
            cx.emit_event(&event);
            tracing::info!(%bound, "metrics endpoint listening on http://{bound}{METRICS_PATH}");
        }

        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        *lock(&self.shared.events) = Some(tx);
        cx.spawn(background(
            Arc::clone(&self.shared),
            cx.clone(),
            rx,
            cx.shutdown_signal(),
        ));
        Ok(())
    }

    async fn stop(&self, cx: &PluginContext) -> Result<()> {
        lock(&self.shared.events).take();
        *lock(&self.shared.http_addr) = None;
        // A last flush, so nothing measured since the previous one is lost. A failure is
        // reported, not returned: stopping must go on.
        if self.shared.config.flush_interval.is_some()
            && let Err(e) = self.shared.flush(cx).await
        {
            tracing::warn!(error = %e, "metrics: the final flush failed");
            let event = MetricsEvent::FlushFailed {
                error: e.to_string(),
            };
            cx.emit_event(&event);
        }
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        lock(&self.cx).take();
        Ok(())
    }
}

/// Describes the facade's metrics to the global recorder, if any.
fn describe_facade(names: &Names) {
    metrics::describe_counter!(
        names.operations.clone(),
        "Operations on s3db resources, by resource, operation and status (ok or error)."
    );
    metrics::describe_counter!(
        names.errors.clone(),
        "Failed operations on s3db resources, by error kind."
    );
    metrics::describe_counter!(
        names.slow.clone(),
        "Operations on s3db resources that took at least the slow threshold."
    );
    metrics::describe_histogram!(
        names.duration.clone(),
        metrics::Unit::Seconds,
        "Latency of operations on s3db resources in seconds."
    );
}

/// How often the background task checks that its database still exists (a database dropped
/// without `disconnect` does not stop its plugins).
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// Broadcasts slow-operation events and flushes every interval, until shutdown (or until the
/// database is gone).
async fn background(
    shared: Arc<Shared>,
    cx: PluginContext,
    mut slow: mpsc::Receiver<SlowOperation>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let flushing = shared.config.flush_interval.is_some();
    let period = shared.config.flush_interval.unwrap_or(LIVENESS_CHECK);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut alive =
        tokio::time::interval_at(tokio::time::Instant::now() + LIVENESS_CHECK, LIVENESS_CHECK);
    loop {
        tokio::select! {
            entry = slow.recv() => match entry {
                Some(entry) => {
                    let event = MetricsEvent::SlowOperation(entry);
                    cx.emit_event(&event);
                }
                None => break,
            },
            _ = ticks.tick(), if flushing => {
                if let Err(e) = shared.flush(&cx).await {
                    tracing::warn!(error = %e, "metrics flush failed; retrying next tick");
                    let event = MetricsEvent::FlushFailed { error: e.to_string() };
                    cx.emit_event(&event);
                }
            }
            _ = alive.tick() => {
                if cx.database().is_err() {
                    break;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
}
