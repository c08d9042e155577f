//! The filesystem driver: one file per entry in a folder, an in-memory index rebuilt from the
//! folder at install, least-recently-used eviction past a maximum size.
//!
//! Files are `<sha256 of the key>.entry`, JSON `{format, key, entry}`, written to a temporary
//! file and renamed, so a crash never leaves half an entry. The folder belongs to one process
//! at a time: entries another process writes into it are seen at the next install.

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use s3db_core::plugin::{PluginContext, Result, async_trait};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::book::ResourceBook;
use super::{CacheDriver, io_error};
use crate::config::FilesystemConfig;
use crate::entry::{CacheEntry, ValueKind};
use crate::index::wall_us;
use crate::key::{CacheKey, Invalidation, full_hash};

const EXTENSION: &str = "entry";
const TEMP_EXTENSION: &str = "tmp";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct FileBody {
    format: u32,
    key: CacheKey,
    entry: Map<String, Value>,
}

#[derive(Debug, Clone)]
struct Indexed {
    key: CacheKey,
    file: String,
    size: u64,
    tick: u64,
}

#[derive(Debug, Default)]
struct FsIndex {
    entries: HashMap<String, Indexed>,
    lru: BTreeMap<u64, String>,
    by_resource: HashMap<String, ResourceBook>,
    total: u64,
    next_tick: u64,
    evictions: HashMap<String, u64>,
}

impl FsIndex {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    fn insert(&mut self, mut item: Indexed) {
        self.remove(item.key.path());
        item.tick = self.tick();
        self.lru.insert(item.tick, item.key.path().to_owned());
        if let Some(book) = self.by_resource.get_mut(item.key.resource()) {
            book.add(&item.key);
        } else {
            let mut book = ResourceBook::default();
            book.add(&item.key);
            self.by_resource
                .insert(item.key.resource().to_owned(), book);
        }
        self.total += item.size;
        self.entries.insert(item.key.path().to_owned(), item);
    }

    fn remove(&mut self, path: &str) -> Option<Indexed> {
        let item = self.entries.remove(path)?;
        self.lru.remove(&item.tick);
        if let Some(book) = self.by_resource.get_mut(item.key.resource()) {
            book.remove(&item.key);
        }
        self.total = self.total.saturating_sub(item.size);
        Some(item)
    }

    fn touch(&mut self, path: &str) -> Option<String> {
        let tick = self.tick();
        let item = self.entries.get_mut(path)?;
        self.lru.remove(&item.tick);
        item.tick = tick;
        self.lru.insert(tick, path.to_owned());
        Some(item.file.clone())
    }

    /// Removes least recently used entries until the total fits; returns their files.
    fn evict_to(&mut self, max: u64) -> Vec<String> {
        let mut files = Vec::new();
        while self.total > max {
            let Some((_, path)) = self.lru.pop_first() else {
                break;
            };
            if let Some(item) = self.remove(&path) {
                *self
                    .evictions
                    .entry(item.key.resource().to_owned())
                    .or_default() += 1;
                files.push(item.file);
            }
        }
        files
    }
}

/// Entries as files in a folder; survives restarts. Holds every kind of answer: records, lists
/// of records and pages serialized as JSON, counts, ids, existence and "not found".
#[derive(Debug)]
pub struct FilesystemDriver {
    dir: PathBuf,
    max_bytes: u64,
    ttl: Option<Duration>,
    index: Mutex<FsIndex>,
    evictions: AtomicU64,
}

impl FilesystemDriver {
    /// A filesystem driver (the configuration is assumed valid); nothing is read or written
    /// before install.
    #[must_use]
    pub fn new(config: &FilesystemConfig) -> Self {
        Self {
            dir: config.path.clone(),
            max_bytes: config.max_bytes,
            ttl: config.ttl,
            index: Mutex::new(FsIndex::default()),
            evictions: AtomicU64::new(0),
        }
    }

    /// The folder.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// How many entries and bytes it holds.
    #[must_use]
    pub fn usage(&self) -> (usize, u64) {
        let index = self.lock();
        (index.entries.len(), index.total)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FsIndex> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file_of(key: &CacheKey) -> String {
        format!("{}.{EXTENSION}", full_hash(key.path().as_bytes()))
    }

    fn describe_path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    async fn delete_files(&self, files: Vec<String>) -> Result<()> {
        let mut first_error = None;
        for file in files {
            match tokio::fs::remove_file(self.dir.join(&file)).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(io_error(
                        "cache delete",
                        self.describe_path(&file),
                        e,
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes from the index the keys `take` picks from the resource's book (or every key when
    /// `resource` is `None`) and deletes their files.
    async fn drop_keys(
        &self,
        resource: Option<&str>,
        take: impl FnOnce(&mut ResourceBook, &mut Vec<String>),
    ) -> Result<()> {
        let files: Vec<String> = {
            let mut index = self.lock();
            let paths: Vec<String> = match resource {
                Some(r) => {
                    let mut paths = Vec::new();
                    if let Some(book) = index.by_resource.get_mut(r) {
                        take(book, &mut paths);
                    }
                    paths
                }
                None => index.entries.keys().cloned().collect(),
            };
            paths
                .iter()
                .filter_map(|p| index.remove(p).map(|item| item.file))
                .collect()
        };
        self.delete_files(files).await
    }

    /// Reads every entry file of the folder into the index, oldest first; drops corrupt and
    /// expired ones and leftovers of interrupted writes.
    async fn rebuild(&self) -> Result<()> {
        let dir_name = self.dir.display().to_string();
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_error("cache folder", dir_name.clone(), e))?;
        let mut reader = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(|e| io_error("cache folder", dir_name.clone(), e))?;
        let mut found: Vec<(SystemTime, Indexed)> = Vec::new();
        let mut junk = Vec::new();
        let now = wall_us();
        while let Some(item) = reader
            .next_entry()
            .await
            .map_err(|e| io_error("cache folder", dir_name.clone(), e))?
        {
            let name = item.file_name().to_string_lossy().into_owned();
            let Some(ext) = Path::new(&name).extension().and_then(|e| e.to_str()) else {
                continue;
            };
            if ext == TEMP_EXTENSION {
                junk.push(name);
                continue;
            }
            if ext != EXTENSION {
                continue;
            }
            let bytes = match tokio::fs::read(item.path()).await {
                Ok(b) => b,
                Err(e) => return Err(io_error("cache read", self.describe_path(&name), e)),
            };
            let parsed = serde_json::from_slice::<FileBody>(&bytes)
                .ok()
                .and_then(|body| {
                    let entry = CacheEntry::from_json(body.entry)?;
                    (body.format == FORMAT
                        && Self::file_of(&body.key) == name
                        && !entry.expired(self.ttl, now))
                    .then_some(body.key)
                });
            let Some(key) = parsed else {
                junk.push(name);
                continue;
            };
            let modified = item
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((
                modified,
                Indexed {
                    key,
                    file: name,
                    size: bytes.len() as u64,
                    tick: 0,
                },
            ));
        }
        found.sort_by_key(|(modified, _)| *modified);
        let evicted = {
            let mut index = self.lock();
            *index = FsIndex::default();
            for (_, item) in found {
                index.insert(item);
            }
            index.evict_to(self.max_bytes)
        };
        self.evictions
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        junk.extend(evicted);
        self.delete_files(junk).await
    }
}

#[async_trait]
impl CacheDriver for FilesystemDriver {
    fn describe(&self) -> String {
        format!("filesystem:{}", self.dir.display())
    }

    fn accepts(&self, _kind: ValueKind) -> bool {
        true
    }

    fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    async fn attach(&self, _cx: &PluginContext) -> Result<()> {
        self.rebuild().await
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>> {
        let Some(file) = self.lock().touch(key.path()) else {
            return Ok(None);
        };
        let bytes = match tokio::fs::read(self.dir.join(&file)).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.lock().remove(key.path());
                return Ok(None);
            }
            Err(e) => return Err(io_error("cache read", self.describe_path(&file), e)),
        };
        let entry = serde_json::from_slice::<FileBody>(&bytes)
            .ok()
            .filter(|body| body.key == *key)
            .and_then(|body| CacheEntry::from_json(body.entry));
        match entry {
            Some(entry) if !entry.expired(self.ttl, wall_us()) => Ok(Some(entry)),
            _ => {
                self.lock().remove(key.path());
                self.delete_files(vec![file]).await?;
                Ok(None)
            }
        }
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<()> {
        let Some(json) = entry.to_json() else {
            return Ok(());
        };
        let body = FileBody {
            format: FORMAT,
            key: key.clone(),
            entry: json,
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| s3db_core::Error::Corrupt {
            key: key.path().to_owned(),
            reason: e.to_string(),
        })?;
        let size = bytes.len() as u64;
        let file = Self::file_of(key);
        if size > self.max_bytes {
            // Never fits: drop what an older load left.
            let old = self.lock().remove(key.path());
            return self
                .delete_files(old.map(|i| i.file).into_iter().collect())
                .await;
        }
        let temp = format!(
            "{}.{:016x}.{TEMP_EXTENSION}",
            file.trim_end_matches(&format!(".{EXTENSION}")),
            rand::random::<u64>()
        );
        let temp_path = self.dir.join(&temp);
        if let Err(e) = tokio::fs::write(&temp_path, &bytes).await {
            let _ = tokio::fs::remove_file(&temp_path).await;
            return Err(io_error("cache write", self.describe_path(&temp), e));
        }
        if let Err(e) = tokio::fs::rename(&temp_path, self.dir.join(&file)).await {
            let _ = tokio::fs::remove_file(&temp_path).await;
            return Err(io_error("cache write", self.describe_path(&file), e));
        }
        let evicted = {
            let mut index = self.lock();
            index.insert(Indexed {
                key: key.clone(),
                file,
                size,
                tick: 0,
            });
            let evicted = index.evict_to(self.max_bytes);
            self.evictions
                .fetch_add(evicted.len() as u64, Ordering::Relaxed);
            evicted
        };
        self.delete_files(evicted).await
    }

    async fn remove(&self, key: &CacheKey) -> Result<()> {
        let old = self.lock().remove(key.path());
        self.delete_files(old.map(|i| i.file).into_iter().collect())
            .await
    }

    fn may_hold(&self, resource: &str) -> bool {
        self.lock()
            .by_resource
            .get(resource)
            .is_some_and(|book| !book.is_empty())
    }

    async fn invalidate(&self, invalidation: &Invalidation) -> Result<()> {
        self.drop_keys(Some(invalidation.resource_name()), |book, paths| {
            book.take_affected(invalidation, paths);
        })
        .await
    }

    async fn clear(&self, resource: Option<&str>) -> Result<()> {
        self.drop_keys(resource, ResourceBook::take_all).await
    }

    async fn detach(&self, _cx: &PluginContext, purge: bool) -> Result<()> {
        if !purge {
            *self.lock() = FsIndex::default();
            return Ok(());
        }
        self.clear(None).await?;
        *self.lock() = FsIndex::default();
        // Whatever else of ours is left (files of other runs, interrupted writes).
        let dir_name = self.dir.display().to_string();
        let mut reader = match tokio::fs::read_dir(&self.dir).await {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("cache folder", dir_name, e)),
        };
        let mut ours = Vec::new();
        while let Ok(Some(item)) = reader.next_entry().await {
            let name = item.file_name().to_string_lossy().into_owned();
            let ext = Path::new(&name).extension().and_then(|e| e.to_str());
            if matches!(ext, Some(EXTENSION | TEMP_EXTENSION)) {
                ours.push(name);
            }
        }
        self.delete_files(ours).await?;
        // The folder itself, if nothing else is in it.
        let _ = tokio::fs::remove_dir(&self.dir).await;
        Ok(())
    }

    fn evictions(&self, resource: Option<&str>) -> u64 {
        match resource {
            None => self.evictions.load(Ordering::Relaxed),
            Some(r) => self.lock().evictions.get(r).copied().unwrap_or(0),
        }
    }
}
