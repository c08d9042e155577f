//! What a plugin gets to work with: the database, its storage, and registration helpers that
//! remember everything so uninstall can remove it.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::storage::PluginStorage;
use super::{CustomEvent, INTERNAL_RESOURCE_PREFIX};
use crate::database::{Database, WeakDatabase};
use crate::error::{Error, Result};
use crate::resource::hooks::{
    DatabaseHooks, Event, HookId, Middleware, PluginEvent, ResourceHooks,
};
use crate::resource::{Resource, ResourceConfig, WeakResource};
use crate::store::{ObserverId, RequestObserver};

type Setup = Arc<dyn Fn(Resource) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// The context of one installed plugin. Cheap to clone.
#[derive(Clone)]
pub struct PluginContext {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    db: WeakDatabase,
    storage: PluginStorage,
    registrations: Mutex<Registrations>,
    shutdown: watch::Sender<bool>,
}

#[derive(Default)]
///
/// Resources are held weakly: what a plugin registers on a resource usually holds the plugin's
/// context, so a strong reference back would keep a dropped database (and its data) alive.
struct Registrations {
    resource_hooks: Vec<(WeakResource, HookId)>,
    middleware: Vec<(WeakResource, HookId)>,
    extensions: Vec<(WeakResource, TypeId)>,
    observers: Vec<ObserverId>,
    database_hooks: Vec<HookId>,
    internal_resources: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin", &self.inner.name)
            .field("slug", &self.inner.storage.slug())
            .finish_non_exhaustive()
    }
}

impl PluginContext {
    pub(crate) fn new(name: &str, slug: &str, db: &Database) -> Result<Self> {
        let storage = PluginStorage::new(db.store().clone(), slug).map_err(|e| Error::Plugin {
            plugin: name.to_owned(),
            source: Box::new(e),
        })?;
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                db: db.downgrade(),
                storage,
                registrations: Mutex::new(Registrations::default()),
                shutdown,
            }),
        })
    }

    fn registrations(&self) -> std::sync::MutexGuard<'_, Registrations> {
        self.inner
            .registrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The plugin's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The database the plugin is installed in.
    ///
    /// # Errors
    /// [`Error::Refused`] if the database was dropped.
    pub fn database(&self) -> Result<Database> {
        self.inner.db.upgrade().ok_or_else(|| Error::Refused {
            operation: "plugin context",
            reason: format!("the database of plugin {} is gone", self.inner.name),
        })
    }

    /// The plugin's namespaced storage.
    #[must_use]
    pub fn storage(&self) -> &PluginStorage {
        &self.inner.storage
    }

    /// Adds hooks to a resource; removed again at uninstall.
    pub fn add_resource_hooks(&self, resource: &Resource, hooks: impl ResourceHooks) -> HookId {
        let id = resource.add_hooks(hooks);
        self.registrations()
            .resource_hooks
            .push((resource.downgrade(), id));
        id
    }

    /// Adds middleware to a resource; removed again at uninstall.
    pub fn add_middleware(&self, resource: &Resource, middleware: impl Middleware) -> HookId {
        let id = resource.add_middleware(middleware);
        self.registrations()
            .middleware
            .push((resource.downgrade(), id));
        id
    }

    /// Attaches a typed capability to a resource, found again with [`Resource::extension`]
    /// (one value per type and resource); removed again at uninstall.
    pub fn add_resource_extension<T: Any + Send + Sync>(&self, resource: &Resource, value: T) {
        let type_id = resource.insert_extension(Arc::new(value));
        self.registrations()
            .extensions
            .push((resource.downgrade(), type_id));
    }

    /// Shows every request of the database's store to `observer` (how the costs and metrics
    /// plugins see storage); removed again at uninstall.
    ///
    /// # Errors
    /// If the database is gone.
    pub fn observe_requests(&self, observer: Arc<dyn RequestObserver>) -> Result<ObserverId> {
        let id = self.database()?.store().accounting().observe(observer);
        self.registrations().observers.push(id);
        Ok(id)
    }

    /// Adds database hooks; removed again at uninstall.
    ///
    /// # Errors
    /// If the database is gone.
    pub fn add_database_hooks(&self, hooks: impl DatabaseHooks) -> Result<HookId> {
        let id = self.database()?.add_hooks(hooks);
        self.registrations().database_hooks.push(id);
        Ok(id)
    }

    /// Runs `setup` on the resource `name` now if it exists, or when it is created (deferred
    /// setup) — exactly once either way.
    ///
    /// # Errors
    /// `setup`'s error when it runs now; a deferred `setup`'s error is returned by the
    /// `create_resource` that triggered it.
    pub async fn when_resource<F, Fut>(&self, name: &str, setup: F) -> Result<()>
    where
        F: Fn(Resource) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let setup: Setup = Arc::new(move |r| Box::pin(setup(r)));
        let done = Arc::new(AtomicBool::new(false));
        // Watch first, then look: a resource created in between is not missed, and `done` makes
        // the setup run once.
        self.add_database_hooks(DeferredSetup {
            resource: name.to_owned(),
            done: Arc::clone(&done),
            setup: Arc::clone(&setup),
        })?;
        if let Some(resource) = self.database()?.resource(name)
            && !done.swap(true, Ordering::SeqCst)
        {
            setup(resource).await?;
        }
        Ok(())
    }

    /// Creates (or opens) an internal resource of the plugin; its name must start with `plg_`.
    /// With `purge_data`, uninstall deletes its records.
    ///
    /// # Errors
    /// [`Error::BadSchema`] for a name without the prefix, or as
    /// [`Database::create_resource`].
    pub async fn create_resource(&self, config: ResourceConfig) -> Result<Resource> {
        if !config.name().starts_with(INTERNAL_RESOURCE_PREFIX) {
            return Err(Error::BadSchema {
                attribute: String::new(),
                rule: config.name().to_owned(),
                reason: format!(
                    "internal resources of plugins are named {INTERNAL_RESOURCE_PREFIX}<name>"
                ),
            });
        }
        let name = config.name().to_owned();
        let resource = self.database()?.create_resource(config).await?;
        let mut registrations = self.registrations();
        if !registrations.internal_resources.contains(&name) {
            registrations.internal_resources.push(name);
        }
        Ok(resource)
    }

    /// Runs a background task owned by the plugin; it is stopped when the plugin stops. Long
    /// loops should also watch [`PluginContext::shutdown_signal`] to finish their current step.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        let mut registrations = self.registrations();
        registrations.tasks.retain(|t| !t.is_finished());
        registrations.tasks.push(handle);
    }

    /// Becomes `true` when the plugin is stopping.
    #[must_use]
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// How many of the plugin's tasks are still running.
    #[must_use]
    pub fn running_tasks(&self) -> usize {
        self.registrations()
            .tasks
            .iter()
            .filter(|t| !t.is_finished())
            .count()
    }

    /// Broadcasts a plugin event of the plugin's own.
    pub fn emit(&self, name: &str, payload: Value) {
        if let Ok(db) = self.database() {
            db.emit(Event::Plugin {
                plugin: self.inner.name.clone(),
                event: PluginEvent::Custom {
                    name: name.to_owned(),
                    payload,
                },
            });
        }
    }

    /// Broadcasts one of the plugin's own typed events (see [`CustomEvent`]).
    pub fn emit_event<E: CustomEvent>(&self, event: &E) {
        self.emit(event.name(), event.payload());
    }

    /// Events of the database (every resource and plugin).
    ///
    /// # Errors
    /// If the database is gone.
    pub fn subscribe(&self) -> Result<broadcast::Receiver<Event>> {
        Ok(self.database()?.subscribe())
    }

    /// The internal resources the plugin created.
    #[must_use]
    pub fn internal_resources(&self) -> Vec<String> {
        self.registrations().internal_resources.clone()
    }

    /// Signals shutdown and aborts the plugin's tasks without waiting (for drop).
    pub(crate) fn abort_tasks(&self) {
        let _ = self.inner.shutdown.send(true);
        for task in std::mem::take(&mut self.registrations().tasks) {
            task.abort();
        }
    }

    /// Stops the plugin's tasks: signals shutdown, then aborts what still runs.
    pub(crate) async fn stop_tasks(&self) {
        let _ = self.inner.shutdown.send(true);
        let tasks = std::mem::take(&mut self.registrations().tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Removes every hook, middleware and database hook the plugin registered.
    pub(crate) fn remove_registrations(&self) {
        let (hooks, middleware, extensions, observers, database_hooks) = {
            let mut r = self.registrations();
            (
                std::mem::take(&mut r.resource_hooks),
                std::mem::take(&mut r.middleware),
                std::mem::take(&mut r.extensions),
                std::mem::take(&mut r.observers),
                std::mem::take(&mut r.database_hooks),
            )
        };
        // A resource already dropped took its registrations with it.
        for (resource, type_id) in extensions {
            if let Some(resource) = resource.upgrade() {
                resource.remove_extension(type_id);
            }
        }
        for (resource, id) in hooks {
            if let Some(resource) = resource.upgrade() {
                resource.remove_hooks(id);
            }
        }
        for (resource, id) in middleware {
            if let Some(resource) = resource.upgrade() {
                resource.remove_middleware(id);
            }
        }
        if let Ok(db) = self.database() {
            for id in database_hooks {
                db.remove_hooks(id);
            }
            for id in observers {
                db.store().accounting().unobserve(id);
            }
        }
    }
}

/// Runs a deferred setup when its resource is created.
struct DeferredSetup {
    resource: String,
    done: Arc<AtomicBool>,
    setup: Setup,
}

#[async_trait]
impl DatabaseHooks for DeferredSetup {
    async fn after_create_resource(&self, resource: &Resource) -> Result<()> {
        if resource.name() == self.resource && !self.done.swap(true, Ordering::SeqCst) {
            (self.setup)(resource.clone()).await?;
        }
        Ok(())
    }
}
