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

/// The core crate, for plugin authors and advanced use.
pub use s3db_core as core;

/// The test kit of the core (feature `testing`).
#[cfg(feature = "testing")]
pub use s3db_core::testing;

/// Everything a typical program needs: `use s3db::prelude::*;`.
pub mod prelude {
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
