//! What the plugin registers on each cached resource: the read-through middleware, the
//! invalidation hooks and the `resource.cache()` handle; and the database hook that sets up
//! resources created later.

use std::sync::Arc;

use s3db_core::plugin::{
    DatabaseHooks, Middleware, Next, Operation, Outcome, Record, Resource, ResourceHooks, Result,
    async_trait,
};

use crate::key::{CacheKey, Invalidation};
use crate::runtime::Runtime;
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
    /// (once per resource).
    pub(crate) fn set_up(self: &Arc<Self>, resource: &Resource) {
        if !self.caches(resource.name()) || !self.mark_set_up(resource.name()) {
            return;
        }
        self.cx.add_middleware(
            resource,
            ReadThrough {
                rt: Arc::clone(self),
            },
        );
        self.cx.add_resource_hooks(
            resource,
            Invalidate {
                rt: Arc::clone(self),
            },
        );
        self.cx.add_resource_extension(
            resource,
            ResourceCache {
                resource: resource.name().to_owned(),
                rt: Arc::clone(self),
            },
        );
    }
}

/// Answers reads from the cache; makes sure a write that fails half-way still invalidates.
struct ReadThrough {
    rt: Arc<Runtime>,
}

#[async_trait]
impl Middleware for ReadThrough {
    async fn handle(&self, resource: &Resource, op: Operation, next: Next<'_>) -> Result<Outcome> {
        if op.is_write() {
            let target = match &op {
                Operation::Insert { id, .. } => Some(id.clone()),
                Operation::Update { id, .. } | Operation::Delete { id } => Some(Some(id.clone())),
                _ => None,
            };
            let result = next.run(op).await;
            // On success the hooks invalidated exactly; a failed write may have changed
            // anything about its record (or, for a write unknown to this plugin, anything).
            if result.is_err() || target.is_none() {
                let invalidation = match target {
                    Some(id) => Invalidation::record(resource.name(), id.as_deref(), None),
                    None => Invalidation::resource(resource.name()),
                };
                self.rt.invalidate(&invalidation).await;
            }
            return result;
        }
        let Some(key) = CacheKey::of_operation(resource.name(), &resource.version(), &op) else {
            return next.run(op).await;
        };
        if is_bypassed() {
            bump(&self.rt.counters(resource.name()).bypassed);
            return next.run(op).await;
        }
        self.rt.read(key, op, next).await
    }
}

/// Invalidates exactly what a completed write can change.
struct Invalidate {
    rt: Arc<Runtime>,
}

#[async_trait]
impl ResourceHooks for Invalidate {
    async fn after_insert(&self, resource: &str, record: &Record) -> Result<()> {
        self.rt
            .invalidate(&Invalidation::record(
                resource,
                Some(record.id()),
                Some(vec![record.data().clone()]),
            ))
            .await;
        Ok(())
    }

    async fn after_update(&self, resource: &str, before: &Record, after: &Record) -> Result<()> {
        self.rt
            .invalidate(&Invalidation::record(
                resource,
                Some(after.id()),
                Some(vec![before.data().clone(), after.data().clone()]),
            ))
            .await;
        Ok(())
    }

    async fn after_delete(&self, resource: &str, id: &str, record: Option<&Record>) -> Result<()> {
        // Without the record (core reads it only for partitions or versioning), every
        // partition key counts as touched.
        let data = record.map(|r| vec![r.data().clone()]);
        self.rt
            .invalidate(&Invalidation::record(resource, Some(id), data))
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
    rt: Arc<Runtime>,
}

impl std::fmt::Debug for ResourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceCache")
            .field("resource", &self.resource)
            .field("plugin", &self.rt.name)
            .finish_non_exhaustive()
    }
}

impl ResourceCache {
    /// The resource.
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The name of the plugin that caches it.
    #[must_use]
    pub fn plugin(&self) -> &str {
        &self.rt.name
    }

    /// Hits, misses, evictions… of this resource.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.rt.stats(Some(&self.resource))
    }

    /// Drops what is cached about record `id`: its own answers and every listing of the
    /// resource (they may contain it).
    ///
    /// # Errors
    /// None today (driver failures are counted, not returned); kept for future drivers.
    pub async fn invalidate(&self, id: &str) -> Result<()> {
        self.rt
            .invalidate_on_request(&self.resource, Some(id))
            .await
    }

    /// Drops everything cached for the resource.
    ///
    /// # Errors
    /// The first driver failure (the entries left behind are never served).
    pub async fn clear(&self) -> Result<()> {
        self.rt.invalidate_on_request(&self.resource, None).await
    }

    /// Loads the resource into the cache: its listing, then every record; returns how many.
    ///
    /// # Errors
    /// Storage errors of the reads.
    pub async fn warm(&self) -> Result<usize> {
        self.rt.warm(&self.resource).await
    }
}
