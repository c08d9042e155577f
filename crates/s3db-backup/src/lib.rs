#![doc = include_str!("../README.md")]

mod archive;
mod backup;
mod config;
mod driver;
mod error;
mod events;
mod metadata;
mod restore;
mod retention;
mod secrets;
mod transfer;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use s3db_core::plugin::{LockOptions, Plugin, PluginContext, Resource, async_trait};

pub use crate::config::{
    BackupBuilder, ConfigError, DEFAULT_CONCURRENCY, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
pub use crate::driver::{
    ArchiveTarget, BackupDriver, DEFAULT_PART_SIZE, Driver, FilesystemDriver, MIN_PART_SIZE,
    MultiStrategy, S3Driver,
};
pub use crate::error::{BackupError, BackupResult};
pub use crate::events::BackupEvent;
pub use crate::metadata::{
    BackupInfo, BackupKind, BackupStatus, DriverResult, METADATA_RESOURCE, ResourceSummary,
    SecretsMode,
};
pub use crate::restore::{
    MAX_REPORTED_ERRORS, ResourceRestore, RestoreMode, RestoreOptions, RestoreReport,
};
pub use crate::retention::Retention;
pub use s3db_core::plugin::{BadNameReason, Clock, ManualClock, SelectionError, SystemClock};

use crate::config::Config;

/// The plugin's name (and storage slug).
pub const PLUGIN_NAME: &str = "backup";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the plugin's operations share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    cx: Mutex<Option<PluginContext>>,
}

impl Shared {
    pub(crate) fn context(&self) -> BackupResult<PluginContext> {
        lock(&self.cx).clone().ok_or(BackupError::NotInstalled)
    }

    /// The `plg_backup_metadata` resource (opened again if another process created it).
    pub(crate) async fn metadata(&self) -> BackupResult<Resource> {
        let cx = self.context()?;
        match cx.database()?.resource(METADATA_RESOURCE) {
            Some(r) => Ok(r),
            None => Ok(cx.create_resource(metadata::definition()).await?),
        }
    }

    /// Every backup's status record.
    pub(crate) async fn history(&self) -> BackupResult<Vec<BackupInfo>> {
        let meta = self.metadata().await?;
        let mut out = Vec::new();
        for record in meta.list().await? {
            match BackupInfo::from_record(&record) {
                Ok(info) => out.push(info),
                Err(e) => {
                    tracing::warn!(id = record.id(), error = %e, "unreadable backup status record");
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn get(&self, id: &str) -> BackupResult<Option<BackupInfo>> {
        let meta = self.metadata().await?;
        match meta.get(id).await {
            Ok(record) => Ok(Some(BackupInfo::from_record(&record)?)),
            Err(s3db_core::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The folder for archive buffers and unpacked restores.
    pub(crate) fn work_dir(&self) -> BackupResult<PathBuf> {
        let dir = self
            .config
            .temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&dir).map_err(|e| BackupError::io(&dir, e))?;
        Ok(dir)
    }

    /// Deletes a backup: its archives at every destination, then its status record.
    ///
    /// # Errors
    /// [`BackupError::NotFound`]; destination and storage errors (the record then stays).
    pub(crate) async fn delete(&self, id: &str) -> BackupResult<()> {
        let info = self
            .get(id)
            .await?
            .ok_or_else(|| BackupError::NotFound(id.to_owned()))?;
        transfer::delete(&self.config.driver, &info).await?;
        self.metadata().await?.delete(id).await?;
        Ok(())
    }

    /// Applies a retention policy (see [`Retention`]): completed backups it does not keep, and
    /// failed ones, are deleted (archives, then status records). Backups in progress are never
    /// touched. One process prunes at a time (a lock); a process that finds the lock taken
    /// returns an empty list.
    ///
    /// # Errors
    /// Storage errors; the first destination error (the other backups are still pruned).
    pub(crate) async fn prune(&self, policy: &Retention) -> BackupResult<Vec<String>> {
        if policy.is_unlimited() {
            return Ok(Vec::new());
        }
        let cx = self.context()?;
        let Some(guard) = cx
            .storage()
            .acquire_lock(
                "retention",
                LockOptions::new()
                    .ttl(Duration::from_secs(300))
                    .timeout(Duration::from_secs(10)),
            )
            .await?
        else {
            return Ok(Vec::new());
        };
        let span = tracing::info_span!("backup_prune");
        let result = tracing::Instrument::instrument(self.prune_locked(policy), span).await;
        let _ = guard.release().await;
        let pruned = result?;
        if !pruned.is_empty() {
            self.emit(&BackupEvent::Pruned {
                ids: pruned.clone(),
            });
        }
        Ok(pruned)
    }

    async fn prune_locked(&self, policy: &Retention) -> BackupResult<Vec<String>> {
        let history = self.history().await?;
        let candidates: Vec<retention::Candidate> = history
            .iter()
            .filter(|b| b.is_completed())
            .map(|b| retention::Candidate {
                id: b.id.clone(),
                started_at: b.started_at,
                bases: b
                    .resources
                    .values()
                    .filter_map(|s| s.base.clone())
                    .collect(),
            })
            .collect();
        let keep = retention::keep(policy, &candidates);
        let mut pruned = Vec::new();
        let mut first_error = None;
        for info in history {
            if info.status == BackupStatus::InProgress || keep.contains(&info.id) {
                continue;
            }
            match self.delete(&info.id).await {
                Ok(()) => {
                    tracing::info!(id = %info.id, "backup pruned");
                    pruned.push(info.id);
                }
                Err(e) => {
                    tracing::warn!(id = %info.id, error = %e, "cannot prune backup");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if pruned.is_empty() => Err(e),
            _ => Ok(pruned),
        }
    }

    pub(crate) fn emit(&self, event: &BackupEvent) {
        if let Ok(cx) = self.context() {
            cx.emit_event(event);
        }
    }
}

/// The backup plugin. Make it with [`BackupPlugin::builder`]; find it again with
/// `db.plugin::<BackupPlugin>()`.
pub struct BackupPlugin {
    shared: Shared,
}

impl std::fmt::Debug for BackupPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupPlugin")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl BackupPlugin {
    /// A builder with validated configuration (a destination is required).
    pub fn builder() -> BackupBuilder {
        BackupBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        Self {
            shared: Shared {
                config,
                cx: Mutex::new(None),
            },
        }
    }

    /// Backs up the configured resources (every user resource unless `include`/`exclude` say
    /// otherwise). `secret` attributes are encrypted under the backup passphrase
    /// ([`BackupBuilder::secrets_passphrase`]), or kept in clear with
    /// [`BackupBuilder::plaintext_secrets`].
    ///
    /// # Errors
    /// [`BackupError::SecretsNotConfigured`] when a resource has secret attributes and neither
    /// option is configured (nothing is recorded or written). Storage and destination errors;
    /// the backup's status record then says `failed`.
    pub async fn backup(&self, kind: BackupKind) -> BackupResult<BackupInfo> {
        backup::run(&self.shared, kind, None).await
    }

    /// Backs up these resources.
    ///
    /// # Errors
    /// [`BackupError::UnknownResource`] for a resource that does not exist or is internal, and
    /// [`BackupError::SecretsNotConfigured`] (nothing is written in either case); otherwise as
    /// [`BackupPlugin::backup`].
    pub async fn backup_resources<I, S>(
        &self,
        kind: BackupKind,
        resources: I,
    ) -> BackupResult<BackupInfo>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names = resources.into_iter().map(Into::into).collect();
        backup::run(&self.shared, kind, Some(names)).await
    }

    /// A full backup of the configured resources.
    ///
    /// # Errors
    /// As [`BackupPlugin::backup`].
    pub async fn full(&self) -> BackupResult<BackupInfo> {
        self.backup(BackupKind::Full).await
    }

    /// An incremental backup of the configured resources.
    ///
    /// # Errors
    /// As [`BackupPlugin::backup`].
    pub async fn incremental(&self) -> BackupResult<BackupInfo> {
        self.backup(BackupKind::Incremental).await
    }

    /// Restores a completed backup. The archive is downloaded and its checksum verified, then
    /// unpacked, and the backup passphrase checked against it (when the restored resources have
    /// encrypted secrets), before anything is written. Secrets are decrypted and written through
    /// the resource, which encrypts them under the target database's own passphrase.
    ///
    /// # Errors
    /// [`BackupError::NotFound`], [`BackupError::NotCompleted`],
    /// [`BackupError::UnknownResource`], [`BackupError::ReplaceNeedsFull`],
    /// [`BackupError::ChecksumMismatch`], [`BackupError::CorruptArchive`],
    /// [`BackupError::SecretsPassphraseRequired`], [`BackupError::WrongSecretsPassphrase`] —
    /// all before any write;
    /// storage errors. Records that cannot be written are counted in the report, not errors.
    pub async fn restore(
        &self,
        id: &str,
        options: impl Into<RestoreOptions>,
    ) -> BackupResult<RestoreReport> {
        restore::run(&self.shared, id, options.into()).await
    }

    /// Every backup's status record, newest first.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn list(&self) -> BackupResult<Vec<BackupInfo>> {
        let mut all = self.shared.history().await?;
        all.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.store_started_at.cmp(&a.store_started_at))
        });
        Ok(all)
    }

    /// One backup's status record.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn status(&self, id: &str) -> BackupResult<Option<BackupInfo>> {
        self.shared.get(id).await
    }

    /// Deletes a backup: its archives at every destination, then its status record.
    ///
    /// # Errors
    /// [`BackupError::NotFound`]; destination and storage errors (the record then stays).
    pub async fn delete(&self, id: &str) -> BackupResult<()> {
        self.shared.delete(id).await
    }

    /// Applies the configured retention; returns the ids pruned.
    ///
    /// # Errors
    /// As [`BackupPlugin::prune_with`].
    pub async fn prune(&self) -> BackupResult<Vec<String>> {
        let policy = self.shared.config.retention;
        self.shared.prune(&policy).await
    }

    /// Applies a retention policy (see [`Retention`]): completed backups it does not keep, and
    /// failed ones, are deleted (archives, then status records). Backups in progress are never
    /// touched. One process prunes at a time (a lock); a process that finds the lock taken
    /// returns an empty list.
    ///
    /// # Errors
    /// Storage errors; the first destination error (the other backups are still pruned).
    pub async fn prune_with(&self, policy: &Retention) -> BackupResult<Vec<String>> {
        self.shared.prune(policy).await
    }
}

#[async_trait]
impl Plugin for BackupPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    async fn install(&self, cx: &PluginContext) -> s3db_core::Result<()> {
        cx.create_resource(metadata::definition()).await?;
        *lock(&self.shared.cx) = Some(cx.clone());
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> s3db_core::Result<()> {
        lock(&self.shared.cx).take();
        Ok(())
    }
}
