#![doc = include_str!("../README.md")]

pub use s3db_core::{
    Behavior, ConnectionString, Database, DatabaseBuilder, Document, ETag, Error, FieldError,
    Filter, Key, ListEntry, ListPage, Metadata, Object, ObjectHead, Page, PageResult, Record,
    RequestKind, RequestStats, Resource, ResourceConfig, Result, Store, TypedResource, codec,
    connection, database, error, key, plugin, resource, schema, secret, store,
};

/// Cache plugin (feature `cache`): read caches with exact invalidation.
#[cfg(feature = "cache")]
pub use s3db_cache as cache;

/// Costs plugin (feature `costs`): S3 costs from the store's request accounting.
#[cfg(feature = "costs")]
pub use s3db_costs as costs;

/// Metrics plugin (feature `metrics`): operation counts, errors, latency, Prometheus text.
#[cfg(feature = "metrics")]
pub use s3db_metrics as metrics;

/// Audit plugin (feature `audit`): a queryable trail of inserts, updates and deletes.
#[cfg(feature = "audit")]
pub use s3db_audit as audit;

/// EventualConsistency plugin (feature `eventual`): transaction-based numeric fields,
/// consolidated exactly once across processes.
#[cfg(feature = "eventual")]
pub use s3db_eventual as eventual;

/// FullText plugin (feature `fulltext`): an incrementally persisted, ranked search index.
#[cfg(feature = "fulltext")]
pub use s3db_fulltext as fulltext;

/// StateMachine plugin (feature `statemachine`): state machines over resources' records.
#[cfg(feature = "statemachine")]
pub use s3db_statemachine as statemachine;

/// Scheduler plugin (feature `scheduler`): cron jobs run once per tick across processes.
#[cfg(feature = "scheduler")]
pub use s3db_scheduler as scheduler;

/// S3Queue plugin (feature `queue`): a durable work queue with exactly-once claims.
#[cfg(feature = "queue")]
pub use s3db_queue as queue;

/// Backup plugin (feature `backup`): full and incremental backups, retention, restore.
#[cfg(feature = "backup")]
pub use s3db_backup as backup;

/// QueueConsumer plugin (feature `queue-consumer`): queue messages applied to resources.
#[cfg(feature = "queue-consumer")]
pub use s3db_queue_consumer as queue_consumer;

/// Replicator plugin (feature `replicator`): writes mirrored to other databases, SQS, webhooks.
#[cfg(feature = "replicator")]
pub use s3db_replicator as replicator;

/// The core crate, for plugin authors and advanced use.
pub use s3db_core as core;

/// The test kit of the core (feature `testing`).
#[cfg(feature = "testing")]
pub use s3db_core::testing;

/// Everything a typical program needs: `use s3db::prelude::*;`.
pub mod prelude {
    pub use s3db_core::plugin::CustomEvent;
    pub use s3db_core::resource::IdStrategy;
    pub use s3db_core::resource::hooks::Event;
    pub use s3db_core::{
        Behavior, ConnectionString, Database, ETag, Error, FieldError, Filter, Key, Metadata,
        Object, Page, Record, RequestKind, Resource, ResourceConfig, Result, Store, TypedResource,
    };
}

/// The repository README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
