//! What the plugin registers on each cached resource: the read-through middleware, the
//! invalidation hooks and the `resource.cache()` handle; and the database hook that sets up
//! resources created later.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use s3db_core::plugin::{
    DatabaseHooks, Error, Middleware, Next, Operation, Outcome, Record, Resource, ResourceHooks,
    Result, async_trait,
};

use crate::key::{CacheKey, Invalidation};
use crate::runtime::{ResourceState, Runtime};
use crate::stats::{CacheStats, bump};

tokio::task_local! {
    /// Set inside [`bypass`]: reads of this task go to the store.
    static BYPASS: ();
}

/// Runs `future` with the cache bypassed: its reads go to the store and are not stored (its
/// writes still invalidate). Like any task-local, it does not reach tasks spawned inside.
///
/// ```
/// # async fn demo(users: s3db_core::Resource) -> s3db_core::Result<()> {
/// let fresh = s3db_cache::bypass(users.get("alice")).await?;
/// # Ok(()) }
/// ```
pub async fn bypass<F: std::future::Future>(future: F) -> F::Output {
    BYPASS.scope((), future).await
}

/// Whether the current task is inside [`bypass`].
#[must_use]
pub fn is_bypassed() -> bool {
    BYPASS.try_with(|()| ()).is_ok()
}

impl Runtime {
    /// Registers the middleware, the hooks and the handle on a resource the plugin caches
    /// (once per resource). They hold the runtime weakly: the plugin's context holds the
    /// resource, so a strong reference back would keep the database's data alive for ever.
    pub(crate) fn set_up(self: &Arc<Self>, resource: &Resource) {
        if !self.caches(resource.name()) || !self.mark_set_up(resource.name()) {
            return;
        }
        let state = self.state(resource.name());
        self.cx.add_middleware(
            resource,
            ReadThrough {
                rt: Arc::downgrade(self),
                state: Arc::clone(&state),
            },
        );
        self.cx.add_resource_hooks(
            resource,
            Invalidate {
                rt: Arc::downgrade(self),
                state,
            },
        );
        self.cx.add_resource_extension(
            resource,
            ResourceCache {
                resource: resource.name().to_owned(),
                plugin: self.name.clone(),
                rt: Arc::downgrade(self),
            },
        );
    }
}

/// Answers reads from the cache; makes sure a write that fails half-way still invalidates.
struct ReadThrough {
    rt: Weak<Runtime>,
    state: Arc<ResourceState>,
}

/// The future a middleware returns.
type Handled<'a> = Pin<Box<dyn Future<Output = Result<Outcome>> + Send + 'a>>;

// Written out instead of `#[async_trait]`: a write and a read get futures of their own sizes.
// The write path (the operation's own future and a little more) is boxed without the larger
// state of a cached read.
impl Middleware for ReadThrough {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        resource: &'life1 Resource,
        op: Operation,
        next: Next<'life2>,
    ) -> Handled<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        if op.is_write() {
            Box::pin(self.write(resource, op, next))
        } else {
            Box::pin(self.read(resource, op, next))
        }
    }
}

impl ReadThrough {
    async fn write(&self, resource: &Resource, op: Operation, next: Next<'_>) -> Result<Outcome> {
        let target = match &op {
            Operation::Insert { id, .. } => Some(id.clone()),
            Operation::Update { id, .. } | Operation::Delete { id } => Some(Some(id.clone())),
            _ => None,
        };
        let result = next.run(op).await;
        // On success the hooks invalidated exactly; a failed write may have changed anything
        // about its record (or, for a write unknown to this plugin, anything).
        if (result.is_err() || target.is_none())
            && let Some(rt) = self.rt.upgrade()
        {
            let invalidation = match target {
                Some(id) => Invalidation::record(resource.name(), id.as_deref(), None),
                None => Invalidation::resource(resource.name()),
            };
            rt.invalidate(&invalidation).await;
        }
        result
    }

    async fn read(&self, resource: &Resource, op: Operation, next: Next<'_>) -> Result<Outcome> {
        let Some(rt) = self.rt.upgrade() else {
            return next.run(op).await;
        };
        let Some(key) = CacheKey::of_operation(resource.name(), &resource.version(), &op) else {
            return next.run(op).await;
        };
        if is_bypassed() {
            bump(&self.state.counters.bypassed);
            return next.run(op).await;
        }
        rt.read(&self.state, key, op, next).await
    }
}

/// Invalidates exactly what a completed write can change.
struct Invalidate {
    rt: Weak<Runtime>,
    state: Arc<ResourceState>,
}

impl Invalidate {
    async fn written(&self, id: &str, data: Option<&[&s3db_core::plugin::Document]>) {
        if let Some(rt) = self.rt.upgrade() {
            rt.record_written(&self.state, id, data).await;
        }
    }
}

#[async_trait]
impl ResourceHooks for Invalidate {
    async fn after_insert(&self, _resource: &str, record: &Record) -> Result<()> {
        self.written(record.id(), Some(&[record.data()])).await;
        Ok(())
    }

    async fn after_update(&self, _resource: &str, before: &Record, after: &Record) -> Result<()> {
        self.written(after.id(), Some(&[before.data(), after.data()]))
            .await;
        Ok(())
    }

    async fn after_delete(&self, _resource: &str, id: &str, record: Option<&Record>) -> Result<()> {
        // Without the record (core reads it only for partitions or versioning), every
        // partition key counts as touched.
        let data = record.map(Record::data);
        self.written(id, data.as_ref().map(std::slice::from_ref))
            .await;
        Ok(())
    }
}

/// Sets up resources created after the plugin was installed.
pub(crate) struct SetUpNew {
    pub(crate) rt: Arc<Runtime>,
}

#[async_trait]
impl DatabaseHooks for SetUpNew {
    async fn after_create_resource(&self, resource: &Resource) -> Result<()> {
        self.rt.set_up(resource);
        Ok(())
    }
}

/// The cache of one resource, attached by the plugin; reach it with [`crate::CacheExt::cache`].
pub struct ResourceCache {
    resource: String,
    plugin: String,
    rt: Weak<Runtime>,
}

impl std::fmt::Debug for ResourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceCache")
            .field("resource", &self.resource)
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl ResourceCache {
    fn runtime(&self) -> Result<Arc<Runtime>> {
        self.rt.upgrade().ok_or_else(|| Error::Refused {
            operation: "cache",
            reason: format!("plugin {} is not installed", self.plugin),
        })
    }

    /// The resource.
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The name of the plugin that caches it.
    #[must_use]
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Hits, misses, evictions… of this resource (all zero once the plugin is gone).
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.rt
            .upgrade()
            .map(|rt| rt.stats(Some(&self.resource)))
            .unwrap_or_default()
    }

    /// Drops what is cached about record `id`: its own answers and every listing of the
    /// resource (they may contain it).
    ///
    /// # Errors
    /// If the plugin is gone; driver failures are counted, not returned.
    pub async fn invalidate(&self, id: &str) -> Result<()> {
        self.runtime()?
            .invalidate_on_request(&self.resource, Some(id))
            .await
    }

    /// Drops everything cached for the resource.
    ///
    /// # Errors
    /// If the plugin is gone; the first driver failure (the entries left behind are never
    /// served).
    pub async fn clear(&self) -> Result<()> {
        self.runtime()?
            .invalidate_on_request(&self.resource, None)
            .await
    }

    /// Loads the resource into the cache: its listing, then every record; returns how many.
    ///
    /// # Errors
    /// If the plugin is gone; storage errors of the reads.
    pub async fn warm(&self) -> Result<usize> {
        self.runtime()?.warm(&self.resource).await
    }
}
