//! The hook bus: typed hook points, middleware around every operation, and events.
//!
//! - **Hooks** ([`ResourceHooks`], [`DatabaseHooks`]): one trait per level with a no-op default
//!   for every point; implement only what you need. Many hook sets per resource, run in
//!   registration order. A before-hook may change the data or abort with `Err` (nothing is
//!   written); an after-hook observes the result (its error is returned to the caller, but the
//!   write has happened).
//! - **Middleware** ([`Middleware`]): wraps every single-record and listing operation, tower-style:
//!   call `next.run(op)` to go on, or answer without touching storage (a cache), or time it (metrics).
//! - **Events** ([`Event`]): a broadcast; slow subscribers lose old events ([`tokio::sync::broadcast`]
//!   semantics) and never block writes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::Value;

use super::record::{Document, Record};
use super::{Filter, PageResult, Resource, ResourceConfig};
use crate::database::Database;
use crate::error::Result;
use crate::store::ETag;

/// Identifies a registered hook set or middleware, to remove it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HookId(u64);

impl HookId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        HookId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A snapshot of a [`Registry`]: the registered items in order.
pub(crate) type Entries<T> = Arc<[(HookId, Arc<T>)]>;

/// An ordered list of registered hooks (or middleware), cheap to snapshot on every operation.
pub(crate) struct Registry<T: ?Sized> {
    items: RwLock<Entries<T>>,
}

impl<T: ?Sized> Default for Registry<T> {
    fn default() -> Self {
        Self {
            items: RwLock::new(Arc::from(Vec::new())),
        }
    }
}

impl<T: ?Sized> Registry<T> {
    pub(crate) fn add(&self, item: Arc<T>) -> HookId {
        let id = HookId::next();
        let mut items = self
            .items
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next: Vec<_> = items.iter().cloned().collect();
        next.push((id, item));
        *items = Arc::from(next);
        id
    }

    pub(crate) fn remove(&self, id: HookId) -> bool {
        let mut items = self
            .items
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next: Vec<_> = items.iter().filter(|(i, _)| *i != id).cloned().collect();
        let removed = next.len() != items.len();
        *items = Arc::from(next);
        removed
    }

    pub(crate) fn snapshot(&self) -> Entries<T> {
        Arc::clone(
            &self
                .items
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.snapshot().len()
    }
}

/// An insert as before-insert hooks see it: they may change the id or the data.
#[derive(Debug, Clone)]
pub struct InsertOp {
    /// The id asked for, if any (otherwise one is minted after the hooks ran).
    pub id: Option<String>,
    /// The document to insert, before validation.
    pub data: Document,
}

/// The kind of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// Merge the changes into the record; validate the result.
    Update,
    /// Merge the changes; validate only the changed fields.
    Patch,
    /// Replace the whole record.
    Replace,
    /// Replace, or insert if it does not exist.
    Upsert,
}

/// An update as before-update hooks see it: they may change the changes.
#[derive(Debug, Clone)]
pub struct UpdateOp {
    /// The record's id.
    pub id: String,
    /// The changes (for replace and upsert: the whole new document).
    pub changes: Document,
    /// What kind of update.
    pub kind: UpdateKind,
}

/// Hook points of a resource. Every method has a no-op default.
#[async_trait]
pub trait ResourceHooks: Send + Sync + 'static {
    /// Before an insert is validated; change `op` or abort.
    async fn before_insert(&self, _resource: &str, _op: &mut InsertOp) -> Result<()> {
        Ok(())
    }
    /// After a record was inserted.
    async fn after_insert(&self, _resource: &str, _record: &Record) -> Result<()> {
        Ok(())
    }
    /// Before an update (update, patch, replace, upsert) is applied; change `op` or abort.
    async fn before_update(&self, _resource: &str, _op: &mut UpdateOp) -> Result<()> {
        Ok(())
    }
    /// After a record was updated.
    async fn after_update(&self, _resource: &str, _before: &Record, _after: &Record) -> Result<()> {
        Ok(())
    }
    /// Before a record is deleted; abort with `Err` to keep it.
    async fn before_delete(&self, _resource: &str, _id: &str) -> Result<()> {
        Ok(())
    }
    /// Whether [`ResourceHooks::after_delete`] needs the deleted record. When any hooks of the
    /// resource say so, a delete reads the record first (one GET, past every middleware) and
    /// hands it over, as it always does for resources with partitions or versioning; a delete of
    /// a record that does not exist then writes nothing and runs no after-hook. Default `false`.
    fn wants_deleted_record(&self) -> bool {
        false
    }
    /// After a record was deleted (`record` is what was deleted, when it was read: always for
    /// resources with partitions or versioning, or when some hooks
    /// [want it](ResourceHooks::wants_deleted_record)).
    async fn after_delete(
        &self,
        _resource: &str,
        _id: &str,
        _record: Option<&Record>,
    ) -> Result<()> {
        Ok(())
    }
    /// Before every record of the resource is deleted ([`Resource::delete_all`]); abort with
    /// `Err` to keep them.
    async fn before_delete_all(&self, _resource: &str) -> Result<()> {
        Ok(())
    }
    /// After every record of the resource was deleted (`objects`: records, partition references
    /// and historical versions removed).
    async fn after_delete_all(&self, _resource: &str, _objects: u64) -> Result<()> {
        Ok(())
    }
    /// Before a record is read.
    async fn before_get(&self, _resource: &str, _id: &str) -> Result<()> {
        Ok(())
    }
    /// After a record was read; may change what the caller gets.
    async fn after_get(&self, _resource: &str, _record: &mut Record) -> Result<()> {
        Ok(())
    }
    /// After records were listed, paged or queried; may change what the caller gets.
    async fn after_list(&self, _resource: &str, _records: &mut Vec<Record>) -> Result<()> {
        Ok(())
    }
}

/// Hook points of the database. Every method has a no-op default.
#[async_trait]
pub trait DatabaseHooks: Send + Sync + 'static {
    /// Before the database connects (only hooks given to the builder see this); abort with `Err`.
    async fn before_connect(&self, _conn: &crate::ConnectionString) -> Result<()> {
        Ok(())
    }
    /// After the database connected (hooks given to the builder see this).
    async fn after_connect(&self, _db: &Database) -> Result<()> {
        Ok(())
    }
    /// Before a resource is created; change the definition or abort.
    async fn before_create_resource(&self, _config: &mut ResourceConfig) -> Result<()> {
        Ok(())
    }
    /// After a resource was created (or opened again with the same definition).
    async fn after_create_resource(&self, _resource: &Resource) -> Result<()> {
        Ok(())
    }
    /// Before the database disconnects.
    async fn before_disconnect(&self, _db: &Database) -> Result<()> {
        Ok(())
    }
    /// After the database disconnected.
    async fn after_disconnect(&self, _db: &Database) -> Result<()> {
        Ok(())
    }
}

/// An operation as middleware sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Operation {
    /// Insert a document (id optional).
    Insert {
        /// Requested id.
        id: Option<String>,
        /// The document.
        data: Document,
    },
    /// Read one record.
    Get {
        /// Record id.
        id: String,
    },
    /// Whether a record exists.
    Exists {
        /// Record id.
        id: String,
    },
    /// Update, patch, replace or upsert one record.
    Update {
        /// Record id.
        id: String,
        /// Changes (or the whole document for replace/upsert).
        changes: Document,
        /// Which kind.
        kind: UpdateKind,
        /// For `update_if_match`: the ETag the caller read.
        if_match: Option<ETag>,
    },
    /// Delete one record.
    Delete {
        /// Record id.
        id: String,
    },
    /// Delete every record of the resource (refused when it is paranoid).
    DeleteAll,
    /// List records (of one partition, if given).
    List {
        /// Partition name and values of all its fields.
        partition: Option<(String, BTreeMap<String, Value>)>,
        /// At most this many.
        limit: Option<usize>,
    },
    /// List ids (of one partition, if given).
    ListIds {
        /// Partition name and values.
        partition: Option<(String, BTreeMap<String, Value>)>,
        /// At most this many.
        limit: Option<usize>,
    },
    /// Count records (of one partition, if given).
    Count {
        /// Partition name and values.
        partition: Option<(String, BTreeMap<String, Value>)>,
    },
    /// One page of records.
    Page {
        /// Page size.
        size: usize,
        /// Cursor from the previous page.
        cursor: Option<String>,
    },
    /// Records matching a filter.
    Query {
        /// The filter.
        filter: Filter,
    },
}

impl Operation {
    /// A short name (`insert`, `get`, `update`, …), for metrics and logs.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Insert { .. } => "insert",
            Operation::Get { .. } => "get",
            Operation::Exists { .. } => "exists",
            Operation::Update { kind, if_match, .. } => match (kind, if_match) {
                (_, Some(_)) => "update_if_match",
                (UpdateKind::Update, None) => "update",
                (UpdateKind::Patch, None) => "patch",
                (UpdateKind::Replace, None) => "replace",
                (UpdateKind::Upsert, None) => "upsert",
            },
            Operation::Delete { .. } => "delete",
            Operation::DeleteAll => "delete_all",
            Operation::List { .. } => "list",
            Operation::ListIds { .. } => "list_ids",
            Operation::Count { .. } => "count",
            Operation::Page { .. } => "page",
            Operation::Query { .. } => "query",
        }
    }

    /// Whether the operation writes.
    #[must_use]
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Operation::Insert { .. }
                | Operation::Update { .. }
                | Operation::Delete { .. }
                | Operation::DeleteAll
        )
    }
}

/// What an operation returned.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// One record (insert, get, update).
    Record(Record),
    /// Several records (list, query).
    Records(Vec<Record>),
    /// Ids (list_ids).
    Ids(Vec<String>),
    /// A count (count; for delete_all, the objects deleted).
    Count(u64),
    /// Whether something exists.
    Exists(bool),
    /// A page.
    Page(PageResult),
    /// A delete happened.
    Deleted,
}

/// Wraps operations of a resource.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Handles `op`: usually `next.run(op).await`, with work before and after.
    async fn handle(&self, resource: &Resource, op: Operation, next: Next<'_>) -> Result<Outcome>;
}

/// The rest of the middleware chain.
pub struct Next<'a> {
    pub(crate) resource: &'a Resource,
    pub(crate) rest: &'a [(HookId, Arc<dyn Middleware>)],
}

impl Next<'_> {
    /// Runs the rest of the chain, ending with the operation itself.
    ///
    /// # Errors
    /// Whatever the operation or a middleware returns.
    pub async fn run(self, op: Operation) -> Result<Outcome> {
        match self.rest.split_first() {
            Some(((_, first), rest)) => {
                let next = Next {
                    resource: self.resource,
                    rest,
                };
                first.handle(self.resource, op, next).await
            }
            None => self.resource.execute(op).await,
        }
    }
}

/// Something that happened, broadcast to subscribers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A record was inserted.
    Inserted {
        /// Resource name.
        resource: String,
        /// The new record.
        record: Arc<Record>,
    },
    /// A record was updated.
    Updated {
        /// Resource name.
        resource: String,
        /// The record before.
        before: Arc<Record>,
        /// The record after.
        after: Arc<Record>,
    },
    /// A record was deleted.
    Deleted {
        /// Resource name.
        resource: String,
        /// Its id.
        id: String,
        /// The record, when it was read before deleting.
        record: Option<Arc<Record>>,
    },
    /// Every record of a resource was deleted ([`Resource::delete_all`]).
    AllDeleted {
        /// Resource name.
        resource: String,
        /// Objects deleted: records, partition references and historical versions.
        objects: u64,
    },
    /// A `user-managed` record did not fit in metadata and went to the body.
    MetadataOverflow {
        /// Resource name.
        resource: String,
        /// Record id.
        id: String,
    },
    /// A `truncate-data` record lost data to fit in metadata.
    Truncated {
        /// Resource name.
        resource: String,
        /// Record id.
        id: String,
        /// Attributes truncated or dropped.
        fields: Vec<String>,
    },
    /// A resource was created (or a new version of it).
    ResourceCreated {
        /// Resource name.
        resource: String,
        /// Its schema version.
        version: String,
    },
    /// The database connected.
    Connected,
    /// The database disconnected.
    Disconnected,
    /// Something happened to or in a plugin.
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// What happened.
        event: PluginEvent,
    },
}

/// Lifecycle steps of a plugin, and its own events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PluginEvent {
    /// About to install.
    BeforeInstall,
    /// Installed.
    Installed,
    /// About to start.
    BeforeStart,
    /// Started.
    Started,
    /// About to stop.
    BeforeStop,
    /// Stopped.
    Stopped,
    /// About to uninstall.
    BeforeUninstall,
    /// Uninstalled.
    Uninstalled,
    /// Its data was purged: this many objects were deleted.
    DataPurged {
        /// Objects deleted.
        deleted: u64,
    },
    /// An event of the plugin's own.
    Custom {
        /// Event name, e.g. `cache.hit`.
        name: String,
        /// Details.
        payload: Value,
    },
}

impl Event {
    /// The resource the event is about, if any.
    #[must_use]
    pub fn resource(&self) -> Option<&str> {
        match self {
            Event::Inserted { resource, .. }
            | Event::Updated { resource, .. }
            | Event::Deleted { resource, .. }
            | Event::AllDeleted { resource, .. }
            | Event::MetadataOverflow { resource, .. }
            | Event::Truncated { resource, .. }
            | Event::ResourceCreated { resource, .. } => Some(resource),
            Event::Connected | Event::Disconnected | Event::Plugin { .. } => None,
        }
    }
}
