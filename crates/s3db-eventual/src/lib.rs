#![doc = include_str!("../README.md")]

mod analytics;
mod cleanup;
mod config;
mod consolidation;
mod events;
mod field;
mod gc;
mod handle;
mod transaction;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use s3db_core::plugin::{Plugin, PluginContext, Result, async_trait};
use tokio::sync::watch;

pub use crate::analytics::{Bucket, Period, RecordTotal};
pub use crate::config::{
    ConfigError, DEFAULT_CONSOLIDATION_INTERVAL, DEFAULT_GC_INTERVAL, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_LOCK_TTL, DEFAULT_RETENTION, EventualBuilder, FieldConfig, MIN_INTERVAL, MIN_LOCK_TTL,
    Mode, Reducer,
};
pub use crate::consolidation::Consolidation;
pub use crate::events::EventualEvent;
pub use crate::field::Receipt;
pub use crate::gc::GcReport;
pub use crate::handle::{EventualExt, EventualHandle};
pub use crate::transaction::{Operation, Transaction};

use crate::cleanup::LogCleanup;
use crate::config::Config;
use crate::field::{FieldRuntime, Settings};
use crate::handle::EventualFields;

/// The plugin's name (and storage slug).
pub const PLUGIN_NAME: &str = "eventual-consistency";

/// How often background loops check that their database still exists.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// The eventual consistency plugin. Build it with [`EventualConsistencyPlugin::builder`]; find
/// it again with `db.plugin::<EventualConsistencyPlugin>()`.
pub struct EventualConsistencyPlugin {
    config: Config,
    installed: Mutex<Option<Installed>>,
}

struct Installed {
    settings: Arc<Settings>,
    fields: BTreeMap<(String, String), Arc<FieldRuntime>>,
}

impl std::fmt::Debug for EventualConsistencyPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventualConsistencyPlugin")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventualConsistencyPlugin {
    /// A builder with validated configuration.
    #[must_use]
    pub fn builder() -> EventualBuilder {
        EventualBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        Self {
            config,
            installed: Mutex::new(None),
        }
    }

    /// The consolidation mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// The handle of a managed field (a handle that refuses every operation if `resource.field`
    /// is not managed or the plugin is not installed).
    #[must_use]
    pub fn field(&self, resource: &str, field: &str) -> EventualHandle {
        lock(&self.installed)
            .as_ref()
            .and_then(|i| {
                i.fields
                    .get(&(resource.to_owned(), field.to_owned()))
                    .cloned()
            })
            .map_or_else(
                || EventualHandle::unmanaged(resource, field),
                EventualHandle::managed,
            )
    }

    fn runtimes(&self) -> Vec<Arc<FieldRuntime>> {
        lock(&self.installed)
            .as_ref()
            .map(|i| i.fields.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Plugin for EventualConsistencyPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        let settings = Arc::new(Settings::new(&self.config));
        let mut fields = BTreeMap::new();
        let mut per_resource: BTreeMap<String, BTreeMap<String, Arc<FieldRuntime>>> =
            BTreeMap::new();
        for f in &self.config.fields {
            // Created now, not in the deferred setup: that runs inside `create_resource`.
            cx.create_resource(transaction::resource_config(f)).await?;
            let runtime = Arc::new(FieldRuntime {
                config: f.clone(),
                settings: Arc::clone(&settings),
                cx: cx.clone(),
            });
            per_resource
                .entry(f.resource.clone())
                .or_default()
                .insert(f.field.clone(), Arc::clone(&runtime));
            fields.insert((f.resource.clone(), f.field.clone()), runtime);
        }
        *lock(&self.installed) = Some(Installed { settings, fields });
        for (resource, fields) in per_resource {
            let fields = Arc::new(fields);
            let cx2 = cx.clone();
            cx.when_resource(&resource, move |res| {
                cx2.add_resource_extension(
                    &res,
                    EventualFields {
                        fields: (*fields).clone(),
                    },
                );
                // A record's transaction log goes with it.
                cx2.add_resource_hooks(
                    &res,
                    LogCleanup {
                        fields: fields.values().cloned().collect(),
                    },
                );
                async { Ok(()) }
            })
            .await?;
        }
        Ok(())
    }

    async fn start(&self, cx: &PluginContext) -> Result<()> {
        let runtimes = self.runtimes();
        cx.spawn(consolidation_loop(
            runtimes.clone(),
            cx.clone(),
            self.config.consolidation_interval,
            cx.shutdown_signal(),
        ));
        if let Some(retention) = self.config.retention {
            cx.spawn(gc_loop(
                runtimes,
                cx.clone(),
                self.config.gc_interval,
                retention,
                cx.shutdown_signal(),
            ));
        }
        tracing::info!(mode = ?self.config.mode, fields = self.config.fields.len(), "eventual consistency started");
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        if let Some(installed) = lock(&self.installed).take() {
            installed.settings.active.store(false, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Waits for the next tick; `false` when the plugin stops or its database is gone.
async fn next_tick(
    ticks: &mut tokio::time::Interval,
    alive: &mut tokio::time::Interval,
    cx: &PluginContext,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            _ = ticks.tick() => return true,
            _ = alive.tick() => {
                if cx.database().is_err() {
                    return false;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return false;
                }
            }
        }
    }
}

fn interval(period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Consolidates records with pending transactions every interval, until the plugin stops.
async fn consolidation_loop(
    fields: Vec<Arc<FieldRuntime>>,
    cx: PluginContext,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut ticks, mut alive) = (interval(period), interval(LIVENESS_CHECK));
    while next_tick(&mut ticks, &mut alive, &cx, &mut shutdown).await {
        for field in &fields {
            let span = tracing::debug_span!(
                "eventual background consolidation",
                resource = field.resource(),
                field = field.field()
            );
            let round = tracing::Instrument::instrument(field.consolidate_pending(), span);
            if let Err(e) = round.await {
                tracing::warn!(resource = field.resource(), field = field.field(), error = %e,
                    "eventual: listing pending records failed; retrying next round");
            }
        }
    }
}

/// Collects old transactions every interval, until the plugin stops.
async fn gc_loop(
    fields: Vec<Arc<FieldRuntime>>,
    cx: PluginContext,
    period: Duration,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut ticks, mut alive) = (interval(period), interval(LIVENESS_CHECK));
    while next_tick(&mut ticks, &mut alive, &cx, &mut shutdown).await {
        for field in &fields {
            let span = tracing::debug_span!(
                "eventual garbage collection",
                resource = field.resource(),
                field = field.field()
            );
            let round = tracing::Instrument::instrument(field.collect(retention), span);
            if let Err(e) = round.await {
                tracing::warn!(resource = field.resource(), field = field.field(), error = %e,
                    "eventual: garbage collection failed; retrying next round");
            }
        }
    }
}
