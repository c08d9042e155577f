//! Archives as files in a local folder.

use std::path::{Path, PathBuf};

use s3db_core::plugin::async_trait;

use super::{ArchiveTarget, BackupDriver, check_template, expand};
use crate::config::ConfigError;
use crate::error::{BackupError, BackupResult};

/// Writes each archive as `<folder>/<backup id>.tar.gz`, where the folder comes from a path
/// template that may contain `{date}` (the backup's day, `YYYY-MM-DD`, UTC): `./backups/{date}/`.
///
/// The file appears under its final name only when complete (copied to a hidden temporary name
/// in the same folder, synced, then renamed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemDriver {
    template: String,
}

impl FilesystemDriver {
    /// A driver writing below `path` (a template; see the type's docs).
    ///
    /// # Errors
    /// [`ConfigError::BadPath`] for an empty path or an unknown placeholder.
    pub fn new(path: impl Into<String>) -> Result<Self, ConfigError> {
        let template = path.into();
        if template.trim().is_empty() {
            return Err(ConfigError::BadPath {
                path: template,
                reason: "it is empty".to_owned(),
            });
        }
        check_template(&template).map_err(|reason| ConfigError::BadPath {
            path: template.clone(),
            reason,
        })?;
        Ok(Self { template })
    }

    /// The path template.
    #[must_use]
    pub fn template(&self) -> &str {
        &self.template
    }

    fn folder(&self, target: &ArchiveTarget) -> PathBuf {
        PathBuf::from(expand(&self.template, target.started_at))
    }
}

#[async_trait]
impl BackupDriver for FilesystemDriver {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    async fn put(&self, target: &ArchiveTarget, archive: &Path) -> BackupResult<String> {
        let folder = self.folder(target);
        tokio::fs::create_dir_all(&folder)
            .await
            .map_err(|e| BackupError::io(&folder, e))?;
        let name = format!("{}.tar.gz", target.id);
        let partial = folder.join(format!(".{name}.partial-{:08x}", rand::random::<u32>()));
        let done = folder.join(&name);
        let copy = async {
            tokio::fs::copy(archive, &partial)
                .await
                .map_err(|e| BackupError::io(&partial, e))?;
            let file = tokio::fs::File::open(&partial)
                .await
                .map_err(|e| BackupError::io(&partial, e))?;
            file.sync_all()
                .await
                .map_err(|e| BackupError::io(&partial, e))?;
            tokio::fs::rename(&partial, &done)
                .await
                .map_err(|e| BackupError::io(&done, e))
        };
        if let Err(e) = copy.await {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        Ok(done.to_string_lossy().into_owned())
    }

    async fn get(&self, location: &str, dest: &Path) -> BackupResult<()> {
        tokio::fs::copy(location, dest)
            .await
            .map(|_| ())
            .map_err(|e| BackupError::io(location, e))
    }

    async fn delete(&self, location: &str) -> BackupResult<()> {
        match tokio::fs::remove_file(location).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io(location, e)),
        }
        // A dated folder left empty goes too (fails harmlessly when not empty).
        if self.template.contains("{date}")
            && let Some(parent) = Path::new(location).parent()
        {
            let _ = tokio::fs::remove_dir(parent).await;
        }
        Ok(())
    }
}
