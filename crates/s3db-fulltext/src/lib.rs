#![doc = include_str!("../README.md")]

mod analysis;
mod config;
mod events;
mod hooks;
mod index;
mod layout;
mod search;
mod tokenizer;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};

use s3db_core::plugin::{Error, Plugin, PluginContext, Resource, Result, async_trait};

pub use crate::config::{
    DEFAULT_LENGTH_SHARDS, DEFAULT_MAX_RESULTS, DEFAULT_MIN_WORD_LENGTH, DEFAULT_NAME,
    DEFAULT_RECOVERY_GRACE, DEFAULT_SHARD_PREFIX, FullTextBuilder, FullTextConfigError,
    IndexedResource, MAX_LENGTH_SHARDS, MAX_SHARD_PREFIX,
};
pub use crate::events::FullTextEvent;
pub use crate::search::{BM25_B, BM25_K1, MatchMode, SearchHit, SearchQuery};
pub use crate::tokenizer::{MAX_TERM_CHARS, Tokenizer, stem};

use crate::config::Settings;
use crate::hooks::IndexHooks;
use crate::index::Index;

/// The full-text plugin. Build it with [`FullTextPlugin::builder`]; install it with
/// `Database::use_plugin` or the database builder; find it again with
/// `db.plugin::<FullTextPlugin>()`, or reach one resource's index with
/// [`FullTextExt::fulltext`].
pub struct FullTextPlugin {
    settings: Settings,
    index: RwLock<Option<Arc<Index>>>,
}

impl std::fmt::Debug for FullTextPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullTextPlugin")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What the index of one resource holds.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct IndexStats {
    /// Indexed records.
    pub records: usize,
    /// Distinct terms.
    pub terms: usize,
    /// (term, record) pairs.
    pub postings: usize,
    /// Postings shard objects.
    pub shards: usize,
    /// Average length (in terms) of each indexed field.
    pub average_lengths: BTreeMap<String, f64>,
    /// Writes whose index change has not completed (in flight, or left by a crashed writer).
    pub pending: usize,
}

/// term → record id → field → occurrences: the raw postings, for inspection.
pub type Postings = BTreeMap<String, BTreeMap<String, BTreeMap<String, u32>>>;

impl FullTextPlugin {
    /// A builder with the defaults; add resources with [`FullTextBuilder::resource`].
    pub fn builder() -> FullTextBuilder {
        FullTextBuilder::default()
    }

    pub(crate) fn from_settings(settings: Settings) -> Self {
        Self {
            settings,
            index: RwLock::new(None),
        }
    }

    fn index(&self) -> Result<Arc<Index>> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Error::Refused {
                operation: "fulltext",
                reason: format!("plugin {} is not installed", self.settings.name),
            })
    }

    /// The indexed resources and their fields.
    pub fn resources(&self) -> impl Iterator<Item = &IndexedResource> {
        self.settings.resources.values()
    }

    /// The tokenizer records and queries go through.
    #[must_use]
    pub fn tokenizer(&self) -> Tokenizer {
        Tokenizer::new(self.settings.min_word_length, self.settings.stemming)
    }

    /// Searches `resource`: records matching the query, best first, with their scores.
    ///
    /// # Errors
    /// If the plugin is not installed, the resource or a field is not indexed; storage errors.
    pub async fn search(
        &self,
        resource: &str,
        query: impl Into<SearchQuery>,
    ) -> Result<Vec<SearchHit>> {
        let index = self.index()?;
        index
            .search(resource, &query.into())
            .await
            .map_err(|e| index.error(e))
    }

    /// Empties the index of `resource` and indexes every record again; returns how many.
    ///
    /// # Errors
    /// If the plugin is not installed or the resource is not indexed; storage errors.
    pub async fn rebuild(&self, resource: &str) -> Result<usize> {
        let index = self.index()?;
        index.rebuild(resource).await.map_err(|e| index.error(e))
    }

    /// Empties the index of `resource` (records are untouched; later writes are indexed
    /// again). Returns how many objects were deleted.
    ///
    /// # Errors
    /// If the plugin is not installed or the resource is not indexed; storage errors.
    pub async fn clear(&self, resource: &str) -> Result<u64> {
        let index = self.index()?;
        let deleted = index.clear(resource).await.map_err(|e| index.error(e))?;
        index.emit(&FullTextEvent::Cleared {
            resource: resource.to_owned(),
        });
        Ok(deleted)
    }

    /// Redoes the index changes of writes that did not complete (pending markers at least the
    /// recovery grace old); returns how many records were re-applied. Runs at install too.
    ///
    /// # Errors
    /// If the plugin is not installed or the resource is not indexed; storage errors.
    pub async fn recover(&self, resource: &str) -> Result<usize> {
        let index = self.index()?;
        index
            .recover(resource, self.settings.recovery_grace)
            .await
            .map_err(|e| index.error(e))
    }

    /// What the index of `resource` holds (reads every shard: for monitoring, not hot paths).
    ///
    /// # Errors
    /// If the plugin is not installed or the resource is not indexed; storage errors.
    pub async fn stats(&self, resource: &str) -> Result<IndexStats> {
        let index = self.index()?;
        let run = async {
            index.config(resource)?;
            let lengths = index.all_lengths(resource).await?;
            let shards = index.all_shards(resource).await?;
            let mut stats = IndexStats {
                records: lengths.len(),
                shards: shards.len(),
                pending: index.pending(resource).await?,
                ..IndexStats::default()
            };
            for shard in &shards {
                for docs in shard.values() {
                    stats.terms += 1;
                    stats.postings += docs.as_object().map_or(0, serde_json::Map::len);
                }
            }
            for (field, _) in index.config(resource)?.fields() {
                let total: u64 = lengths
                    .values()
                    .map(|l| u64::from(l.get(field).copied().unwrap_or(0)))
                    .sum();
                #[allow(clippy::cast_precision_loss)]
                let avg = if lengths.is_empty() {
                    0.0
                } else {
                    total as f64 / lengths.len() as f64
                };
                stats.average_lengths.insert(field.clone(), avg);
            }
            Ok(stats)
        };
        run.await.map_err(|e| index.error(e))
    }

    /// The raw postings of `resource` (every term, or only `terms`), for inspection and tests.
    ///
    /// # Errors
    /// If the plugin is not installed or the resource is not indexed; storage errors.
    pub async fn postings(&self, resource: &str, terms: Option<&[&str]>) -> Result<Postings> {
        let index = self.index()?;
        let run = async {
            index.config(resource)?;
            let shards = match terms {
                None => index.all_shards(resource).await?,
                Some(terms) => {
                    let keys: BTreeSet<_> = terms
                        .iter()
                        .map(|t| index.layout.postings(resource, &index.layout.shard_of(t)))
                        .collect::<Result<_>>()?;
                    index
                        .read_shards(&keys.into_iter().collect::<Vec<_>>())
                        .await?
                }
            };
            let mut out = Postings::new();
            for shard in shards {
                for (term, docs) in shard {
                    if terms.is_some_and(|ts| !ts.contains(&term.as_str())) {
                        continue;
                    }
                    let docs = docs
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(id, f)| (id.clone(), index::parse_counts(f)))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.insert(term, docs);
                }
            }
            Ok(out)
        };
        run.await.map_err(|e| index.error(e))
    }
}

/// One resource's index, attached to the resource: `resource.fulltext()`.
#[derive(Clone)]
pub struct ResourceIndex {
    resource: String,
    index: Arc<Index>,
}

impl std::fmt::Debug for ResourceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceIndex")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl ResourceIndex {
    /// Searches the resource (see [`FullTextPlugin::search`]).
    ///
    /// # Errors
    /// As [`FullTextPlugin::search`].
    pub async fn search(&self, query: impl Into<SearchQuery>) -> Result<Vec<SearchHit>> {
        self.index
            .search(&self.resource, &query.into())
            .await
            .map_err(|e| self.index.error(e))
    }

    /// Rebuilds the resource's index (see [`FullTextPlugin::rebuild`]).
    ///
    /// # Errors
    /// As [`FullTextPlugin::rebuild`].
    pub async fn rebuild(&self) -> Result<usize> {
        self.index
            .rebuild(&self.resource)
            .await
            .map_err(|e| self.index.error(e))
    }
}

/// Adds `resource.fulltext()`: the resource's index, when a [`FullTextPlugin`] indexes it.
pub trait FullTextExt {
    /// The resource's index, if a full-text plugin indexes it.
    fn fulltext(&self) -> Option<Arc<ResourceIndex>>;
}

impl FullTextExt for Resource {
    fn fulltext(&self) -> Option<Arc<ResourceIndex>> {
        self.extension::<ResourceIndex>()
    }
}

#[async_trait]
impl Plugin for FullTextPlugin {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        let index = Arc::new(Index::new(
            self.settings.clone(),
            cx.storage().clone(),
            cx.clone(),
        ));
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&index));
        for name in self.settings.resources.keys() {
            let index = Arc::clone(&index);
            let cx2 = cx.clone();
            let installed = cx
                .when_resource(name, move |resource| {
                    let index = Arc::clone(&index);
                    let cx = cx2.clone();
                    async move {
                        cx.add_resource_hooks(
                            &resource,
                            IndexHooks {
                                index: Arc::clone(&index),
                            },
                        );
                        cx.add_resource_extension(
                            &resource,
                            ResourceIndex {
                                resource: resource.name().to_owned(),
                                index: Arc::clone(&index),
                            },
                        );
                        index.ensure(&resource).await.map_err(|e| index.error(e))
                    }
                })
                .await;
            if let Err(e) = installed {
                *self.index.write().unwrap_or_else(PoisonError::into_inner) = None;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ok(())
    }
}
