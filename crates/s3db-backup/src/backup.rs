//! Making a backup: list each resource page by page, read the records of the page, write them
//! (and the page's ids) into the archive, then upload, verify and record the status.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use s3db_core::plugin::{PluginContext, Resource};
use s3db_core::{Database, Key, ListEntry, Metadata};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tracing::Instrument;

use crate::archive::{self, ArchiveWriter, DATABASE_METADATA, MANIFEST, Manifest, Section};
use crate::driver::ArchiveTarget;
use crate::error::{BackupError, BackupResult};
use crate::events::BackupEvent;
use crate::metadata::{BackupInfo, BackupKind, BackupStatus, ResourceSummary, SecretsMode};
use crate::secrets::{self, BackupSecrets, SecretsPolicy};
use crate::{Shared, transfer};

/// The store's current time: the last-modified time of an object written now (then deleted).
/// Incremental backups compare records' last-modified times with it, so both come from the
/// same clock.
async fn store_now(cx: &PluginContext, id: &str) -> BackupResult<DateTime<Utc>> {
    let key = cx.storage().key(None, &["clock", id])?;
    let store = cx.storage().store();
    store.put(&key, &Metadata::new(), Bytes::new()).await?;
    let head = store.head(&key).await;
    let _ = store.delete(&key).await;
    Ok(head?.last_modified)
}

fn new_id(kind: BackupKind, at: DateTime<Utc>) -> String {
    format!(
        "{kind}-{}-{:08x}",
        at.format("%Y%m%dT%H%M%S%3fZ"),
        rand::random::<u32>()
    )
}

/// The resources to back up: those named (each must exist and not be internal), else the
/// configured ones.
fn resolve(
    shared: &Shared,
    db: &Database,
    names: Option<Vec<String>>,
) -> BackupResult<Vec<String>> {
    let Some(names) = names else {
        return Ok(db
            .resources()
            .into_iter()
            .filter(|n| shared.config.selection.selects(n))
            .collect());
    };
    let mut out = BTreeSet::new();
    for name in names {
        if s3db_core::plugin::is_internal_resource(&name) {
            return Err(BackupError::UnknownResource {
                resource: name,
                reason: "internal plg_* resources are not backed up".to_owned(),
            });
        }
        if db.resource(&name).is_none() {
            return Err(BackupError::UnknownResource {
                resource: name,
                reason: "no such resource in the database".to_owned(),
            });
        }
        out.insert(name);
    }
    Ok(out.into_iter().collect())
}

/// For an incremental backup: per resource, the latest completed backup that covers it.
fn bases(history: &[BackupInfo], resources: &[String]) -> BTreeMap<String, BackupInfo> {
    let mut out = BTreeMap::new();
    for r in resources {
        let latest = history
            .iter()
            .filter(|b| b.is_completed() && b.resources.contains_key(r))
            .max_by(|a, b| {
                a.store_started_at
                    .cmp(&b.store_started_at)
                    .then_with(|| a.id.cmp(&b.id))
            });
        if let Some(b) = latest {
            out.insert(r.clone(), b.clone());
        }
    }
    out
}

/// Without a backup passphrase or the plaintext opt-in, resources with `secret` attributes are
/// refused before anything is recorded or written.
fn refuse_unprotected_secrets(
    shared: &Shared,
    db: &Database,
    resources: &[String],
) -> BackupResult<()> {
    if !matches!(shared.config.secrets, SecretsPolicy::Refuse) {
        return Ok(());
    }
    let with_secrets: Vec<String> = resources
        .iter()
        .filter(|r| {
            db.resource(r)
                .is_some_and(|res| !res.definition().secret_paths().is_empty())
        })
        .cloned()
        .collect();
    if with_secrets.is_empty() {
        Ok(())
    } else {
        Err(BackupError::SecretsNotConfigured {
            resources: with_secrets,
        })
    }
}

pub(crate) async fn run(
    shared: &Shared,
    kind: BackupKind,
    names: Option<Vec<String>>,
) -> BackupResult<BackupInfo> {
    let cx = shared.context()?;
    let db = cx.database()?;
    let resources = resolve(shared, &db, names)?;
    refuse_unprotected_secrets(shared, &db, &resources)?;
    let meta = shared.metadata().await?;
    let history = if kind == BackupKind::Incremental {
        shared.history().await?
    } else {
        Vec::new()
    };
    let bases = bases(&history, &resources);

    let started = Instant::now();
    let started_at = shared.config.clock.now();
    let mut info = BackupInfo {
        id: new_id(kind, started_at),
        kind,
        status: BackupStatus::InProgress,
        resources: resources
            .iter()
            .map(|r| {
                let base = bases.get(r);
                let summary = ResourceSummary {
                    base: base.map(|b| b.id.clone()),
                    changed_since: base.map(|b| b.store_started_at),
                    ..ResourceSummary::default()
                };
                (r.clone(), summary)
            })
            .collect(),
        size: 0,
        checksum: None,
        started_at,
        finished_at: None,
        store_started_at: started_at,
        drivers: Vec::new(),
        secrets: SecretsMode::None,
        error: None,
    };
    info.store_started_at = store_now(&cx, &info.id).await?;
    // Ids are random: a collision (another process, same millisecond and draw) just draws again.
    let mut attempts = 0;
    loop {
        match meta.insert_with_id(&info.id, info.to_document()?).await {
            Ok(_) => break,
            Err(s3db_core::Error::AlreadyExists { .. }) if attempts < 5 => {
                attempts += 1;
                info.id = new_id(kind, started_at);
            }
            Err(e) => return Err(e.into()),
        }
    }
    shared.emit(&BackupEvent::Started {
        id: info.id.clone(),
        kind,
        resources: resources.clone(),
    });
    let span =
        tracing::info_span!("backup", id = %info.id, kind = %kind, resources = resources.len());
    let outcome = make(shared, &db, &mut info, &bases).instrument(span).await;
    info.finished_at = Some(shared.config.clock.now());
    match outcome {
        Ok(()) => {
            info.status = BackupStatus::Completed;
            meta.replace(&info.id, info.to_document()?).await?;
            tracing::info!(id = %info.id, size = info.size, "backup completed");
            shared.emit(&BackupEvent::Completed {
                id: info.id.clone(),
                kind,
                size: info.size,
                checksum: info.checksum.clone().unwrap_or_default(),
                records: info
                    .resources
                    .iter()
                    .map(|(r, s)| (r.clone(), s.records))
                    .collect(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
            let policy = shared.config.retention;
            if !policy.is_unlimited()
                && let Err(e) = shared.prune(&policy).await
            {
                tracing::warn!(id = %info.id, error = %e, "retention after the backup failed");
            }
            Ok(info)
        }
        Err(e) => {
            info.status = BackupStatus::Failed;
            info.error = Some(e.to_string());
            if let Err(write) = meta.replace(&info.id, info.to_document()?).await {
                tracing::error!(id = %info.id, error = %write, "cannot record the backup's failure");
            }
            tracing::error!(id = %info.id, error = %e, "backup failed");
            shared.emit(&BackupEvent::Failed {
                id: info.id.clone(),
                error: e.to_string(),
            });
            Err(e)
        }
    }
}

/// Writes the archive, uploads and verifies it; fills `info`.
async fn make(
    shared: &Shared,
    db: &Database,
    info: &mut BackupInfo,
    bases: &BTreeMap<String, BackupInfo>,
) -> BackupResult<()> {
    let config = &shared.config;
    let work = shared.work_dir()?;
    // The ids each base had, to find what was deleted since (read from the base's archive).
    let mut base_ids = BTreeMap::new();
    let mut by_base: BTreeMap<&str, (&BackupInfo, BTreeSet<String>)> = BTreeMap::new();
    for (r, b) in bases {
        by_base
            .entry(b.id.as_str())
            .or_insert_with(|| (b, BTreeSet::new()))
            .1
            .insert(r.clone());
    }
    for (base_id, (base, resources)) in by_base {
        let span = tracing::info_span!("backup_read_base", base = base_id);
        let unpacked = async {
            let file = transfer::fetch_verified(&config.driver, base, &work).await?;
            archive::unpack(
                base_id,
                &file,
                &work,
                Some(resources.clone()),
                [Section::Ids].into(),
            )
            .await
        }
        .instrument(span)
        .await?;
        let unpacked = std::sync::Arc::new(unpacked);
        for r in resources {
            base_ids.insert(r, std::sync::Arc::clone(&unpacked));
        }
    }

    let mut writer = ArchiveWriter::create(&work, info.started_at)?;
    let db_meta = db
        .store()
        .get(&Key::parse(DATABASE_METADATA)?)
        .await?
        .body
        .to_vec();
    writer.append(DATABASE_METADATA.to_owned(), db_meta).await?;
    let mut secrets = BackupSecrets::new(&config.secrets);
    let names: Vec<String> = info.resources.keys().cloned().collect();
    for name in names {
        let Some(resource) = db.resource(&name) else {
            return Err(BackupError::UnknownResource {
                resource: name,
                reason: "it disappeared during the backup".to_owned(),
            });
        };
        let since = info.resources.get(&name).and_then(|s| s.changed_since);
        let ids_file = base_ids
            .get(&name)
            .and_then(|u| u.file(&name, Section::Ids).map(Path::to_path_buf));
        let has_base = base_ids.contains_key(&name);
        let span = tracing::info_span!("backup_resource", resource = %name);
        let summary = archive_resource(
            shared,
            &resource,
            &mut writer,
            &mut secrets,
            since,
            has_base.then_some(ids_file),
        )
        .instrument(span)
        .await?;
        if let Some(s) = info.resources.get_mut(&name) {
            s.records = summary.records;
            s.present = summary.present;
            s.deleted = summary.deleted;
        }
    }
    let secrets = secrets.manifest();
    info.secrets = secrets.mode;
    let manifest = Manifest {
        format: archive::FORMAT,
        id: info.id.clone(),
        kind: info.kind,
        started_at: info.started_at,
        resources: info.resources.clone(),
        secrets,
    };
    let manifest =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::CorruptArchive {
            id: info.id.clone(),
            reason: e.to_string(),
        })?;
    writer.append(MANIFEST.to_owned(), manifest).await?;
    let archive = writer.finish().await?;
    info.size = archive.size;
    info.checksum = Some(archive.checksum.clone());
    let target = ArchiveTarget {
        id: info.id.clone(),
        started_at: info.started_at,
        size: archive.size,
        checksum: archive.checksum.clone(),
    };
    let (results, ok) = transfer::upload(
        &config.driver,
        &target,
        &archive.path,
        config.verify_uploads,
        &work,
    )
    .await;
    info.drivers = results;
    if !ok {
        let reasons: Vec<String> = info
            .drivers
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.destination)))
            .collect();
        return Err(BackupError::driver("upload", reasons.join("; ")));
    }
    Ok(())
}

/// Reads a sorted id file line by line.
struct BaseIds {
    lines: Option<Lines<BufReader<tokio::fs::File>>>,
    next: Option<String>,
}

impl BaseIds {
    async fn open(path: Option<&Path>) -> BackupResult<Self> {
        let mut me = Self {
            lines: None,
            next: None,
        };
        if let Some(path) = path {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| BackupError::io(path, e))?;
            me.lines = Some(BufReader::new(file).lines());
            me.advance().await?;
        }
        Ok(me)
    }

    async fn advance(&mut self) -> BackupResult<()> {
        self.next = match &mut self.lines {
            Some(lines) => loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.is_empty() => {}
                    Ok(line) => break line,
                    Err(e) => return Err(BackupError::io("base ids", e)),
                }
            },
            None => None,
        };
        Ok(())
    }
}

/// Collects ids into pages and appends each full page to the archive.
struct IdPages {
    section: Section,
    buf: Vec<u8>,
    count: usize,
    total: u64,
}

impl IdPages {
    fn new(section: Section) -> Self {
        Self {
            section,
            buf: Vec::new(),
            count: 0,
            total: 0,
        }
    }

    async fn push(
        &mut self,
        writer: &mut ArchiveWriter,
        resource: &str,
        id: &str,
        page: usize,
    ) -> BackupResult<()> {
        self.buf.extend_from_slice(id.as_bytes());
        self.buf.push(b'\n');
        self.count += 1;
        self.total += 1;
        if self.count >= page {
            self.flush(writer, resource).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, writer: &mut ArchiveWriter, resource: &str) -> BackupResult<()> {
        if self.count > 0 {
            writer
                .append_page(resource, self.section, std::mem::take(&mut self.buf))
                .await?;
            self.count = 0;
        }
        Ok(())
    }
}

/// Archives one resource; `base_ids` is `Some` for an incremental backup with a base (the
/// base's id file, if it had any record).
async fn archive_resource(
    shared: &Shared,
    resource: &Resource,
    writer: &mut ArchiveWriter,
    secrets: &mut BackupSecrets<'_>,
    since: Option<DateTime<Utc>>,
    base_ids: Option<Option<std::path::PathBuf>>,
) -> BackupResult<ResourceSummary> {
    let page = shared.config.page_size;
    let name = resource.name().to_owned();
    // One definition for the whole resource: the paths recorded are the paths encrypted.
    let definition = resource.definition();
    let key = secrets.resource(&name, definition.secret_paths()).await?;
    let prefix = Key::parse(&format!("resource={name}/data"))?;
    let mut listing = resource.store().list(Some(&prefix));
    let mut base = BaseIds::open(base_ids.as_ref().and_then(|p| p.as_deref())).await?;
    let mut deleted = IdPages::new(Section::Deleted);
    let mut summary = ResourceSummary::default();
    let mut entries: Vec<ListEntry> = Vec::with_capacity(page);
    let mut pages = 0u64;
    loop {
        let next = listing.next().await.transpose()?;
        let done = next.is_none();
        if let Some(entry) = next {
            entries.push(entry);
        }
        if entries.len() < page && !done {
            continue;
        }
        if !entries.is_empty() {
            let batch = std::mem::take(&mut entries);
            let mut ids_page = Vec::new();
            let mut changed = Vec::new();
            for entry in &batch {
                let Some(id) = entry.key.last_part().strip_prefix("id=") else {
                    continue;
                };
                ids_page.extend_from_slice(id.as_bytes());
                ids_page.push(b'\n');
                summary.present += 1;
                if base_ids.is_some() {
                    // Both lists are in key order: whatever the base had before `id` is gone.
                    while let Some(old) = base.next.as_deref() {
                        if old >= id {
                            break;
                        }
                        let old = old.to_owned();
                        deleted.push(writer, &name, &old, page).await?;
                        base.advance().await?;
                    }
                    if base.next.as_deref() == Some(id) {
                        base.advance().await?;
                    }
                }
                if since.is_none_or(|s| entry.last_modified >= s) {
                    changed.push(id.to_owned());
                }
            }
            writer.append_page(&name, Section::Ids, ids_page).await?;
            let reads: Vec<_> = changed
                .iter()
                .map(|id| resource.get_from_store(id))
                .collect();
            let records: Vec<_> = futures::stream::iter(reads)
                .buffered(shared.config.concurrency)
                .collect()
                .await;
            let mut lines = Vec::new();
            for record in records {
                let record = match record {
                    Ok(r) => r,
                    // Deleted since it was listed: the next backup records the deletion.
                    Err(s3db_core::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                let mut doc = record.data().clone();
                if let Some(key) = &key {
                    secrets::encrypt_record(definition.schema(), &mut doc, key)?;
                }
                doc.insert(
                    "id".to_owned(),
                    serde_json::Value::String(record.id().to_owned()),
                );
                serde_json::to_writer(&mut lines, &doc).map_err(|e| {
                    BackupError::CorruptArchive {
                        id: name.clone(),
                        reason: e.to_string(),
                    }
                })?;
                lines.push(b'\n');
                summary.records += 1;
            }
            if !lines.is_empty() {
                writer.append_page(&name, Section::Records, lines).await?;
            }
            pages += 1;
            tracing::debug!(
                resource = %name,
                pages,
                listed = summary.present,
                archived = summary.records,
                "backup progress"
            );
        }
        if done {
            break;
        }
    }
    if base_ids.is_some() {
        while let Some(old) = base.next.clone() {
            deleted.push(writer, &name, &old, page).await?;
            base.advance().await?;
        }
    }
    deleted.flush(writer, &name).await?;
    summary.deleted = deleted.total;
    tracing::info!(
        resource = %name,
        listed = summary.present,
        archived = summary.records,
        deleted = summary.deleted,
        "resource archived"
    );
    Ok(summary)
}
