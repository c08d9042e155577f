//! A typed view of a resource for Rust users with structs.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Filter, Resource};
use crate::error::Result;

/// A resource seen through a type `T`: records go in and come out as `T`.
///
/// `T`'s `id` field, if it has one, is the record id.
#[derive(Debug)]
pub struct TypedResource<T> {
    resource: Resource,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedResource<T> {
    fn clone(&self) -> Self {
        Self::new(self.resource.clone())
    }
}

impl<T> TypedResource<T> {
    pub(crate) fn new(resource: Resource) -> Self {
        Self {
            resource,
            _t: PhantomData,
        }
    }

    /// The untyped resource.
    #[must_use]
    pub fn resource(&self) -> &Resource {
        &self.resource
    }
}

impl<T: Serialize + DeserializeOwned> TypedResource<T> {
    /// Inserts a value; returns it as stored (with defaults, id and timestamps filled in).
    ///
    /// # Errors
    /// As [`Resource::insert`], or [`crate::Error::Corrupt`] if the stored record does not fit `T`.
    pub async fn insert(&self, value: &T) -> Result<T> {
        self.resource.insert(value).await?.deserialize()
    }

    /// Reads a value.
    ///
    /// # Errors
    /// As [`Resource::get`].
    pub async fn get(&self, id: &str) -> Result<T> {
        self.resource.get(id).await?.deserialize()
    }

    /// Merges changes (any serializable map-like value) and returns the result.
    ///
    /// # Errors
    /// As [`Resource::update`].
    pub async fn update(&self, id: &str, changes: impl Serialize) -> Result<T> {
        self.resource.update(id, changes).await?.deserialize()
    }

    /// Replaces a value.
    ///
    /// # Errors
    /// As [`Resource::replace`].
    pub async fn replace(&self, id: &str, value: &T) -> Result<T> {
        self.resource.replace(id, value).await?.deserialize()
    }

    /// Every value.
    ///
    /// # Errors
    /// As [`Resource::list`].
    pub async fn list(&self) -> Result<Vec<T>> {
        self.resource
            .list()
            .await?
            .iter()
            .map(super::Record::deserialize)
            .collect()
    }

    /// Values matching a filter.
    ///
    /// # Errors
    /// As [`Resource::query`].
    pub async fn query(&self, filter: Filter) -> Result<Vec<T>> {
        self.resource
            .query(filter)
            .await?
            .iter()
            .map(super::Record::deserialize)
            .collect()
    }

    /// Deletes a value.
    ///
    /// # Errors
    /// As [`Resource::delete`].
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.resource.delete(id).await
    }
}
