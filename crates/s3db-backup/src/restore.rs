//! Restoring a backup: download, verify the checksum, unpack (nothing is written until all of
//! this succeeded), then write the records through the resources' normal operations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures::StreamExt;
use s3db_core::Key;
use s3db_core::plugin::Resource;
use s3db_core::resource::{CREATED_AT, UPDATED_AT};
use s3db_core::secret::SecretKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::Instrument;

use crate::archive::{self, Section};
use crate::error::{BackupError, BackupResult};
use crate::events::BackupEvent;
use crate::metadata::{BackupInfo, BackupKind};
use crate::{Shared, secrets, transfer};

/// How a restore treats the records a resource already has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// Upsert every archived record (existing ones are replaced by the archived version, others
    /// are kept); an incremental backup's deletions are applied. The default.
    #[default]
    Merge,
    /// Delete every record of the resource first, then load the archive: the resource ends as it
    /// was backed up. Refused for incremental backups (they hold only changes).
    Replace,
    /// Insert only the records that do not exist; existing records are kept as they are and
    /// nothing is deleted.
    Skip,
}

/// What to restore and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// How existing records are treated.
    pub mode: RestoreMode,
    /// Only these resources (default: every resource of the backup).
    pub resources: Option<Vec<String>>,
}

impl RestoreOptions {
    /// Options with this mode, every resource.
    #[must_use]
    pub fn new(mode: RestoreMode) -> Self {
        Self {
            mode,
            resources: None,
        }
    }

    /// Restores only these resources.
    #[must_use]
    pub fn resources<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.resources = Some(resources.into_iter().map(Into::into).collect());
        self
    }
}

impl From<RestoreMode> for RestoreOptions {
    fn from(mode: RestoreMode) -> Self {
        Self::new(mode)
    }
}

/// What a restore did to one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRestore {
    /// Records written (upserted or inserted).
    pub written: u64,
    /// Records left as they were (`skip` mode, record exists).
    pub skipped: u64,
    /// Records deleted (`replace` clearing, or an incremental backup's deletions).
    pub deleted: u64,
    /// Records that could not be written or deleted (see [`RestoreReport::errors`]).
    pub failed: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub id: String,
    /// Per resource.
    pub resources: BTreeMap<String, ResourceRestore>,
    /// The first errors (at most [`MAX_REPORTED_ERRORS`]), `resource/id: error`.
    pub errors: Vec<String>,
}

/// Most errors kept in a [`RestoreReport`].
pub const MAX_REPORTED_ERRORS: usize = 100;

impl RestoreReport {
    /// Totals over every resource.
    #[must_use]
    pub fn total(&self) -> ResourceRestore {
        self.resources
            .values()
            .fold(ResourceRestore::default(), |a, r| ResourceRestore {
                written: a.written + r.written,
                skipped: a.skipped + r.skipped,
                deleted: a.deleted + r.deleted,
                failed: a.failed + r.failed,
            })
    }

    fn error(&mut self, resource: &str, id: &str, e: &dyn std::fmt::Display) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(format!("{resource}/{id}: {e}"));
        }
    }
}

pub(crate) async fn run(
    shared: &Shared,
    id: &str,
    options: RestoreOptions,
) -> BackupResult<RestoreReport> {
    let span = tracing::info_span!("restore", id, mode = ?options.mode);
    let result = restore(shared, id, &options).instrument(span).await;
    match &result {
        Ok(report) => {
            let total = report.total();
            shared.emit(&BackupEvent::RestoreCompleted {
                id: id.to_owned(),
                written: total.written,
                skipped: total.skipped,
                deleted: total.deleted,
                failed: total.failed,
            });
        }
        Err(e) => shared.emit(&BackupEvent::RestoreFailed {
            id: id.to_owned(),
            error: e.to_string(),
        }),
    }
    result
}

fn select(
    info: &BackupInfo,
    options: &RestoreOptions,
    db: &s3db_core::Database,
) -> BackupResult<Vec<(String, Resource)>> {
    let names: BTreeSet<String> = match &options.resources {
        Some(names) => names.iter().cloned().collect(),
        None => info.resources.keys().cloned().collect(),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(summary) = info.resources.get(&name) else {
            return Err(BackupError::UnknownResource {
                resource: name,
                reason: format!("backup {} does not hold it", info.id),
            });
        };
        if options.mode == RestoreMode::Replace
            && info.kind == BackupKind::Incremental
            && summary.base.is_some()
        {
            return Err(BackupError::ReplaceNeedsFull {
                id: info.id.clone(),
                base: summary.base.clone().unwrap_or_else(|| "?".to_owned()),
            });
        }
        let Some(resource) = db.resource(&name) else {
            return Err(BackupError::UnknownResource {
                resource: name,
                reason: "it does not exist in this database: create it first (its definition is in the archive's s3db.json)".to_owned(),
            });
        };
        out.push((name, resource));
    }
    Ok(out)
}

async fn restore(
    shared: &Shared,
    id: &str,
    options: &RestoreOptions,
) -> BackupResult<RestoreReport> {
    let cx = shared.context()?;
    let db = cx.database()?;
    let info = shared
        .get(id)
        .await?
        .ok_or_else(|| BackupError::NotFound(id.to_owned()))?;
    if !info.is_completed() {
        return Err(BackupError::NotCompleted {
            id: id.to_owned(),
            status: info.status.to_string(),
        });
    }
    let targets = select(&info, options, &db)?;
    let work = shared.work_dir()?;
    // Verified download and a complete unpack before anything is written.
    let file = transfer::fetch_verified(&shared.config.driver, &info, &work).await?;
    let wanted: BTreeSet<String> = targets.iter().map(|(n, _)| n.clone()).collect();
    let unpacked = archive::unpack(
        id,
        &file,
        &work,
        Some(wanted.clone()),
        [Section::Records, Section::Deleted].into(),
    )
    .await?;
    drop(file);
    if unpacked.manifest.id != id {
        return Err(BackupError::CorruptArchive {
            id: id.to_owned(),
            reason: format!("the archive is backup {}", unpacked.manifest.id),
        });
    }
    // The backup passphrase is checked against the archive before anything is written.
    let manifest_secrets = &unpacked.manifest.secrets;
    let key = secrets::restore_key(&shared.config.secrets, manifest_secrets, id, &wanted).await?;
    shared.emit(&BackupEvent::RestoreStarted {
        id: id.to_owned(),
        mode: options.mode,
    });
    let mut report = RestoreReport {
        id: id.to_owned(),
        ..RestoreReport::default()
    };
    for (name, resource) in targets {
        let span = tracing::info_span!("restore_resource", resource = %name);
        let decrypt = key.as_ref().and_then(|key| {
            manifest_secrets
                .paths
                .get(&name)
                .filter(|paths| !paths.is_empty())
                .map(|paths| (key, paths.as_slice()))
        });
        let counts = restore_resource(
            shared,
            &resource,
            options.mode,
            decrypt,
            unpacked.file(&name, Section::Records),
            unpacked.file(&name, Section::Deleted),
            &mut report,
        )
        .instrument(span)
        .await?;
        report.resources.insert(name, counts);
    }
    Ok(report)
}

async fn restore_resource(
    shared: &Shared,
    resource: &Resource,
    mode: RestoreMode,
    decrypt: Option<(&SecretKey, &[String])>,
    records: Option<&Path>,
    deleted: Option<&Path>,
    report: &mut RestoreReport,
) -> BackupResult<ResourceRestore> {
    let page = shared.config.page_size;
    let concurrency = shared.config.concurrency;
    let name = resource.name().to_owned();
    let mut counts = ResourceRestore::default();
    if mode == RestoreMode::Replace {
        clear(resource, page, &mut counts, report).await?;
    }
    let timestamps = resource.definition().timestamps();
    if let Some(path) = records {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| BackupError::io(path, e))?;
        let mut lines = BufReader::new(file).lines();
        let mut batch: Vec<(String, serde_json::Map<String, Value>)> = Vec::with_capacity(page);
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| BackupError::io(path, e))?;
            let done = line.is_none();
            if let Some(line) = line.filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(mut data)) => match data.remove("id") {
                        Some(Value::String(id)) => {
                            if timestamps {
                                data.remove(CREATED_AT);
                                data.remove(UPDATED_AT);
                            }
                            let decrypted = match decrypt {
                                Some((key, paths)) => {
                                    secrets::decrypt_record(&mut data, paths, key)
                                }
                                None => Ok(()),
                            };
                            match decrypted {
                                Ok(()) => batch.push((id, data)),
                                Err(e) => {
                                    counts.failed += 1;
                                    report.error(&name, &id, &e);
                                }
                            }
                        }
                        _ => {
                            counts.failed += 1;
                            report.error(&name, "?", &"an archived record has no id");
                        }
                    },
                    _ => {
                        counts.failed += 1;
                        report.error(&name, "?", &"an archived line is not a JSON object");
                    }
                }
            }
            if batch.len() >= page || (done && !batch.is_empty()) {
                let writes: Vec<_> = batch
                    .iter()
                    .map(|(id, data)| async move {
                        match mode {
                            RestoreMode::Merge | RestoreMode::Replace => {
                                resource.upsert(id, data).await.map(|_| true)
                            }
                            RestoreMode::Skip => match resource.insert_with_id(id, data).await {
                                Ok(_) => Ok(true),
                                Err(s3db_core::Error::AlreadyExists { .. }) => Ok(false),
                                Err(e) => Err(e),
                            },
                        }
                    })
                    .collect();
                let results: Vec<_> = futures::stream::iter(writes)
                    .buffered(concurrency)
                    .collect()
                    .await;
                for ((id, _), result) in batch.iter().zip(results) {
                    match result {
                        Ok(true) => counts.written += 1,
                        Ok(false) => counts.skipped += 1,
                        Err(e) => {
                            counts.failed += 1;
                            report.error(&name, id, &e);
                        }
                    }
                }
                batch.clear();
                tracing::debug!(resource = %name, written = counts.written, "restore progress");
            }
            if done {
                break;
            }
        }
    }
    if mode == RestoreMode::Merge
        && let Some(path) = deleted
    {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| BackupError::io(path, e))?;
        let mut lines = BufReader::new(file).lines();
        let mut batch = Vec::with_capacity(page);
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| BackupError::io(path, e))?;
            let done = line.is_none();
            if let Some(id) = line.filter(|l| !l.is_empty()) {
                batch.push(id);
            }
            if batch.len() >= page || (done && !batch.is_empty()) {
                delete_ids(resource, &batch, &mut counts, report).await;
                batch.clear();
            }
            if done {
                break;
            }
        }
    }
    tracing::info!(
        resource = %name,
        written = counts.written,
        skipped = counts.skipped,
        deleted = counts.deleted,
        failed = counts.failed,
        "resource restored"
    );
    Ok(counts)
}

async fn delete_ids(
    resource: &Resource,
    ids: &[String],
    counts: &mut ResourceRestore,
    report: &mut RestoreReport,
) {
    for (id, result) in ids.iter().zip(resource.delete_many(ids).await) {
        match result {
            Ok(()) => counts.deleted += 1,
            Err(e) => {
                counts.failed += 1;
                report.error(resource.name(), id, &e);
            }
        }
    }
}

/// Deletes every record of the resource, a page of ids at a time.
async fn clear(
    resource: &Resource,
    page: usize,
    counts: &mut ResourceRestore,
    report: &mut RestoreReport,
) -> BackupResult<()> {
    let prefix = Key::parse(&format!("resource={}/data", resource.name()))?;
    loop {
        let listed = resource
            .store()
            .list_page(Some(&prefix), None, page)
            .await?;
        let ids: Vec<String> = listed
            .entries
            .iter()
            .filter_map(|e| e.key.last_part().strip_prefix("id=").map(str::to_owned))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let failed_before = counts.failed;
        delete_ids(resource, &ids, counts, report).await;
        if counts.failed > failed_before {
            return Err(BackupError::Core(s3db_core::Error::Refused {
                operation: "restore (replace)",
                reason: format!(
                    "could not delete the existing records of {}: {}",
                    resource.name(),
                    report.errors.last().cloned().unwrap_or_default()
                ),
            }));
        }
    }
}
