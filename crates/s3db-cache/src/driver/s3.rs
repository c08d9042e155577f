//! The s3 driver: entries in the plugin's `PluginStorage`, in the bucket itself, shared by every
//! process, with a TTL.
//!
//! Layout: `resource=<r>/plugin=<slug>/c/<version>/<family…>/<operation>/<params>`. Only counts
//! and id lists are kept here: a cached `get` would cost one GET like the record itself (and
//! records cannot be rebuilt from bytes outside `s3db-core`), while a cached `count` or
//! `list_ids` saves a whole listing. A write drops every entry of its resource here (one LIST
//! of the resource's cache prefix and one DELETE per entry): partition entries are named by a
//! hash, so they cannot be told apart without reading them.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use s3db_core::Key;
use s3db_core::plugin::{Error, PluginContext, PluginStorage, Result, SetOptions, async_trait};

use super::CacheDriver;
use crate::config::S3Config;
use crate::entry::{CacheEntry, ValueKind};
use crate::index::wall_us;
use crate::key::{CacheKey, Family, Invalidation, short_hash};

/// Entries in the bucket under the plugin's slug; shared by all processes.
#[derive(Debug)]
pub struct S3Driver {
    ttl: Option<Duration>,
    attached: RwLock<Option<(PluginStorage, PluginContext)>>,
}

impl S3Driver {
    /// An s3 driver (the configuration is assumed valid); it gets its storage at install.
    #[must_use]
    pub fn new(config: &S3Config) -> Self {
        Self {
            ttl: config.ttl,
            attached: RwLock::new(None),
        }
    }

    fn storage(&self) -> Result<PluginStorage> {
        self.attached
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(s, _)| s.clone())
            .ok_or_else(|| Error::Refused {
                operation: "cache",
                reason: "the s3 cache driver is not installed".to_owned(),
            })
    }

    fn context(&self) -> Option<PluginContext> {
        self.attached
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, cx)| cx.clone())
    }

    fn storage_key(storage: &PluginStorage, key: &CacheKey) -> Result<Key> {
        let family_hash;
        let mut parts: Vec<&str> = vec!["c", key.version()];
        match key.family() {
            Family::Record { id } => {
                family_hash = short_hash(id.as_bytes());
                parts.extend(["rec", family_hash.as_str()]);
            }
            Family::Collection => parts.push("coll"),
            Family::Partition { .. } => {
                // The partition part of the key path is already a hash.
                family_hash = key.path().split('/').nth(3).unwrap_or_default().to_owned();
                parts.extend(["part", family_hash.as_str()]);
            }
        }
        parts.extend([key.operation(), key.params()]);
        storage.key(Some(key.resource()), &parts)
    }
}

#[async_trait]
impl CacheDriver for S3Driver {
    fn describe(&self) -> String {
        "s3".to_owned()
    }

    fn accepts(&self, kind: ValueKind) -> bool {
        matches!(kind, ValueKind::Count | ValueKind::Ids)
    }

    fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    async fn attach(&self, cx: &PluginContext) -> Result<()> {
        *self
            .attached
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some((cx.storage().clone(), cx.clone()));
        Ok(())
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>> {
        let storage = self.storage()?;
        let Some(map) = storage.get(&Self::storage_key(&storage, key)?).await? else {
            return Ok(None);
        };
        Ok(CacheEntry::from_json(map).filter(|e| !e.expired(self.ttl, wall_us())))
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<()> {
        let Some(json) = entry.to_json() else {
            return Ok(());
        };
        let storage = self.storage()?;
        let mut options = SetOptions::new();
        if let Some(ttl) = self.ttl {
            options = options.ttl(ttl);
        }
        storage
            .set(&Self::storage_key(&storage, key)?, &json, options)
            .await?;
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<()> {
        let storage = self.storage()?;
        storage.delete(&Self::storage_key(&storage, key)?).await
    }

    async fn invalidate(&self, invalidation: &Invalidation) -> Result<()> {
        self.storage()?
            .delete_for_resource(invalidation.resource_name())
            .await?;
        Ok(())
    }

    async fn clear(&self, resource: Option<&str>) -> Result<()> {
        let storage = self.storage()?;
        match resource {
            Some(r) => {
                storage.delete_for_resource(r).await?;
            }
            None => {
                let resources = match self.context() {
                    Some(cx) => cx.database()?.resources(),
                    None => Vec::new(),
                };
                storage.delete_all(&resources).await?;
            }
        }
        Ok(())
    }

    async fn detach(&self, _cx: &PluginContext, _purge: bool) -> Result<()> {
        // With purge the framework deletes the plugin's storage; without it, entries stay (and
        // expire by their TTL).
        *self
            .attached
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }
}
