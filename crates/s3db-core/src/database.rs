//! The database: a connection to a bucket (and prefix), the registry of its resources in
//! `s3db.json`, database hooks and the event broadcast.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::codec::FieldMap;
use crate::connection::{ConnectionString, SecretString};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::plugin::{Installed, Pending, Plugin, PluginContext};
use crate::resource::hooks::{DatabaseHooks, Event, HookId, PluginEvent, Registry};
use crate::resource::{
    Definition, EVENT_CAPACITY, Resource, ResourceConfig, Shared, StoredResource,
};
use crate::secret::SecretKey;
use crate::store::{Layer, Metadata, RequestAccounting, Store};

/// Name of the database metadata object, at the root of the database prefix.
pub const METADATA_KEY: &str = "s3db.json";
const MAX_CAS_ATTEMPTS: u32 = 100;

/// `s3db.json`: the resources and their schema versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DatabaseMeta {
    version: String,
    s3db_version: String,
    #[serde(default)]
    salt: String,
    #[serde(default)]
    last_updated: String,
    #[serde(default)]
    resources: BTreeMap<String, StoredResource>,
}

impl DatabaseMeta {
    fn new() -> Self {
        let salt: [u8; 16] = rand::random();
        Self {
            version: "1".to_owned(),
            s3db_version: format!("rs-{}", env!("CARGO_PKG_VERSION")),
            salt: salt.iter().map(|b| format!("{b:02x}")).collect(),
            last_updated: now(),
            resources: BTreeMap::new(),
        }
    }

    fn salt_bytes(&self) -> Vec<u8> {
        (0..self.salt.len() / 2)
            .filter_map(|i| u8::from_str_radix(self.salt.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
    }
}

/// Builds a [`Database`].
#[derive(Default)]
pub struct DatabaseBuilder {
    conn: Option<std::result::Result<ConnectionString, Error>>,
    passphrase: Option<SecretString>,
    hooks: Vec<Arc<dyn DatabaseHooks>>,
    layers: Vec<Layer>,
    accounting: Option<Arc<RequestAccounting>>,
    plugins: Vec<Pending>,
}

impl fmt::Debug for DatabaseBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseBuilder")
            .field(
                "conn",
                &self
                    .conn
                    .as_ref()
                    .map(|c| c.as_ref().map(ToString::to_string)),
            )
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .field("hooks", &self.hooks.len())
            .field(
                "plugins",
                &self
                    .plugins
                    .iter()
                    .map(|p| p.plugin.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl DatabaseBuilder {
    /// Where the database lives (`memory://`, `file://`, `s3://`, `http(s)://`). Parse errors are
    /// reported by [`DatabaseBuilder::connect`].
    #[must_use]
    pub fn connection_string(mut self, conn: &str) -> Self {
        self.conn = Some(ConnectionString::parse(conn).map_err(Error::from));
        self
    }

    /// Where the database lives, already parsed.
    #[must_use]
    pub fn connection(mut self, conn: ConnectionString) -> Self {
        self.conn = Some(Ok(conn));
        self
    }

    /// The passphrase that encrypts `secret` attributes.
    #[must_use]
    pub fn passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(SecretString::new(passphrase));
        self
    }

    /// Database hooks, registered before connecting (so they see `after_connect`).
    #[must_use]
    pub fn hooks(mut self, hooks: impl DatabaseHooks) -> Self {
        self.hooks.push(Arc::new(hooks));
        self
    }

    /// A plugin, installed and started when the database connects (all installs first, in the
    /// order given, then all starts).
    #[must_use]
    pub fn plugin<P: Plugin>(mut self, plugin: P) -> Self {
        self.plugins.push(Pending::new(plugin));
        self
    }

    /// A decorator around the object store (see [`crate::store::StoreBuilder::layer`]).
    #[must_use]
    pub fn store_layer(
        mut self,
        layer: impl FnOnce(Arc<dyn object_store::ObjectStore>) -> Arc<dyn object_store::ObjectStore>
        + Send
        + 'static,
    ) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Shares request counters with another store or database.
    #[must_use]
    pub fn accounting(mut self, accounting: Arc<RequestAccounting>) -> Self {
        self.accounting = Some(accounting);
        self
    }

    /// Connects: reads `s3db.json` (creating it in an empty place) and opens every resource it
    /// lists.
    ///
    /// # Errors
    /// [`Error::BadConnectionString`], storage errors, [`Error::Corrupt`] for an unreadable
    /// `s3db.json`.
    pub async fn connect(self) -> Result<Database> {
        let conn = match self.conn {
            Some(conn) => conn?,
            None => {
                return Err(Error::BadConnectionString(
                    crate::error::ConnectionStringError::new(
                        "scheme",
                        "no connection string given; call .connection_string(\"file://./data\") or similar",
                    ),
                ));
            }
        };
        for hooks in &self.hooks {
            hooks.before_connect(&conn).await?;
        }
        let mut store = Store::builder(conn);
        for layer in self.layers {
            store = store.layer(layer);
        }
        if let Some(accounting) = self.accounting {
            store = store.accounting(accounting);
        }
        let store = store.build()?;
        let meta_key = Key::parse(METADATA_KEY)?;
        let (meta, _) = read_or_create_meta(&store, &meta_key).await?;
        let secret = self
            .passphrase
            .map(|p| SecretKey::derive(p.expose(), &meta.salt_bytes()));
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let db = Database {
            inner: Arc::new(DatabaseInner {
                shared: Arc::new(Shared {
                    store,
                    secret,
                    events,
                }),
                resources: RwLock::new(BTreeMap::new()),
                hooks: Registry::default(),
                meta_key,
                create_lock: tokio::sync::Mutex::new(()),
                plugins: RwLock::new(Vec::new()),
                lifecycle: tokio::sync::Mutex::new(()),
            }),
        };
        db.load(&meta)?;
        for hooks in self.hooks {
            db.inner.hooks.add(hooks);
        }
        for (_, hooks) in db.inner.hooks.snapshot().iter() {
            hooks.after_connect(&db).await?;
        }
        {
            let _lifecycle = db.inner.lifecycle.lock().await;
            for pending in self.plugins {
                db.install(pending).await?;
            }
            let names: Vec<String> = db.plugins();
            for name in names {
                db.start(&name).await?;
            }
        }
        let _ = db.inner.shared.events.send(Event::Connected);
        tracing::debug!(store = ?db.inner.shared.store, resources = meta.resources.len(), "connected");
        Ok(db)
    }
}

/// A connected database. Cheap to clone (shared).
#[derive(Clone)]
pub struct Database {
    inner: Arc<DatabaseInner>,
}

struct DatabaseInner {
    shared: Arc<Shared>,
    resources: RwLock<BTreeMap<String, Resource>>,
    hooks: Registry<dyn DatabaseHooks>,
    meta_key: Key,
    create_lock: tokio::sync::Mutex<()>,
    plugins: RwLock<Vec<Installed>>,
    lifecycle: tokio::sync::Mutex<()>,
}

impl Drop for DatabaseInner {
    /// A database dropped without `disconnect` still stops its plugins' background tasks.
    fn drop(&mut self) {
        let plugins = self
            .plugins
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for plugin in plugins.iter() {
            plugin.cx.abort_tasks();
        }
    }
}

/// A database handle that does not keep it alive (held by plugin contexts).
#[derive(Clone)]
pub(crate) struct WeakDatabase(Weak<DatabaseInner>);

impl WeakDatabase {
    pub(crate) fn upgrade(&self) -> Option<Database> {
        self.0.upgrade().map(|inner| Database { inner })
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("store", &self.inner.shared.store)
            .field("resources", &self.resources())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// A builder.
    #[must_use]
    pub fn builder() -> DatabaseBuilder {
        DatabaseBuilder::default()
    }

    /// Connects with defaults (no passphrase, no hooks).
    ///
    /// ```
    /// # async fn demo() -> s3db_core::Result<()> {
    /// use s3db_core::{Database, ResourceConfig};
    /// let db = Database::connect("memory://docs/database").await?;
    /// let notes = db.create_resource(ResourceConfig::new("notes").attribute("text", "string|required")).await?;
    /// let note = notes.insert(serde_json::json!({"text": "hello"})).await?;
    /// assert_eq!(notes.get(note.id()).await?.get("text"), Some(&serde_json::json!("hello")));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`DatabaseBuilder::connect`].
    pub async fn connect(conn: &str) -> Result<Self> {
        Self::builder().connection_string(conn).connect().await
    }

    /// The store underneath (request counts, plugins' storage).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.shared.store
    }

    /// Events of every resource and of the database. Slow receivers lose old events.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.shared.events.subscribe()
    }

    /// Adds database hooks.
    pub fn add_hooks(&self, hooks: impl DatabaseHooks) -> HookId {
        self.inner.hooks.add(Arc::new(hooks))
    }

    /// Adds shared database hooks.
    pub fn add_hooks_arc(&self, hooks: Arc<dyn DatabaseHooks>) -> HookId {
        self.inner.hooks.add(hooks)
    }

    /// How many database hook sets are registered (for plugin conformance checks).
    #[must_use]
    pub fn hook_count(&self) -> usize {
        self.inner.hooks.len()
    }

    /// Removes database hooks; returns whether they were there.
    pub fn remove_hooks(&self, id: HookId) -> bool {
        self.inner.hooks.remove(id)
    }

    /// A resource by name, if this database knows it (see [`Database::reload`] for resources
    /// another process created since).
    #[must_use]
    pub fn resource(&self, name: &str) -> Option<Resource> {
        self.inner
            .resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The names of the known resources.
    #[must_use]
    pub fn resources(&self) -> Vec<String> {
        self.inner
            .resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Re-reads `s3db.json` and opens resources created (or changed) by other processes; database
    /// hooks see the newly opened ones through `after_create_resource`.
    ///
    /// # Errors
    /// Storage errors, [`Error::Corrupt`].
    pub async fn reload(&self) -> Result<()> {
        let (meta, _) = read_or_create_meta(self.store(), &self.inner.meta_key).await?;
        let before = self.resources();
        self.load(&meta)?;
        // Resources another process created are new here too: database hooks (and so plugins'
        // deferred setups) see them as created.
        let hooks = self.inner.hooks.snapshot();
        for name in self.resources() {
            if before.contains(&name) {
                continue;
            }
            if let Some(resource) = self.resource(&name) {
                for (_, h) in hooks.iter() {
                    h.after_create_resource(&resource).await?;
                }
            }
        }
        Ok(())
    }

    fn load(&self, meta: &DatabaseMeta) -> Result<()> {
        for (name, stored) in &meta.resources {
            let Some(current) = stored.versions.get(&stored.current_version) else {
                return Err(Error::Corrupt {
                    key: METADATA_KEY.to_owned(),
                    reason: format!("resource {name} has no version {}", stored.current_version),
                });
            };
            let config = current.to_config(name);
            let definition = Definition::new(
                &config,
                stored.current_version.clone(),
                stored.fields.clone(),
            )?;
            self.register(name, definition)?;
        }
        Ok(())
    }

    fn register(&self, name: &str, definition: Definition) -> Result<Resource> {
        let mut resources = self
            .inner
            .resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = resources.get(name) {
            if existing.current().version != definition.version {
                existing.set_definition(definition);
            }
            return Ok(existing.clone());
        }
        let resource = Resource::new(name, Arc::clone(&self.inner.shared), definition)?;
        resources.insert(name.to_owned(), resource.clone());
        Ok(resource)
    }

    /// Creates a resource, or opens it when it exists with the same definition; a changed
    /// definition becomes a new schema version. `s3db.json` is updated with a conditional write,
    /// re-read and merged on conflict, so processes creating resources at once all succeed.
    ///
    /// # Errors
    /// [`Error::BadSchema`] for a bad definition (nothing written), storage errors.
    pub async fn create_resource(&self, config: ResourceConfig) -> Result<Resource> {
        let mut config = config;
        let hooks = self.inner.hooks.snapshot();
        for (_, h) in hooks.iter() {
            h.before_create_resource(&mut config).await?;
        }
        let (schema, _, stored) = config.compile()?;
        if !schema.secret_paths().is_empty() && self.inner.shared.secret.is_none() {
            return Err(Error::BadSchema {
                attribute: schema.secret_paths().join(", "),
                rule: "secret".to_owned(),
                reason: "secret attributes need a database passphrase: Database::builder().passphrase(..)".to_owned(),
            });
        }
        let guard = self.inner.create_lock.lock().await;
        let name = config.name().to_owned();
        let mut backoff = Duration::from_millis(2);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut meta, etag) = read_or_create_meta(self.store(), &self.inner.meta_key).await?;
            let names = stored.stored_names();
            let (version, fields, changed) = match meta.resources.get_mut(&name) {
                None => {
                    let fields = FieldMap::from_names(names.iter().map(String::as_str));
                    meta.resources.insert(
                        name.clone(),
                        StoredResource {
                            current_version: "v1".to_owned(),
                            versions: [("v1".to_owned(), stored.clone())].into(),
                            fields: fields.clone(),
                        },
                    );
                    ("v1".to_owned(), fields, true)
                }
                Some(existing) => {
                    if existing.versions.get(&existing.current_version) == Some(&stored) {
                        (
                            existing.current_version.clone(),
                            existing.fields.clone(),
                            false,
                        )
                    } else {
                        let mut n = existing.versions.len() + 1;
                        while existing.versions.contains_key(&format!("v{n}")) {
                            n += 1;
                        }
                        let version = format!("v{n}");
                        existing.fields.extend(names.iter().map(String::as_str));
                        existing.versions.insert(version.clone(), stored.clone());
                        existing.current_version.clone_from(&version);
                        (version, existing.fields.clone(), true)
                    }
                }
            };
            if changed {
                meta.last_updated = now();
                let body = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Corrupt {
                    key: METADATA_KEY.to_owned(),
                    reason: e.to_string(),
                })?;
                match self
                    .store()
                    .update(&self.inner.meta_key, &Metadata::new(), body.into(), &etag)
                    .await
                {
                    Ok(_) => {}
                    Err(Error::PreconditionFailed { .. }) => {
                        let jitter = rand::random_range(0..=backoff.as_micros() as u64);
                        tokio::time::sleep(Duration::from_micros(jitter)).await;
                        backoff = (backoff * 2).min(Duration::from_millis(200));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let definition = Definition::new(&config, version.clone(), fields)?;
            let resource = self.register(&name, definition)?;
            // Hooks run without the lock: one may create a resource itself (a plugin's deferred
            // setup creating its `plg_*` resource for the new one).
            drop(guard);
            let _ = self.inner.shared.events.send(Event::ResourceCreated {
                resource: name.clone(),
                version,
            });
            for (_, h) in hooks.iter() {
                h.after_create_resource(&resource).await?;
            }
            return Ok(resource);
        }
        Err(Error::PreconditionFailed {
            key: METADATA_KEY.to_owned(),
        })
    }

    pub(crate) fn downgrade(&self) -> WeakDatabase {
        WeakDatabase(Arc::downgrade(&self.inner))
    }

    pub(crate) fn emit(&self, event: Event) {
        let _ = self.inner.shared.events.send(event);
    }

    fn plugin_event(&self, plugin: &str, event: PluginEvent) {
        self.emit(Event::Plugin {
            plugin: plugin.to_owned(),
            event,
        });
    }

    fn installed(&self) -> std::sync::RwLockReadGuard<'_, Vec<Installed>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn installed_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Installed>> {
        self.inner
            .plugins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The names of the installed plugins, in installation order.
    #[must_use]
    pub fn plugins(&self) -> Vec<String> {
        self.installed()
            .iter()
            .map(|p| p.plugin.name().to_owned())
            .collect()
    }

    /// An installed plugin, typed: `db.plugin::<CostsPlugin>()`.
    #[must_use]
    pub fn plugin<P: Plugin>(&self) -> Option<Arc<P>> {
        self.installed()
            .iter()
            .find_map(|p| Arc::clone(&p.any).downcast::<P>().ok())
    }

    /// An installed plugin of type `P` named `name`, for types installed more than once (one
    /// queue per plugin, say): `db.plugin_named::<S3Queue>("s3-queue:emails")`.
    #[must_use]
    pub fn plugin_named<P: Plugin>(&self, name: &str) -> Option<Arc<P>> {
        self.installed()
            .iter()
            .filter(|p| p.plugin.name() == name)
            .find_map(|p| Arc::clone(&p.any).downcast::<P>().ok())
    }

    /// The context of an installed plugin (its storage, registrations), by name.
    #[must_use]
    pub fn plugin_context(&self, name: &str) -> Option<PluginContext> {
        self.installed()
            .iter()
            .find(|p| p.plugin.name() == name)
            .map(|p| p.cx.clone())
    }

    /// Installs and starts a plugin now; returns it for typed access.
    ///
    /// # Errors
    /// [`Error::Plugin`] for a duplicate name or a failing install/start (rolled back).
    pub async fn use_plugin<P: Plugin>(&self, plugin: P) -> Result<Arc<P>> {
        let pending = Pending::new(plugin);
        let name = pending.plugin.name().to_owned();
        let typed = Arc::clone(&pending.any)
            .downcast::<P>()
            .map_err(|_| Error::Plugin {
                plugin: name.clone(),
                source: Box::new(Error::Refused {
                    operation: "use_plugin",
                    reason: "type mismatch".to_owned(),
                }),
            })?;
        let _lifecycle = self.inner.lifecycle.lock().await;
        self.install(pending).await?;
        self.start(&name).await?;
        Ok(typed)
    }

    async fn install(&self, pending: Pending) -> Result<()> {
        let name = pending.plugin.name().to_owned();
        let fail = |source: Error| Error::Plugin {
            plugin: name.clone(),
            source: Box::new(source),
        };
        if self.installed().iter().any(|p| p.plugin.name() == name) {
            return Err(fail(Error::Refused {
                operation: "install",
                reason: "a plugin with this name is already installed".to_owned(),
            }));
        }
        let cx = PluginContext::new(&name, &pending.plugin.slug(), self)?;
        self.plugin_event(&name, PluginEvent::BeforeInstall);
        if let Err(e) = pending.plugin.install(&cx).await {
            cx.remove_registrations();
            cx.stop_tasks().await;
            return Err(fail(e));
        }
        self.installed_mut().push(Installed {
            plugin: pending.plugin,
            any: pending.any,
            cx,
            started: false,
        });
        self.plugin_event(&name, PluginEvent::Installed);
        tracing::debug!(plugin = %name, "plugin installed");
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<()> {
        let Some(entry) = self
            .installed()
            .iter()
            .find(|p| p.plugin.name() == name && !p.started)
            .cloned()
        else {
            return Ok(());
        };
        self.plugin_event(name, PluginEvent::BeforeStart);
        if let Err(e) = entry.plugin.start(&entry.cx).await {
            // Roll the whole plugin back: it is not left half-running.
            entry.cx.stop_tasks().await;
            entry.cx.remove_registrations();
            self.installed_mut().retain(|p| p.plugin.name() != name);
            return Err(Error::Plugin {
                plugin: name.to_owned(),
                source: Box::new(e),
            });
        }
        if let Some(p) = self
            .installed_mut()
            .iter_mut()
            .find(|p| p.plugin.name() == name)
        {
            p.started = true;
        }
        self.plugin_event(name, PluginEvent::Started);
        Ok(())
    }

    async fn stop(&self, entry: &Installed) -> Result<()> {
        self.plugin_event(entry.plugin.name(), PluginEvent::BeforeStop);
        let result = entry.plugin.stop(&entry.cx).await;
        entry.cx.stop_tasks().await;
        if let Some(p) = self
            .installed_mut()
            .iter_mut()
            .find(|p| p.plugin.name() == entry.plugin.name())
        {
            p.started = false;
        }
        self.plugin_event(entry.plugin.name(), PluginEvent::Stopped);
        result.map_err(|e| Error::Plugin {
            plugin: entry.plugin.name().to_owned(),
            source: Box::new(e),
        })
    }

    /// Stops and uninstalls a plugin: removes every hook, middleware, deferred setup and task it
    /// registered; with `purge_data`, also deletes all of its storage and its `plg_*` resources'
    /// data. Returns how many objects were purged.
    ///
    /// # Errors
    /// [`Error::Plugin`] if no plugin has this name or a step fails (the registrations are removed
    /// regardless).
    pub async fn uninstall_plugin(&self, name: &str, purge_data: bool) -> Result<u64> {
        let _lifecycle = self.inner.lifecycle.lock().await;
        let fail = |source: Error| Error::Plugin {
            plugin: name.to_owned(),
            source: Box::new(source),
        };
        let Some(entry) = self
            .installed()
            .iter()
            .find(|p| p.plugin.name() == name)
            .cloned()
        else {
            return Err(fail(Error::NotFound {
                key: format!("plugin {name}"),
            }));
        };
        let stopped = if entry.started {
            self.stop(&entry).await
        } else {
            Ok(())
        };
        self.plugin_event(name, PluginEvent::BeforeUninstall);
        let uninstalled = entry.plugin.uninstall(&entry.cx, purge_data).await;
        entry.cx.remove_registrations();
        entry.cx.stop_tasks().await;
        self.installed_mut().retain(|p| p.plugin.name() != name);
        stopped?;
        uninstalled.map_err(fail)?;
        let mut deleted = 0;
        if purge_data {
            let resources = self.resources();
            deleted += entry
                .cx
                .storage()
                .delete_all(&resources)
                .await
                .map_err(fail)?;
            for internal in entry.cx.internal_resources() {
                let prefix = Key::parse(&format!("resource={internal}")).map_err(fail)?;
                deleted += self.store().delete_prefix(&prefix).await.map_err(fail)?;
            }
            self.plugin_event(name, PluginEvent::DataPurged { deleted });
        }
        self.plugin_event(name, PluginEvent::Uninstalled);
        Ok(deleted)
    }

    /// Disconnects: stops every plugin (in reverse installation order), runs the disconnect hooks
    /// and broadcasts [`Event::Disconnected`].
    ///
    /// # Errors
    /// The first plugin's or hook's error (every plugin is stopped regardless).
    pub async fn disconnect(&self) -> Result<()> {
        let mut first_error = None;
        {
            let _lifecycle = self.inner.lifecycle.lock().await;
            let entries: Vec<Installed> = self.installed().iter().rev().cloned().collect();
            for entry in entries.iter().filter(|e| e.started) {
                if let Err(e) = self.stop(entry).await {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let hooks = self.inner.hooks.snapshot();
        for (_, h) in hooks.iter() {
            h.before_disconnect(self).await?;
        }
        let _ = self.inner.shared.events.send(Event::Disconnected);
        for (_, h) in hooks.iter() {
            h.after_disconnect(self).await?;
        }
        Ok(())
    }
}

/// Reads `s3db.json`, creating it (conditionally) when the place is empty.
async fn read_or_create_meta(store: &Store, key: &Key) -> Result<(DatabaseMeta, crate::ETag)> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        match store.get(key).await {
            Ok(object) => {
                let meta: DatabaseMeta =
                    serde_json::from_slice(&object.body).map_err(|e| Error::Corrupt {
                        key: METADATA_KEY.to_owned(),
                        reason: format!("s3db.json is not valid: {e}"),
                    })?;
                return Ok((meta, object.head.etag));
            }
            Err(Error::NotFound { .. }) => {
                let meta = DatabaseMeta::new();
                let body = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Corrupt {
                    key: METADATA_KEY.to_owned(),
                    reason: e.to_string(),
                })?;
                match store.create(key, &Metadata::new(), body.into()).await {
                    Ok(etag) => return Ok((meta, etag)),
                    Err(Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::PreconditionFailed {
        key: METADATA_KEY.to_owned(),
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
