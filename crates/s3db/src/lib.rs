#![doc = include_str!("../README.md")]

pub use s3db_core::{
    ConnectionString, ETag, Error, Key, ListEntry, ListPage, Metadata, Object, ObjectHead,
    RequestKind, RequestStats, Result, Store, connection, error, key, store,
};

/// The core crate, for plugin authors and advanced use.
pub use s3db_core as core;

/// The test kit of the core (feature `testing`).
#[cfg(feature = "testing")]
pub use s3db_core::testing;

/// Everything a typical program needs: `use s3db::prelude::*;`.
pub mod prelude {
    pub use s3db_core::{
        ConnectionString, ETag, Error, Key, Metadata, Object, RequestKind, Result, Store,
    };
}

/// The repository README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
