#![doc = include_str!("../README.md")]

pub mod codec;
pub mod connection;
pub mod database;
pub mod error;
pub mod key;
pub mod plugin;
pub mod resource;
pub mod schema;
pub mod secret;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use codec::Behavior;
pub use connection::ConnectionString;
pub use database::{Database, DatabaseBuilder};
pub use error::{Error, ErrorKind, FieldError, Result};
pub use key::Key;
pub use resource::{
    Document, Filter, Page, PageResult, Record, Resource, ResourceConfig, ResourceDefinition,
    TypedResource,
};
pub use store::{
    ETag, ListEntry, ListPage, Metadata, Object, ObjectHead, RequestKind, RequestStats, Store,
};
