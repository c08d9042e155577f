//! Resources: typed collections of records with validation, behaviors, partitions and hooks.

mod definition;
mod filter;
pub mod hooks;
pub mod id;
pub mod partition;
mod record;
mod typed;

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

pub(crate) use self::definition::StoredResource;
pub use self::definition::{CREATED_AT, ResourceConfig, UPDATED_AT};
pub use self::filter::Filter;
use self::hooks::{
    Event, HookId, InsertOp, Middleware, Next, Operation, Outcome, Registry, ResourceHooks,
    UpdateKind, UpdateOp,
};
pub use self::id::IdStrategy;
use self::partition::Partition;
pub use self::record::{Document, Record, to_document};
pub use self::typed::TypedResource;
use crate::codec::{self, Behavior, FieldMap};
use crate::error::{Error, Result};
use crate::key::{Key, check_part};
use crate::schema::{Mode, Schema};
use crate::secret::{self, SecretKey};
use crate::store::{Metadata, Store};

/// How many records bulk operations and listings read or write at once.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Capacity of each event channel; a subscriber that falls further behind loses old events.
pub const EVENT_CAPACITY: usize = 1024;
const MAX_CAS_ATTEMPTS: u32 = 200;

/// What the database shares with its resources.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) secret: Option<SecretKey>,
    pub(crate) events: broadcast::Sender<Event>,
}

/// One compiled version of a resource definition.
#[derive(Debug)]
pub(crate) struct Definition {
    pub(crate) version: String,
    pub(crate) schema: Schema,
    pub(crate) behavior: Behavior,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) timestamps: bool,
    pub(crate) paranoid: bool,
    pub(crate) versioning: bool,
    pub(crate) id: IdStrategy,
    pub(crate) fields: FieldMap,
    /// Whether any attribute is a secret (computed once: checked on every read and write).
    pub(crate) has_secrets: bool,
    /// The configuration this version was made from.
    pub(crate) config: ResourceConfig,
}

impl Definition {
    pub(crate) fn new(config: &ResourceConfig, version: String, fields: FieldMap) -> Result<Self> {
        let (schema, partitions, _) = config.compile()?;
        let has_secrets = !schema.secret_paths().is_empty();
        Ok(Self {
            has_secrets,
            version,
            schema,
            behavior: config.behavior,
            partitions,
            timestamps: config.timestamps,
            paranoid: config.paranoid,
            versioning: config.versioning,
            id: config.id_strategy.clone(),
            fields,
            config: config.clone(),
        })
    }
}

/// One version of a resource's definition, read-only ([`Resource::definition`]).
#[derive(Debug, Clone)]
pub struct ResourceDefinition(Arc<Definition>);

impl ResourceDefinition {
    /// The schema version (`v1`, `v2`, …).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.0.version
    }

    /// The compiled attributes.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        &self.0.schema
    }

    /// Dotted paths of the `secret` attributes (nested ones included).
    #[must_use]
    pub fn secret_paths(&self) -> Vec<String> {
        if self.0.has_secrets {
            self.0.schema.secret_paths()
        } else {
            Vec::new()
        }
    }

    /// How records are split between metadata and body.
    #[must_use]
    pub fn behavior(&self) -> Behavior {
        self.0.behavior
    }

    /// The partitions, in name order.
    #[must_use]
    pub fn partitions(&self) -> &[Partition] {
        &self.0.partitions
    }

    /// Whether records carry `created_at` / `updated_at`.
    #[must_use]
    pub fn timestamps(&self) -> bool {
        self.0.timestamps
    }

    /// Whether `delete_all` is refused.
    #[must_use]
    pub fn paranoid(&self) -> bool {
        self.0.paranoid
    }

    /// Whether updates and deletes keep the previous version.
    #[must_use]
    pub fn versioning(&self) -> bool {
        self.0.versioning
    }

    /// The configuration this version was made from: creating a resource from it (in another
    /// database, say) gives the same definition.
    #[must_use]
    pub fn to_config(&self) -> ResourceConfig {
        self.0.config.clone()
    }
}

/// A page request: size and the cursor of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    size: usize,
    cursor: Option<String>,
}

impl Page {
    /// The first page of `size` records (at least 1).
    #[must_use]
    pub fn size(size: usize) -> Self {
        Self {
            size: size.max(1),
            cursor: None,
        }
    }

    /// The page after the one whose `next_cursor` this is.
    #[must_use]
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }
}

/// One page of records.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PageResult {
    /// The records, in id order.
    pub items: Vec<Record>,
    /// Whether more records follow.
    pub has_more: bool,
    /// Pass to [`Page::after`] for the next page.
    pub next_cursor: Option<String>,
}

impl PageResult {
    /// The cursor of the next page, if there is one.
    #[must_use]
    pub fn next_cursor(&self) -> Option<&str> {
        self.next_cursor.as_deref()
    }
}

/// A resource: a named collection of records. Cheap to clone (shared).
#[derive(Clone)]
pub struct Resource {
    inner: Arc<ResourceInner>,
}

/// A [`Resource`] held without keeping it alive.
#[derive(Clone)]
pub(crate) struct WeakResource(std::sync::Weak<ResourceInner>);

impl WeakResource {
    /// The resource, if it still exists.
    pub(crate) fn upgrade(&self) -> Option<Resource> {
        self.0.upgrade().map(|inner| Resource { inner })
    }
}

struct ResourceInner {
    name: String,
    shared: Arc<Shared>,
    definition: RwLock<Arc<Definition>>,
    hooks: Registry<dyn ResourceHooks>,
    middleware: Registry<dyn Middleware>,
    events: broadcast::Sender<Event>,
    data_prefix: Key,
    extensions: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("name", &self.inner.name)
            .field("version", &self.current().version)
            .finish_non_exhaustive()
    }
}

impl Resource {
    pub(crate) fn new(name: &str, shared: Arc<Shared>, definition: Definition) -> Result<Self> {
        let data_prefix = Key::from_parts([format!("resource={name}"), "data".to_owned()])?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Self {
            inner: Arc::new(ResourceInner {
                name: name.to_owned(),
                shared,
                definition: RwLock::new(Arc::new(definition)),
                hooks: Registry::default(),
                middleware: Registry::default(),
                events,
                data_prefix,
                extensions: RwLock::new(HashMap::new()),
            }),
        })
    }

    pub(crate) fn set_definition(&self, definition: Definition) {
        *self
            .inner
            .definition
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(definition);
    }

    pub(crate) fn current(&self) -> Arc<Definition> {
        Arc::clone(
            &self
                .inner
                .definition
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// A handle that does not keep the resource alive.
    pub(crate) fn downgrade(&self) -> WeakResource {
        WeakResource(Arc::downgrade(&self.inner))
    }

    /// The resource's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current schema version (`v1`, `v2`, …).
    #[must_use]
    pub fn version(&self) -> String {
        self.current().version.clone()
    }

    /// Its current definition (schema version, attributes, partitions, options), read-only: what a
    /// plugin needs to know about a resource (which attributes are secrets, which fields a
    /// partition has, whether deletes keep versions, …).
    #[must_use]
    pub fn definition(&self) -> ResourceDefinition {
        ResourceDefinition(self.current())
    }

    /// The names of its partitions.
    #[must_use]
    pub fn partitions(&self) -> Vec<String> {
        self.current()
            .partitions
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// The store underneath (for request counts and plugins).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.shared.store
    }

    /// A typed view for a struct of yours.
    #[must_use]
    pub fn typed<T>(&self) -> TypedResource<T> {
        TypedResource::new(self.clone())
    }

    /// Events of this resource. Slow receivers lose old events; writers never wait.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Adds a set of hooks (run after those added before).
    pub fn add_hooks(&self, hooks: impl ResourceHooks) -> HookId {
        self.inner.hooks.add(Arc::new(hooks))
    }

    /// Adds a shared set of hooks.
    pub fn add_hooks_arc(&self, hooks: Arc<dyn ResourceHooks>) -> HookId {
        self.inner.hooks.add(hooks)
    }

    /// Removes a set of hooks; returns whether it was there.
    pub fn remove_hooks(&self, id: HookId) -> bool {
        self.inner.hooks.remove(id)
    }

    /// Adds middleware (outermost first: the first added sees operations first).
    pub fn add_middleware(&self, middleware: impl Middleware) -> HookId {
        self.inner.middleware.add(Arc::new(middleware))
    }

    /// Adds shared middleware.
    pub fn add_middleware_arc(&self, middleware: Arc<dyn Middleware>) -> HookId {
        self.inner.middleware.add(middleware)
    }

    /// Removes middleware; returns whether it was there.
    pub fn remove_middleware(&self, id: HookId) -> bool {
        self.inner.middleware.remove(id)
    }

    /// A typed capability a plugin attached to this resource (see
    /// [`crate::plugin::PluginContext::add_resource_extension`]); plugin crates wrap this in an
    /// extension trait, e.g. `wallets.eventual("balance")`.
    #[must_use]
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let extensions = self
            .inner
            .extensions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        extensions
            .get(&TypeId::of::<T>())
            .and_then(|e| Arc::clone(e).downcast::<T>().ok())
    }

    pub(crate) fn insert_extension(&self, value: Arc<dyn Any + Send + Sync>) -> TypeId {
        let type_id = (*value).type_id();
        self.inner
            .extensions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(type_id, value);
        type_id
    }

    pub(crate) fn remove_extension(&self, type_id: TypeId) {
        self.inner
            .extensions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&type_id);
    }

    /// How many typed capabilities plugins attached (for plugin conformance checks).
    #[must_use]
    pub fn extension_count(&self) -> usize {
        self.inner
            .extensions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// How many hook sets and middleware are registered (for plugin conformance checks).
    #[must_use]
    pub fn interceptor_count(&self) -> (usize, usize) {
        (self.inner.hooks.len(), self.inner.middleware.len())
    }

    // ----- public operations: each goes through the middleware chain -----

    /// Runs an operation through the middleware chain.
    ///
    /// # Errors
    /// Whatever the operation returns.
    pub async fn run(&self, op: Operation) -> Result<Outcome> {
        let chain = self.inner.middleware.snapshot();
        Next {
            resource: self,
            rest: &chain,
        }
        .run(op)
        .await
    }

    /// Inserts a document; the id comes from its `id` field or is minted.
    ///
    /// # Errors
    /// [`Error::Validation`] (nothing written), [`Error::AlreadyExists`] for a taken id, storage
    /// errors.
    pub async fn insert(&self, data: impl Serialize) -> Result<Record> {
        let mut data = to_document(&data)?;
        let id = match data.remove("id") {
            Some(Value::String(id)) => Some(id),
            Some(Value::Null) | None => None,
            Some(other) => {
                return Err(Error::Validation(vec![crate::FieldError::new(
                    "id",
                    "type",
                    format!("an id must be a string, not {other}"),
                )]));
            }
        };
        expect_record(self.run(Operation::Insert { id, data }).await?)
    }

    /// Inserts a document under the given id.
    ///
    /// # Errors
    /// As [`Resource::insert`].
    pub async fn insert_with_id(&self, id: &str, data: impl Serialize) -> Result<Record> {
        let data = to_document(&data)?;
        expect_record(
            self.run(Operation::Insert {
                id: Some(id.to_owned()),
                data,
            })
            .await?,
        )
    }

    /// Reads a record (one GET).
    ///
    /// # Errors
    /// [`Error::NotFound`], storage errors, [`Error::SecretDecryption`].
    pub async fn get(&self, id: &str) -> Result<Record> {
        expect_record(self.run(Operation::Get { id: id.to_owned() }).await?)
    }

    /// Reads a record straight from the store, past every middleware (a cache cannot answer
    /// it): for plugins that need the stored state of a record, such as an index or an audit
    /// trail reading what a write changed.
    ///
    /// # Errors
    /// As [`Resource::get`].
    pub async fn get_from_store(&self, id: &str) -> Result<Record> {
        self.do_get(id).await
    }

    /// Whether a record exists (one HEAD).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn exists(&self, id: &str) -> Result<bool> {
        match self.run(Operation::Exists { id: id.to_owned() }).await? {
            Outcome::Exists(b) => Ok(b),
            other => Err(unexpected("exists", &other)),
        }
    }

    /// Merges changes into a record. The write is conditional on the version read and retried on
    /// conflict: concurrent updates never lose each other's changes.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Validation`] (nothing written), storage errors.
    pub async fn update(&self, id: &str, changes: impl Serialize) -> Result<Record> {
        self.update_kind(id, changes, UpdateKind::Update, None)
            .await
    }

    /// Like [`Resource::update`], validating only the changed fields.
    ///
    /// # Errors
    /// As [`Resource::update`].
    pub async fn patch(&self, id: &str, changes: impl Serialize) -> Result<Record> {
        self.update_kind(id, changes, UpdateKind::Patch, None).await
    }

    /// Replaces a record's data entirely (`created_at` is kept).
    ///
    /// # Errors
    /// As [`Resource::update`].
    pub async fn replace(&self, id: &str, data: impl Serialize) -> Result<Record> {
        self.update_kind(id, data, UpdateKind::Replace, None).await
    }

    /// Replaces a record, or inserts it when it does not exist.
    ///
    /// # Errors
    /// [`Error::Validation`], storage errors.
    pub async fn upsert(&self, id: &str, data: impl Serialize) -> Result<Record> {
        self.update_kind(id, data, UpdateKind::Upsert, None).await
    }

    /// Merges changes only if the record is still at `etag` (from a record you read); no retry.
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] if it changed since; otherwise as [`Resource::update`].
    pub async fn update_if_match(
        &self,
        id: &str,
        changes: impl Serialize,
        etag: &crate::ETag,
    ) -> Result<Record> {
        self.update_kind(id, changes, UpdateKind::Update, Some(etag.clone()))
            .await
    }

    async fn update_kind(
        &self,
        id: &str,
        changes: impl Serialize,
        kind: UpdateKind,
        if_match: Option<crate::ETag>,
    ) -> Result<Record> {
        let changes = to_document(&changes)?;
        expect_record(
            self.run(Operation::Update {
                id: id.to_owned(),
                changes,
                kind,
                if_match,
            })
            .await?,
        )
    }

    /// Deletes a record and its partition references. Deleting a missing record succeeds.
    ///
    /// # Errors
    /// Storage errors; a before-delete hook's error.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.run(Operation::Delete { id: id.to_owned() }).await?;
        Ok(())
    }

    /// Inserts many documents, [`DEFAULT_CONCURRENCY`] at a time; one result per document, in
    /// order.
    pub async fn insert_many<T: Serialize>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Vec<Result<Record>> {
        let items: Vec<T> = items.into_iter().collect();
        // The futures are made first: a stream of closures that borrow would not be `Send`.
        let inserts: Vec<_> = items.iter().map(|item| self.insert(item)).collect();
        futures::stream::iter(inserts)
            .buffered(DEFAULT_CONCURRENCY)
            .collect()
            .await
    }

    /// Reads many records; one result per id, in order.
    pub async fn get_many<S: AsRef<str>>(&self, ids: &[S]) -> Vec<Result<Record>> {
        let gets: Vec<_> = ids.iter().map(|id| self.get(id.as_ref())).collect();
        futures::stream::iter(gets)
            .buffered(DEFAULT_CONCURRENCY)
            .collect()
            .await
    }

    /// Deletes many records; one result per id, in order.
    pub async fn delete_many<S: AsRef<str>>(&self, ids: &[S]) -> Vec<Result<()>> {
        let deletes: Vec<_> = ids.iter().map(|id| self.delete(id.as_ref())).collect();
        futures::stream::iter(deletes)
            .buffered(DEFAULT_CONCURRENCY)
            .collect()
            .await
    }

    /// Deletes every record, partition reference and historical version of the resource; returns
    /// the number of objects deleted.
    ///
    /// # Errors
    /// [`Error::Refused`] when the resource is paranoid (the default).
    pub async fn delete_all(&self) -> Result<u64> {
        match self.run(Operation::DeleteAll).await? {
            Outcome::Count(n) => Ok(n),
            other => Err(unexpected("a count of deleted objects", &other)),
        }
    }

    async fn do_delete_all(&self) -> Result<u64> {
        if self.current().paranoid {
            return Err(Error::Refused {
                operation: "delete_all",
                reason: format!(
                    "resource {} is paranoid; create it with .paranoid(false) to allow deleting everything",
                    self.name()
                ),
            });
        }
        let hooks = self.inner.hooks.snapshot();
        for (_, h) in hooks.iter() {
            h.before_delete_all(self.name()).await?;
        }
        // Records, partition references and historical versions; plugin data stays.
        let root = Key::parse(&format!("resource={}", self.name()))?;
        let keys: Vec<Key> = self
            .store()
            .list(Some(&root))
            .try_filter(|entry| {
                let kind = entry.key.parts().nth(1).unwrap_or_default();
                futures::future::ready(
                    kind == "data" || kind == "historical" || kind.starts_with("partition="),
                )
            })
            .map_ok(|entry| entry.key)
            .try_collect()
            .await?;
        for result in self.store().delete_many(&keys, DEFAULT_CONCURRENCY).await {
            result?;
        }
        let objects = keys.len() as u64;
        self.emit(|| Event::AllDeleted {
            resource: self.name().to_owned(),
            objects,
        });
        for (_, h) in hooks.iter() {
            h.after_delete_all(self.name(), objects).await?;
        }
        Ok(objects)
    }

    /// Every record, in id order.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn list(&self) -> Result<Vec<Record>> {
        expect_records(
            self.run(Operation::List {
                partition: None,
                limit: None,
            })
            .await?,
        )
    }

    /// The records of one partition (values for all its fields), reading only its prefix.
    ///
    /// # Errors
    /// [`Error::BadSchema`] for an unknown partition or missing field values; storage errors.
    pub async fn list_partition(
        &self,
        partition: &str,
        values: impl Serialize,
    ) -> Result<Vec<Record>> {
        let values = partition_values(&values)?;
        expect_records(
            self.run(Operation::List {
                partition: Some((partition.to_owned(), values)),
                limit: None,
            })
            .await?,
        )
    }

    /// Every id, in order (LIST requests only).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn list_ids(&self) -> Result<Vec<String>> {
        match self
            .run(Operation::ListIds {
                partition: None,
                limit: None,
            })
            .await?
        {
            Outcome::Ids(ids) => Ok(ids),
            other => Err(unexpected("list_ids", &other)),
        }
    }

    /// The number of records (LIST requests only).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn count(&self) -> Result<u64> {
        match self.run(Operation::Count { partition: None }).await? {
            Outcome::Count(n) => Ok(n),
            other => Err(unexpected("count", &other)),
        }
    }

    /// The number of records in one partition (LIST requests on its prefix only).
    ///
    /// # Errors
    /// As [`Resource::list_partition`].
    pub async fn count_partition(&self, partition: &str, values: impl Serialize) -> Result<u64> {
        let values = partition_values(&values)?;
        match self
            .run(Operation::Count {
                partition: Some((partition.to_owned(), values)),
            })
            .await?
        {
            Outcome::Count(n) => Ok(n),
            other => Err(unexpected("count", &other)),
        }
    }

    /// One page of records in id order.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a cursor that is not one of ours; storage errors.
    pub async fn page(&self, page: Page) -> Result<PageResult> {
        match self
            .run(Operation::Page {
                size: page.size,
                cursor: page.cursor,
            })
            .await?
        {
            Outcome::Page(p) => Ok(p),
            other => Err(unexpected("page", &other)),
        }
    }

    /// Records matching a filter. When the filter's exact matches fix every field of a partition,
    /// only that partition's prefix is read.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn query(&self, filter: Filter) -> Result<Vec<Record>> {
        expect_records(self.run(Operation::Query { filter }).await?)
    }

    // ----- the operations themselves (innermost link of the chain) -----

    pub(crate) async fn execute(&self, op: Operation) -> Result<Outcome> {
        // Only the smallest, hottest operations (get, exists) run inline: the others are boxed,
        // so that this future stays small. Every middleware boxes a future holding it, and
        // boxes above about 1 KiB leave the allocator's fast per-thread cache; large futures are
        // also copied whole at each level on the way in.
        match op {
            Operation::Insert { id, data } => Box::pin(self.do_insert(id, data))
                .await
                .map(Outcome::Record),
            Operation::Get { id } => self.do_get(&id).await.map(Outcome::Record),
            Operation::Exists { id } => {
                let key = self.record_key(&id)?;
                self.store().exists(&key).await.map(Outcome::Exists)
            }
            Operation::Update {
                id,
                changes,
                kind,
                if_match,
            } => Box::pin(self.do_update(id, changes, kind, if_match))
                .await
                .map(Outcome::Record),
            Operation::Delete { id } => Box::pin(self.do_delete(&id))
                .await
                .map(|()| Outcome::Deleted),
            Operation::DeleteAll => Box::pin(self.do_delete_all()).await.map(Outcome::Count),
            op @ (Operation::List { .. }
            | Operation::ListIds { .. }
            | Operation::Count { .. }
            | Operation::Page { .. }
            | Operation::Query { .. }) => Box::pin(self.execute_listing(op)).await,
        }
    }

    /// The listing operations of [`Resource::execute`].
    async fn execute_listing(&self, op: Operation) -> Result<Outcome> {
        match op {
            Operation::List { partition, limit } => {
                let ids = self.ids(partition.as_ref(), limit).await?;
                let mut records = self.read_all(&ids, partition.as_ref()).await?;
                self.after_list(&mut records).await?;
                Ok(Outcome::Records(records))
            }
            Operation::ListIds { partition, limit } => {
                Ok(Outcome::Ids(self.ids(partition.as_ref(), limit).await?))
            }
            Operation::Count { partition } => {
                let prefix = self.listing_prefix(partition.as_ref())?;
                let mut stream = self.store().list(Some(&prefix));
                let mut n = 0u64;
                while let Some(entry) = stream.next().await {
                    entry?;
                    n += 1;
                }
                Ok(Outcome::Count(n))
            }
            Operation::Page { size, cursor } => self.do_page(size, cursor).await.map(Outcome::Page),
            Operation::Query { filter } => self.do_query(&filter).await.map(Outcome::Records),
            other => Err(Error::Refused {
                operation: other.name(),
                reason: "not a listing operation".to_owned(),
            }),
        }
    }

    fn record_key(&self, id: &str) -> Result<Key> {
        check_part(id)?;
        self.inner.data_prefix.join_pair("id", id)
    }

    fn historical_key(&self, id: &str) -> Result<Key> {
        Key::from_parts([
            format!("resource={}", self.name()),
            "historical".to_owned(),
            format!("id={id}"),
        ])
    }

    /// Broadcasts an event, building it only when someone listens.
    fn emit(&self, event: impl FnOnce() -> Event) {
        let to_db = self.inner.shared.events.receiver_count() > 0;
        let to_resource = self.inner.events.receiver_count() > 0;
        if !(to_db || to_resource) {
            return;
        }
        let event = event();
        if to_db && to_resource {
            let _ = self.inner.shared.events.send(event.clone());
            let _ = self.inner.events.send(event);
        } else if to_db {
            let _ = self.inner.shared.events.send(event);
        } else {
            let _ = self.inner.events.send(event);
        }
    }

    async fn do_insert(&self, id: Option<String>, data: Document) -> Result<Record> {
        let def = self.current();
        let mut op = InsertOp { id, data };
        for (_, h) in self.inner.hooks.snapshot().iter() {
            h.before_insert(self.name(), &mut op).await?;
        }
        let InsertOp { id, data } = op;
        let id = match id {
            Some(id) => id,
            None => def.id.generate()?,
        };
        self.create_record(&def, id, data).await
    }

    async fn do_get(&self, id: &str) -> Result<Record> {
        let hooks = self.inner.hooks.snapshot();
        for (_, h) in hooks.iter() {
            h.before_get(self.name(), id).await?;
        }
        let mut record = self.read(id).await?.0;
        for (_, h) in hooks.iter() {
            h.after_get(self.name(), &mut record).await?;
        }
        Ok(record)
    }

    /// Reads and decodes a record; also returns the raw object (for versioning).
    async fn read(&self, id: &str) -> Result<(Record, crate::Object)> {
        let key = self.record_key(id)?;
        let object = self.store().get(&key).await?;
        let def = self.current();
        let (data, version) = self.decode(&def, &key, &object.head.metadata, &object.body)?;
        Ok((
            Record {
                id: id.to_owned(),
                data,
                etag: object.head.etag.clone(),
                schema_version: version,
            },
            object,
        ))
    }

    async fn do_update(
        &self,
        id: String,
        changes: Document,
        kind: UpdateKind,
        if_match: Option<crate::ETag>,
    ) -> Result<Record> {
        let hooks = self.inner.hooks.snapshot();
        let mut op = UpdateOp { id, changes, kind };
        for (_, h) in hooks.iter() {
            h.before_update(self.name(), &mut op).await?;
        }
        let UpdateOp { id, changes, kind } = op;
        if changes.contains_key("id") {
            return Err(Error::Validation(vec![crate::FieldError::new(
                "id",
                "immutable",
                "the id of a record cannot be changed",
            )]));
        }
        let key = self.record_key(&id)?;
        let mut backoff = Duration::from_millis(1);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let def = self.current();
            let current = match self.read(&id).await {
                Ok(found) => Some(found),
                Err(Error::NotFound { .. }) if kind == UpdateKind::Upsert => None,
                Err(e) => return Err(e),
            };
            let Some((before, raw)) = current else {
                match self.create_record(&def, id.clone(), changes.clone()).await {
                    Err(Error::AlreadyExists { .. }) => continue, // someone created it: update it
                    other => return other,
                }
            };
            if let Some(expected) = &if_match
                && *expected != before.etag
            {
                return Err(Error::PreconditionFailed {
                    key: key.to_string(),
                });
            }
            let mut data = match kind {
                UpdateKind::Update | UpdateKind::Patch => {
                    let mut merged = before.data.clone();
                    // Fields of older schema versions that the current one dropped go away.
                    merged.retain(|name, _| def.schema.get(name).is_some());
                    if kind == UpdateKind::Patch {
                        merged.extend(def.schema.validated(changes.clone(), Mode::Partial)?);
                        merged
                    } else {
                        merged.extend(changes.clone());
                        def.schema.validated(merged, Mode::Full)?
                    }
                }
                UpdateKind::Replace | UpdateKind::Upsert => {
                    def.schema.validated(changes.clone(), Mode::Full)?
                }
            };
            if def.timestamps {
                let created = before
                    .data
                    .get(CREATED_AT)
                    .cloned()
                    .unwrap_or_else(|| Value::String(now_rfc3339()));
                data.insert(CREATED_AT.to_owned(), created);
                data.insert(UPDATED_AT.to_owned(), Value::String(now_rfc3339()));
            }
            let encoded = self.encode(&def, &data)?;
            let stored = self.stored_data(&def, &key, &encoded)?;
            let codec::Encoded {
                metadata,
                body,
                overflowed,
                truncated,
            } = encoded;
            match self
                .store()
                .update(&key, metadata, body, &before.etag)
                .await
            {
                Ok(etag) => {
                    let after = Record {
                        id: id.clone(),
                        data: stored.unwrap_or(data),
                        etag,
                        schema_version: def.version.clone(),
                    };
                    if def.versioning {
                        self.store()
                            .put(
                                &self.historical_key(&id)?,
                                &raw.head.metadata,
                                raw.body.clone(),
                            )
                            .await?;
                    }
                    self.write_references(&def, &id, Some(&before.data), Some(&after.data))
                        .await?;
                    self.report_encoding(&id, overflowed, truncated);
                    self.emit(|| Event::Updated {
                        resource: self.name().to_owned(),
                        before: Arc::new(before.clone()),
                        after: Arc::new(after.clone()),
                    });
                    for (_, h) in hooks.iter() {
                        h.after_update(self.name(), &before, &after).await?;
                    }
                    return Ok(after);
                }
                Err(Error::PreconditionFailed { .. }) if if_match.is_none() => {
                    tracing::debug!(resource = self.name(), id = %id, "update lost a race; retrying");
                    let jitter = rand::random_range(0..=backoff.as_micros() as u64);
                    tokio::time::sleep(Duration::from_micros(jitter)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::PreconditionFailed {
            key: key.to_string(),
        })
    }

    /// Validates, stamps, encodes and conditionally creates a new record, then writes its
    /// partition references, broadcasts it and runs the after-insert hooks. Shared by insert and
    /// by the insert half of an upsert (whose before-hooks already ran).
    async fn create_record(
        &self,
        def: &Definition,
        id: String,
        mut data: Document,
    ) -> Result<Record> {
        let key = self.record_key(&id)?;
        data = def.schema.validated(data, Mode::Full)?;
        if def.timestamps {
            let now = Value::String(now_rfc3339());
            data.insert(CREATED_AT.to_owned(), now.clone());
            data.insert(UPDATED_AT.to_owned(), now);
        }
        let encoded = self.encode(def, &data)?;
        let stored = self.stored_data(def, &key, &encoded)?;
        let codec::Encoded {
            metadata,
            body,
            overflowed,
            truncated,
        } = encoded;
        let etag = self.store().create(&key, metadata, body).await?;
        let record = Record {
            id,
            data: stored.unwrap_or(data),
            etag,
            schema_version: def.version.clone(),
        };
        self.write_references(def, &record.id, None, Some(&record.data))
            .await?;
        self.report_encoding(&record.id, overflowed, truncated);
        self.emit(|| Event::Inserted {
            resource: self.name().to_owned(),
            record: Arc::new(record.clone()),
        });
        for (_, h) in self.inner.hooks.snapshot().iter() {
            h.after_insert(self.name(), &record).await?;
        }
        Ok(record)
    }

    async fn do_delete(&self, id: &str) -> Result<()> {
        let hooks = self.inner.hooks.snapshot();
        for (_, h) in hooks.iter() {
            h.before_delete(self.name(), id).await?;
        }
        let def = self.current();
        let key = self.record_key(id)?;
        // The record is read only when something needs it: partition references to remove, a
        // version to keep, or hooks that want it.
        let read_first = !def.partitions.is_empty()
            || def.versioning
            || hooks.iter().any(|(_, h)| h.wants_deleted_record());
        let existing = if !read_first {
            None
        } else {
            match self.read(id).await {
                Ok(found) => Some(found),
                Err(Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        if def.versioning
            && let Some((_, raw)) = &existing
        {
            self.store()
                .put(
                    &self.historical_key(id)?,
                    &raw.head.metadata,
                    raw.body.clone(),
                )
                .await?;
        }
        self.store().delete(&key).await?;
        let record = existing.map(|(r, _)| r);
        if let Some(record) = &record {
            self.write_references(&def, id, Some(&record.data), None)
                .await?;
        }
        self.emit(|| Event::Deleted {
            resource: self.name().to_owned(),
            id: id.to_owned(),
            record: record.clone().map(Arc::new),
        });
        for (_, h) in hooks.iter() {
            h.after_delete(self.name(), id, record.as_ref()).await?;
        }
        Ok(())
    }

    /// Writes the references of `after` and removes those of `before` that changed.
    async fn write_references(
        &self,
        def: &Definition,
        id: &str,
        before: Option<&Document>,
        after: Option<&Document>,
    ) -> Result<()> {
        if def.partitions.is_empty() {
            return Ok(());
        }
        if let ([partition], None, Some(after)) = (def.partitions.as_slice(), before, after) {
            // A new record in one partition (the usual insert): one reference, written directly.
            let key = partition.reference(self.name(), id, after)?;
            self.store()
                .put(&key, Metadata::new(), Bytes::new())
                .await?;
            return Ok(());
        }
        Box::pin(self.move_references(def, id, before, after)).await
    }

    /// [`Resource::write_references`] in general: several partitions, or a record that moves.
    async fn move_references(
        &self,
        def: &Definition,
        id: &str,
        before: Option<&Document>,
        after: Option<&Document>,
    ) -> Result<()> {
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for partition in &def.partitions {
            let old = before
                .map(|d| partition.reference(self.name(), id, d))
                .transpose()?;
            let new = after
                .map(|d| partition.reference(self.name(), id, d))
                .transpose()?;
            if old == new {
                continue;
            }
            puts.extend(new);
            deletes.extend(old);
        }
        let empty = Metadata::new();
        futures::future::try_join_all(
            puts.iter()
                .map(|k| self.store().put(k, &empty, Bytes::new())),
        )
        .await?;
        futures::future::try_join_all(deletes.iter().map(|k| self.store().delete(k))).await?;
        Ok(())
    }

    fn listing_prefix(&self, partition: Option<&(String, BTreeMap<String, Value>)>) -> Result<Key> {
        let Some((name, values)) = partition else {
            return Ok(self.inner.data_prefix.clone());
        };
        let def = self.current();
        let Some(p) = def.partitions.iter().find(|p| p.name() == name) else {
            return Err(Error::BadSchema {
                attribute: String::new(),
                rule: format!("partition {name}"),
                reason: format!(
                    "resource {} has no partition {name}; it has: {}",
                    self.name(),
                    self.partitions().join(", ")
                ),
            });
        };
        p.prefix_for(self.name(), values)?
            .ok_or_else(|| Error::BadSchema {
                attribute: String::new(),
                rule: format!("partition {name}"),
                reason: format!(
                    "give a value for every field of the partition: {}",
                    p.fields().join(", ")
                ),
            })
    }

    async fn ids(
        &self,
        partition: Option<&(String, BTreeMap<String, Value>)>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let prefix = self.listing_prefix(partition)?;
        let stream = self.store().list(Some(&prefix));
        let stream = match limit {
            Some(n) => stream.take(n).boxed(),
            None => stream,
        };
        stream
            .map_ok(|entry| id_of(&entry.key))
            .try_filter_map(|id| futures::future::ready(Ok(id)))
            .try_collect()
            .await
    }

    /// Reads records by id, in order; records deleted meanwhile are skipped, and for a partition
    /// listing, records that no longer belong to it (stale references) are skipped too.
    async fn read_all(
        &self,
        ids: &[String],
        partition: Option<&(String, BTreeMap<String, Value>)>,
    ) -> Result<Vec<Record>> {
        let def = self.current();
        let check = partition.and_then(|(name, values)| {
            def.partitions
                .iter()
                .find(|p| p.name() == name)
                .map(|p| (p.clone(), values.clone()))
        });
        let reads: Vec<_> = ids.iter().map(|id| self.read(id)).collect();
        let results: Vec<Result<(Record, crate::Object)>> = futures::stream::iter(reads)
            .buffered(DEFAULT_CONCURRENCY)
            .collect()
            .await;
        let mut records = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok((record, _)) => {
                    if let Some((p, values)) = &check
                        && !p.matches(&record.data, values)
                    {
                        continue;
                    }
                    records.push(record);
                }
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(records)
    }

    async fn after_list(&self, records: &mut Vec<Record>) -> Result<()> {
        for (_, h) in self.inner.hooks.snapshot().iter() {
            h.after_list(self.name(), records).await?;
        }
        Ok(())
    }

    async fn do_page(&self, size: usize, cursor: Option<String>) -> Result<PageResult> {
        let start_after = match cursor {
            Some(cursor) => {
                let bad = || Error::BadKey {
                    key: cursor.clone(),
                    reason: crate::error::KeyProblem::Invalid(
                        "not a page cursor of this resource".to_owned(),
                    ),
                };
                let bytes = URL_SAFE_NO_PAD
                    .decode(cursor.as_bytes())
                    .map_err(|_| bad())?;
                let id = String::from_utf8(bytes).map_err(|_| bad())?;
                Some(self.record_key(&id)?)
            }
            None => None,
        };
        let page = self
            .store()
            .list_page(Some(&self.inner.data_prefix), start_after.as_ref(), size)
            .await?;
        let ids: Vec<String> = page.entries.iter().filter_map(|e| id_of(&e.key)).collect();
        let mut items = self.read_all(&ids, None).await?;
        self.after_list(&mut items).await?;
        let next_cursor = page
            .next_start_after
            .as_ref()
            .and_then(id_of)
            .map(|id| URL_SAFE_NO_PAD.encode(id.as_bytes()));
        Ok(PageResult {
            items,
            has_more: next_cursor.is_some(),
            next_cursor,
        })
    }

    async fn do_query(&self, filter: &Filter) -> Result<Vec<Record>> {
        let def = self.current();
        let exact = filter.exact_values();
        // The partition with the most fields that the filter fixes entirely.
        let partition = def
            .partitions
            .iter()
            .filter(|p| p.fields().iter().all(|f| exact.contains_key(f)))
            .max_by_key(|p| p.fields().len())
            .map(|p| {
                let values: BTreeMap<String, Value> = p
                    .fields()
                    .iter()
                    .filter_map(|f| exact.get(f).map(|v| (f.clone(), v.clone())))
                    .collect();
                (p.name().to_owned(), values)
            });
        let ids = self.ids(partition.as_ref(), None).await?;
        let mut records: Vec<Record> = self
            .read_all(&ids, partition.as_ref())
            .await?
            .into_iter()
            .filter(|r| filter.matches(r))
            .collect();
        self.after_list(&mut records).await?;
        Ok(records)
    }

    fn encode(&self, def: &Definition, data: &Document) -> Result<codec::Encoded> {
        if !def.has_secrets {
            return codec::encode(
                data,
                &def.fields,
                def.behavior,
                &[("_v", def.version.clone())],
            );
        }
        let mut stored = data.clone();
        if let Some(key) = &self.inner.shared.secret {
            secret::encrypt_fields(&def.schema, &mut stored, key)?;
        } else {
            return Err(Error::Refused {
                operation: "write",
                reason: format!(
                    "resource {} has secret attributes but the database has no passphrase",
                    self.name()
                ),
            });
        }
        codec::encode(
            &stored,
            &def.fields,
            def.behavior,
            &[("_v", def.version.clone())],
        )
    }

    fn decode(
        &self,
        def: &Definition,
        key: &Key,
        metadata: &Metadata,
        body: &[u8],
    ) -> Result<(Document, String)> {
        let decoded = codec::decode(metadata, body, &def.fields, key.as_str())?;
        let mut doc = decoded.doc;
        if def.has_secrets {
            match &self.inner.shared.secret {
                Some(k) => secret::decrypt_fields(&def.schema, &mut doc, k)?,
                None => {
                    return Err(Error::Refused {
                        operation: "read",
                        reason: format!(
                            "resource {} has secret attributes but the database has no passphrase",
                            self.name()
                        ),
                    });
                }
            }
        }
        let version = decoded
            .system
            .get("_v")
            .cloned()
            .unwrap_or_else(|| def.version.clone());
        Ok((doc, version))
    }

    /// What a read of `encoded` will give back, when that differs from the data written (fields
    /// truncated or dropped by [`Behavior::TruncateData`]); `None` when it is the data as given.
    fn stored_data(
        &self,
        def: &Definition,
        key: &Key,
        encoded: &codec::Encoded,
    ) -> Result<Option<Document>> {
        if encoded.truncated.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            self.decode(def, key, &encoded.metadata, &encoded.body)?.0,
        ))
    }

    fn report_encoding(&self, id: &str, overflowed: bool, truncated: Vec<String>) {
        if overflowed {
            self.emit(|| Event::MetadataOverflow {
                resource: self.name().to_owned(),
                id: id.to_owned(),
            });
        }
        if !truncated.is_empty() {
            self.emit(|| Event::Truncated {
                resource: self.name().to_owned(),
                id: id.to_owned(),
                fields: truncated,
            });
        }
    }
}

/// The id in a record or reference key (`…/id=<id>`).
fn id_of(key: &Key) -> Option<String> {
    key.last_part().strip_prefix("id=").map(str::to_owned)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn partition_values(values: &impl Serialize) -> Result<BTreeMap<String, Value>> {
    Ok(to_document(values)?.into_iter().collect())
}

fn expect_record(outcome: Outcome) -> Result<Record> {
    match outcome {
        Outcome::Record(r) => Ok(r),
        other => Err(unexpected("record", &other)),
    }
}

fn expect_records(outcome: Outcome) -> Result<Vec<Record>> {
    match outcome {
        Outcome::Records(r) => Ok(r),
        other => Err(unexpected("records", &other)),
    }
}

fn unexpected(wanted: &str, got: &Outcome) -> Error {
    Error::Refused {
        operation: "middleware",
        reason: format!("a middleware answered {got:?} where {wanted} was expected"),
    }
}

#[allow(dead_code)]
fn _assert_send(r: &Resource) {
    fn is_send<T: Send>(_: T) {}
    is_send(r.get("x"));
    is_send(r.insert(Map::new()));
    is_send(r.update("x", Map::new()));
    is_send(r.list());
    is_send(r.delete_all());
    is_send(r.insert_many(vec![Map::new()]));
    is_send(r.get_many(&["a"]));
    is_send(r.query(Filter::eq("a", 1)));
    is_send(r.page(Page::size(1)));
    is_send(r.upsert("x", Map::new()));
    is_send(r.delete("x"));
}

#[allow(dead_code)]
fn _assert_db_send(db: &crate::Database) {
    fn is_send<T: Send>(_: T) {}
    is_send(db.create_resource(ResourceConfig::new("x")));
    is_send(db.reload());
    is_send(crate::Database::connect("memory://x"));
}
