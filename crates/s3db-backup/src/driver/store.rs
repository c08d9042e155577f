//! Archives in another bucket or prefix, through s3db-core's [`Store`].

use std::path::Path;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use s3db_core::plugin::async_trait;
use s3db_core::{ConnectionString, Key, Metadata, Store};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ArchiveTarget, BackupDriver, check_template, expand};
use crate::config::ConfigError;
use crate::error::{BackupError, BackupResult};

/// Default size of one uploaded part: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Smallest part size accepted: 1 KiB.
pub const MIN_PART_SIZE: usize = 1024;

const PARTS_OBJECT: &str = "parts.json";

/// Writes each archive to another database location — any connection string core supports
/// (`s3://…`, `http(s)://…` S3-compatible servers, `file://…`, `memory://…`) — as
/// `<prefix>/<backup id>/part-NNNNNN` objects of at most `part_size` bytes, then
/// `<prefix>/<backup id>/parts.json` (part count, size, checksum) last: an archive without its
/// `parts.json` is incomplete and never read. The prefix (default `backups`) may contain `{date}`.
///
/// Core's [`Store`] writes whole objects, so the archive is uploaded part by part: the driver
/// holds one part in memory at a time (see [`S3Driver::part_size`]).
#[derive(Debug, Clone)]
pub struct S3Driver {
    store: Store,
    prefix: String,
    part_size: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Parts {
    parts: u32,
    size: u64,
    checksum: String,
}

impl S3Driver {
    /// A driver writing to the location `connection` names, under the prefix `backups`.
    ///
    /// # Errors
    /// [`ConfigError::BadConnection`] if the string cannot be parsed or the client built.
    pub fn new(connection: &str) -> Result<Self, ConfigError> {
        let conn = ConnectionString::parse(connection).map_err(|e| ConfigError::BadConnection {
            reason: e.to_string(),
        })?;
        Self::from_connection(conn)
    }

    /// A driver writing to an already parsed location.
    ///
    /// # Errors
    /// [`ConfigError::BadConnection`] if the client cannot be built.
    pub fn from_connection(conn: ConnectionString) -> Result<Self, ConfigError> {
        let store = Store::builder(conn)
            .build()
            .map_err(|e| ConfigError::BadConnection {
                reason: e.to_string(),
            })?;
        Ok(Self {
            store,
            prefix: "backups".to_owned(),
            part_size: DEFAULT_PART_SIZE,
        })
    }

    /// The key prefix of archives (default `backups`; may contain `{date}`; empty for none).
    ///
    /// # Errors
    /// [`ConfigError::BadPath`] if it would not make valid keys.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into().trim_matches('/').to_owned();
        check_template(&prefix).map_err(|reason| ConfigError::BadPath {
            path: prefix.clone(),
            reason,
        })?;
        let sample = expand(
            &prefix,
            Utc.timestamp_opt(0, 0).single().unwrap_or_default(),
        );
        if !sample.is_empty() {
            Key::parse(&sample).map_err(|e| ConfigError::BadPath {
                path: prefix.clone(),
                reason: e.to_string(),
            })?;
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// The size of each uploaded part, in bytes (default [`DEFAULT_PART_SIZE`], at least
    /// [`MIN_PART_SIZE`]): the most memory an upload or a download holds.
    ///
    /// # Errors
    /// [`ConfigError::PartSize`] below the minimum.
    pub fn part_size(mut self, bytes: usize) -> Result<Self, ConfigError> {
        if bytes < MIN_PART_SIZE {
            return Err(ConfigError::PartSize { bytes });
        }
        self.part_size = bytes;
        Ok(self)
    }

    /// The store archives go to.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn base(&self, target: &ArchiveTarget) -> BackupResult<Key> {
        let prefix = expand(&self.prefix, target.started_at);
        let key = if prefix.is_empty() {
            target.id.clone()
        } else {
            format!("{prefix}/{}", target.id)
        };
        Ok(Key::parse(&key)?)
    }

    fn label(&self) -> String {
        format!("s3 {}", self.store.prefix())
    }
}

fn part_key(base: &Key, i: u32) -> BackupResult<Key> {
    Ok(base.join(&format!("part-{i:06}"))?)
}

#[async_trait]
impl BackupDriver for S3Driver {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, target: &ArchiveTarget, archive: &Path) -> BackupResult<String> {
        let base = self.base(target)?;
        let mut file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| BackupError::io(archive, e))?;
        let mut parts = 0u32;
        let mut size = 0u64;
        loop {
            let mut buf = Vec::with_capacity(self.part_size);
            let n = (&mut file)
                .take(self.part_size as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| BackupError::io(archive, e))?;
            if n == 0 && parts > 0 {
                break;
            }
            size += n as u64;
            self.store
                .put(&part_key(&base, parts)?, &Metadata::new(), Bytes::from(buf))
                .await?;
            parts += 1;
            if n < self.part_size {
                break;
            }
        }
        let summary = Parts {
            parts,
            size,
            checksum: target.checksum.clone(),
        };
        let body =
            serde_json::to_vec(&summary).map_err(|e| BackupError::driver(self.label(), e))?;
        self.store
            .put(
                &base.join(PARTS_OBJECT)?,
                &Metadata::new(),
                Bytes::from(body),
            )
            .await?;
        Ok(base.to_string())
    }

    async fn get(&self, location: &str, dest: &Path) -> BackupResult<()> {
        let base = Key::parse(location)?;
        let summary = match self.store.get(&base.join(PARTS_OBJECT)?).await {
            Ok(o) => o,
            Err(s3db_core::Error::NotFound { .. }) => {
                return Err(BackupError::driver(
                    self.label(),
                    format!("no complete archive at {location} (parts.json is missing)"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let summary: Parts = serde_json::from_slice(&summary.body).map_err(|e| {
            BackupError::driver(self.label(), format!("bad parts.json at {location}: {e}"))
        })?;
        let mut out = tokio::fs::File::create(dest)
            .await
            .map_err(|e| BackupError::io(dest, e))?;
        let mut size = 0u64;
        for i in 0..summary.parts {
            let part = self.store.get(&part_key(&base, i)?).await?;
            size += part.body.len() as u64;
            out.write_all(&part.body)
                .await
                .map_err(|e| BackupError::io(dest, e))?;
        }
        out.flush().await.map_err(|e| BackupError::io(dest, e))?;
        if size != summary.size {
            return Err(BackupError::driver(
                self.label(),
                format!(
                    "the parts at {location} hold {size} bytes, {} expected",
                    summary.size
                ),
            ));
        }
        Ok(())
    }

    async fn delete(&self, location: &str) -> BackupResult<()> {
        let base = Key::parse(location)?;
        // parts.json first: an interrupted delete never leaves an archive that looks complete.
        self.store.delete(&base.join(PARTS_OBJECT)?).await?;
        self.store.delete_prefix(&base).await?;
        Ok(())
    }
}
