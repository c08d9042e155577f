#![doc = include_str!("../README.md")]

mod config;
mod entry;
mod events;
mod query;
mod recorder;
mod shape;
mod user;

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use s3db_core::plugin::{
    DatabaseHooks, Error, Plugin, PluginContext, Resource, Result, async_trait,
};
use serde::{Deserialize, Serialize};

pub use crate::config::{AuditBuilder, ConfigError, DEFAULT_MAX_DATA_SIZE, DEFAULT_RETENTION};
pub use crate::entry::{
    AUDITS_RESOURCE, AuditEntry, AuditOperation, BY_DATE, BY_RESOURCE, SECRET_MASK,
    UnknownOperation,
};
pub use crate::events::AuditEvent;
pub use crate::query::{AuditQuery, AuditStats, DEFAULT_QUERY_LIMIT};
pub use crate::user::{AuditUser, SYSTEM_USER};
pub use s3db_core::plugin::{BadNameReason, Clock, ManualClock, SelectionError, SystemClock};

use crate::config::Config;
use crate::recorder::Recorder;

/// The plugin's name (and storage slug).
pub const PLUGIN_NAME: &str = "audit";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The audit plugin. Make it with [`AuditPlugin::new`] (defaults) or [`AuditPlugin::builder`];
/// find it again with `db.plugin::<AuditPlugin>()`.
///
/// Every user resource — existing ones at install, and those created later — gets hooks that
/// write one entry to [`AUDITS_RESOURCE`] per successful insert, update, delete (bulk ones: one
/// per record) and `delete_all`. Internal `plg_*` resources, its own included, are never audited.
pub struct AuditPlugin {
    shared: Arc<Shared>,
    cx: Mutex<Option<PluginContext>>,
}

impl std::fmt::Debug for AuditPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditPlugin")
            .field("config", &self.shared.config)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

/// How many entries this plugin instance wrote, and how many it failed to write, since install.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCounters {
    /// Entries written.
    pub written: u64,
    /// Entries that could not be written (each also broadcast as [`AuditEvent::WriteFailed`]).
    pub failed: u64,
}

/// What the plugin and its hooks share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// A random token per plugin instance: entry ids of processes sharing a bucket never collide.
    pub(crate) instance: String,
    seq: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn count_written(&self) {
        self.written.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The acting user: scope, resolver, default, `system`.
    pub(crate) fn acting_user(&self) -> String {
        let given = |u: &String| !u.trim().is_empty();
        AuditUser::current()
            .filter(given)
            .or_else(|| {
                self.config
                    .user_resolver
                    .as_ref()
                    .and_then(|resolve| resolve())
                    .filter(given)
            })
            .or_else(|| self.config.default_user.clone())
            .unwrap_or_else(|| SYSTEM_USER.to_owned())
    }
}

impl AuditPlugin {
    /// The plugin with every default: data and partitions recorded, 10 000-byte data cap, every
    /// user resource and operation audited, users from [`AuditUser`] scopes else `system`.
    #[must_use]
    pub fn new() -> Self {
        Self::from_config(Config::default())
    }

    /// A builder with validated configuration.
    pub fn builder() -> AuditBuilder {
        AuditBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
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
                instance,
                seq: AtomicU64::new(0),
                written: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
            cx: Mutex::new(None),
        }
    }

    fn context(&self, operation: &'static str) -> Result<PluginContext> {
        lock(&self.cx).clone().ok_or_else(|| Error::Refused {
            operation,
            reason: "the audit plugin is not installed in a database".to_owned(),
        })
    }

    /// The `plg_audits` resource (opened again if another process created it).
    async fn audits(&self, operation: &'static str) -> Result<Resource> {
        let cx = self.context(operation)?;
        match cx.database()?.resource(AUDITS_RESOURCE) {
            Some(r) => Ok(r),
            None => cx.create_resource(entry::definition()).await,
        }
    }

    /// Entries matching `query`, oldest first (or newest first, see
    /// [`AuditQuery::newest_first`]), after `offset`, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Refused`] for a query whose range is empty or when the plugin is not installed;
    /// storage errors.
    pub async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let audits = self.audits("audit query").await?;
        query::run(&audits, query).await
    }

    /// Every entry of one record, oldest first.
    ///
    /// # Errors
    /// As [`AuditPlugin::query`].
    pub async fn record_history(&self, resource: &str, id: &str) -> Result<Vec<AuditEntry>> {
        self.query(&AuditQuery::new().resource(resource).record(id).unlimited())
            .await
    }

    /// Every entry of one resource's records in one partition with the given values
    /// (`{"region": "eu"}`), oldest first.
    ///
    /// # Errors
    /// As [`AuditPlugin::query`]; [`Error::Validation`] when `values` is not an object.
    pub async fn partition_history(
        &self,
        resource: &str,
        partition: &str,
        values: impl Serialize,
    ) -> Result<Vec<AuditEntry>> {
        let values = s3db_core::resource::to_document(&values)?;
        self.query(
            &AuditQuery::new()
                .resource(resource)
                .partition_values(partition, values)
                .unlimited(),
        )
        .await
    }

    /// Counts of the entries matching `query` (its limit and offset are ignored) by operation,
    /// resource, partition, user and day.
    ///
    /// # Errors
    /// As [`AuditPlugin::query`].
    pub async fn stats(&self, query: &AuditQuery) -> Result<AuditStats> {
        let audits = self.audits("audit stats").await?;
        query::stats(&audits, query).await
    }

    /// Deletes the entries older than `older_than` (measured with the plugin's clock); returns
    /// how many this call deleted. Selects them by listing ids only.
    ///
    /// # Errors
    /// As [`AuditPlugin::query`].
    pub async fn cleanup(&self, older_than: Duration) -> Result<u64> {
        let now = self.shared.config.clock.now();
        let cutoff = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.cleanup_before(cutoff).await
    }

    /// Deletes the entries stamped before `cutoff`; returns how many this call deleted (with
    /// several processes cleaning at once, an entry deleted by two of them at the same moment
    /// may be counted by both).
    ///
    /// # Errors
    /// As [`AuditPlugin::query`].
    pub async fn cleanup_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let cx = self.context("audit cleanup")?;
        let audits = self.audits("audit cleanup").await?;
        let span = tracing::info_span!("audit_cleanup", cutoff = %cutoff);
        let deleted =
            tracing::Instrument::instrument(query::cleanup(&audits, cutoff), span).await?;
        if deleted > 0 {
            let event = AuditEvent::CleanedUp { deleted };
            cx.emit_event(&event);
        }
        Ok(deleted)
    }

    /// Entries written and failed by this instance since install.
    #[must_use]
    pub fn counters(&self) -> AuditCounters {
        AuditCounters {
            written: self.shared.written.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Whether the plugin audits a resource of this name.
    #[must_use]
    pub fn audits_resource(&self, name: &str) -> bool {
        self.shared.config.selection.selects(name)
    }
}

impl Default for AuditPlugin {
    fn default() -> Self {
        Self::new()
    }
}

/// Installs the hooks on resources: those that exist at install, and each one created later.
struct Instrument {
    shared: Arc<Shared>,
    cx: PluginContext,
    audits: Resource,
    done: Mutex<BTreeSet<String>>,
}

impl Instrument {
    async fn instrument(&self, resource: &Resource) {
        let name = resource.name();
        if !self.shared.config.selection.selects(name) {
            return;
        }
        if !lock(&self.done).insert(name.to_owned()) {
            return;
        }
        self.cx.add_resource_hooks(
            resource,
            Recorder {
                shared: Arc::clone(&self.shared),
                cx: self.cx.clone(),
                audits: self.audits.clone(),
            },
        );
        self.cx.add_resource_extension(
            resource,
            AuditHandle {
                resource: name.to_owned(),
                audits: self.audits.clone(),
            },
        );
        tracing::debug!(resource = name, "audit: recording");
    }
}

/// The database hook that audits resources created after install.
struct InstrumentNew(Arc<Instrument>);

#[async_trait]
impl DatabaseHooks for InstrumentNew {
    async fn after_create_resource(&self, resource: &Resource) -> Result<()> {
        self.0.instrument(resource).await;
        Ok(())
    }
}

/// The capability attached to each audited resource; reach it with [`AuditExt`].
#[derive(Clone)]
pub struct AuditHandle {
    resource: String,
    audits: Resource,
}

impl std::fmt::Debug for AuditHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHandle")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl AuditHandle {
    /// Every entry of one record of this resource, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn history(&self, id: &str) -> Result<Vec<AuditEntry>> {
        query::run(
            &self.audits,
            &AuditQuery::new()
                .resource(&self.resource)
                .record(id)
                .unlimited(),
        )
        .await
    }

    /// Entries of this resource matching `query` (its own resource filter is replaced).
    ///
    /// # Errors
    /// As [`AuditPlugin::query`].
    pub async fn entries(&self, query: AuditQuery) -> Result<Vec<AuditEntry>> {
        query::run(&self.audits, &query.resource(&self.resource)).await
    }
}

/// Adds `resource.audit()` to resources.
pub trait AuditExt {
    /// The audit handle of this resource, if the audit plugin records it.
    fn audit(&self) -> Option<Arc<AuditHandle>>;
}

impl AuditExt for Resource {
    fn audit(&self) -> Option<Arc<AuditHandle>> {
        self.extension::<AuditHandle>()
    }
}

#[async_trait]
impl Plugin for AuditPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        let audits = cx.create_resource(entry::definition()).await?;
        *lock(&self.cx) = Some(cx.clone());
        let instrument = Arc::new(Instrument {
            shared: Arc::clone(&self.shared),
            cx: cx.clone(),
            audits,
            done: Mutex::new(BTreeSet::new()),
        });
        // Watch first, then look: a resource created in between is instrumented once.
        cx.add_database_hooks(InstrumentNew(Arc::clone(&instrument)))?;
        let db = cx.database()?;
        for name in db.resources() {
            if let Some(resource) = db.resource(&name) {
                instrument.instrument(&resource).await;
            }
        }
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        lock(&self.cx).take();
        Ok(())
    }
}
