//! Typed configuration of the plugin, validated when it is built.

use std::collections::BTreeMap;
use std::time::Duration;

use s3db_core::plugin::{is_internal_resource, slugify};
use serde::{Deserialize, Serialize};

/// Default plugin name.
pub const DEFAULT_NAME: &str = "fulltext";
/// Default minimum word length (characters), as in the original.
pub const DEFAULT_MIN_WORD_LENGTH: usize = 3;
/// Default maximum number of results of a search, as in the original (`maxResults`).
pub const DEFAULT_MAX_RESULTS: usize = 100;
/// Default number of characters of a term that name its postings shard.
pub const DEFAULT_SHARD_PREFIX: usize = 2;
/// Default number of document-length shards per resource.
pub const DEFAULT_LENGTH_SHARDS: usize = 16;
/// Default age a pending marker must reach before recovery treats its write as crashed.
pub const DEFAULT_RECOVERY_GRACE: Duration = Duration::from_secs(60);
/// Largest accepted shard prefix.
pub const MAX_SHARD_PREFIX: usize = 8;
/// Largest accepted number of length shards.
pub const MAX_LENGTH_SHARDS: usize = 1024;

/// A configuration the plugin refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FullTextConfigError {
    /// No resource to index.
    #[error("give at least one resource to index with .resource(name, fields)")]
    NoResources,
    /// An empty resource name.
    #[error("a resource name is empty")]
    EmptyResource,
    /// An internal resource (`plg_…`): plugins' own resources are never indexed.
    #[error("{resource} is a plugin's internal resource; those are never indexed")]
    InternalResource {
        /// The resource.
        resource: String,
    },
    /// A resource configured twice.
    #[error("resource {resource} is configured twice; give all its fields in one call")]
    DuplicateResource {
        /// The resource.
        resource: String,
    },
    /// A resource without fields.
    #[error("resource {resource}: give at least one field to index")]
    NoFields {
        /// The resource.
        resource: String,
    },
    /// An empty field name (or an empty part of a dotted path).
    #[error("resource {resource}: field {field:?} is empty or has an empty part")]
    BadField {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
    },
    /// A field given twice.
    #[error("resource {resource}: field {field} is given twice")]
    DuplicateField {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
    },
    /// A weight that is not a finite number above zero.
    #[error(
        "resource {resource}: the weight of field {field} must be finite and above zero, not {weight}"
    )]
    BadWeight {
        /// The resource.
        resource: String,
        /// The field.
        field: String,
        /// The weight given.
        weight: f64,
    },
    /// A minimum word length of zero.
    #[error("min_word_length must be at least 1")]
    ZeroMinWordLength,
    /// A maximum number of results of zero.
    #[error("max_results must be at least 1")]
    ZeroMaxResults,
    /// A shard prefix outside `1..=MAX_SHARD_PREFIX`.
    #[error("shard_prefix must be between 1 and {MAX_SHARD_PREFIX}, not {0}")]
    BadShardPrefix(usize),
    /// A number of length shards outside `1..=MAX_LENGTH_SHARDS`.
    #[error("length_shards must be between 1 and {MAX_LENGTH_SHARDS}, not {0}")]
    BadLengthShards(usize),
    /// A plugin name with no letter or digit.
    #[error("plugin name {name:?} needs at least one ASCII letter or digit")]
    BadName {
        /// The name.
        name: String,
    },
}

impl From<FullTextConfigError> for s3db_core::Error {
    fn from(e: FullTextConfigError) -> Self {
        s3db_core::Error::Refused {
            operation: "fulltext configuration",
            reason: e.to_string(),
        }
    }
}

/// The indexed fields of one resource, with their weights (default 1).
///
/// A field is an attribute name or a dotted path into nested objects (`address.city`). Strings
/// are indexed as text; numbers and booleans by their JSON text; arrays and objects by every
/// value inside them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedResource {
    pub(crate) name: String,
    pub(crate) fields: Vec<(String, f64)>,
}

impl IndexedResource {
    /// A resource with no field yet.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            fields: Vec::new(),
        }
    }

    /// Indexes `field` with weight 1.
    #[must_use]
    pub fn field(self, field: impl Into<String>) -> Self {
        self.weighted_field(field, 1.0)
    }

    /// Indexes `field` with `weight` (a match there counts `weight` times as much).
    #[must_use]
    pub fn weighted_field(mut self, field: impl Into<String>, weight: f64) -> Self {
        self.fields.push((field.into(), weight));
        self
    }

    /// The resource's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fields and their weights, in the order given.
    #[must_use]
    pub fn fields(&self) -> &[(String, f64)] {
        &self.fields
    }

    pub(crate) fn weight(&self, field: &str) -> f64 {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map_or(1.0, |(_, w)| *w)
    }

    fn validate(&self) -> Result<(), FullTextConfigError> {
        let resource = self.name.clone();
        if self.name.is_empty() {
            return Err(FullTextConfigError::EmptyResource);
        }
        if is_internal_resource(&self.name) {
            return Err(FullTextConfigError::InternalResource { resource });
        }
        if self.fields.is_empty() {
            return Err(FullTextConfigError::NoFields { resource });
        }
        for (i, (field, weight)) in self.fields.iter().enumerate() {
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(FullTextConfigError::BadField {
                    resource,
                    field: field.clone(),
                });
            }
            if self.fields[..i].iter().any(|(f, _)| f == field) {
                return Err(FullTextConfigError::DuplicateField {
                    resource,
                    field: field.clone(),
                });
            }
            if !weight.is_finite() || *weight <= 0.0 {
                return Err(FullTextConfigError::BadWeight {
                    resource,
                    field: field.clone(),
                    weight: *weight,
                });
            }
        }
        Ok(())
    }
}

/// The validated settings shared by the plugin's parts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) resources: BTreeMap<String, IndexedResource>,
    pub(crate) min_word_length: usize,
    pub(crate) stemming: bool,
    pub(crate) max_results: usize,
    pub(crate) shard_prefix: usize,
    pub(crate) length_shards: usize,
    pub(crate) recovery_grace: Duration,
}

/// Builds a [`crate::FullTextPlugin`]; nothing is checked before [`FullTextBuilder::build`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FullTextBuilder {
    name: String,
    resources: Vec<IndexedResource>,
    min_word_length: usize,
    stemming: bool,
    max_results: usize,
    shard_prefix: usize,
    length_shards: usize,
    recovery_grace: Duration,
}

impl Default for FullTextBuilder {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            resources: Vec::new(),
            min_word_length: DEFAULT_MIN_WORD_LENGTH,
            stemming: false,
            max_results: DEFAULT_MAX_RESULTS,
            shard_prefix: DEFAULT_SHARD_PREFIX,
            length_shards: DEFAULT_LENGTH_SHARDS,
            recovery_grace: DEFAULT_RECOVERY_GRACE,
        }
    }
}

impl FullTextBuilder {
    /// The plugin's name (default [`DEFAULT_NAME`]); its storage slug derives from it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Indexes these fields of `resource`, each with weight 1.
    pub fn resource<S: Into<String>>(
        mut self,
        resource: impl Into<String>,
        fields: impl IntoIterator<Item = S>,
    ) -> Self {
        let indexed = fields
            .into_iter()
            .fold(IndexedResource::new(resource), IndexedResource::field);
        self.resources.push(indexed);
        self
    }

    /// Indexes a resource described with weights.
    pub fn indexed(mut self, resource: IndexedResource) -> Self {
        self.resources.push(resource);
        self
    }

    /// Words shorter than this many characters are not indexed (default
    /// [`DEFAULT_MIN_WORD_LENGTH`]).
    pub fn min_word_length(mut self, chars: usize) -> Self {
        self.min_word_length = chars;
        self
    }

    /// Stems English suffixes (see [`crate::stem`]); off by default.
    pub fn stemming(mut self, on: bool) -> Self {
        self.stemming = on;
        self
    }

    /// The number of results of a search that sets no limit (default [`DEFAULT_MAX_RESULTS`]).
    pub fn max_results(mut self, n: usize) -> Self {
        self.max_results = n;
        self
    }

    /// How many leading characters of a term name its postings shard (default
    /// [`DEFAULT_SHARD_PREFIX`]). More characters: more, smaller shards (less contention between
    /// writers, more requests for short prefix queries).
    pub fn shard_prefix(mut self, chars: usize) -> Self {
        self.shard_prefix = chars;
        self
    }

    /// How many objects hold the documents' field lengths (default [`DEFAULT_LENGTH_SHARDS`]);
    /// a search reads all of them.
    pub fn length_shards(mut self, n: usize) -> Self {
        self.length_shards = n;
        self
    }

    /// How old a pending marker (a write whose index change has not completed) must be before
    /// recovery at start treats its writer as crashed and redoes the change (default
    /// [`DEFAULT_RECOVERY_GRACE`]). Redoing a live writer's change is harmless; the grace only
    /// keeps a starting process from taking over the markers of writes still in flight.
    pub fn recovery_grace(mut self, grace: Duration) -> Self {
        self.recovery_grace = grace;
        self
    }

    /// Checks the configuration and builds the plugin.
    ///
    /// # Errors
    /// A [`FullTextConfigError`] naming what to fix.
    pub fn build(self) -> Result<crate::FullTextPlugin, FullTextConfigError> {
        if slugify(&self.name).is_empty() {
            return Err(FullTextConfigError::BadName { name: self.name });
        }
        if self.resources.is_empty() {
            return Err(FullTextConfigError::NoResources);
        }
        let mut resources = BTreeMap::new();
        for resource in self.resources {
            resource.validate()?;
            if resources.contains_key(&resource.name) {
                return Err(FullTextConfigError::DuplicateResource {
                    resource: resource.name,
                });
            }
            resources.insert(resource.name.clone(), resource);
        }
        if self.min_word_length == 0 {
            return Err(FullTextConfigError::ZeroMinWordLength);
        }
        if self.max_results == 0 {
            return Err(FullTextConfigError::ZeroMaxResults);
        }
        if !(1..=MAX_SHARD_PREFIX).contains(&self.shard_prefix) {
            return Err(FullTextConfigError::BadShardPrefix(self.shard_prefix));
        }
        if !(1..=MAX_LENGTH_SHARDS).contains(&self.length_shards) {
            return Err(FullTextConfigError::BadLengthShards(self.length_shards));
        }
        Ok(crate::FullTextPlugin::from_settings(Settings {
            name: self.name,
            resources,
            min_word_length: self.min_word_length,
            stemming: self.stemming,
            max_results: self.max_results,
            shard_prefix: self.shard_prefix,
            length_shards: self.length_shards,
            recovery_grace: self.recovery_grace,
        }))
    }
}
