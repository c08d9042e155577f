#![doc = include_str!("../README.md")]

pub mod connection;
pub mod error;
pub mod key;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use connection::ConnectionString;
pub use error::{Error, FieldError, Result};
pub use key::Key;
pub use store::{
    ETag, ListEntry, ListPage, Metadata, Object, ObjectHead, RequestKind, RequestStats, Store,
};
