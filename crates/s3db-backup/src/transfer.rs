//! Moving archives to and from the destinations: uploads with the multi strategies and
//! read-back verification, verified downloads, deletes.

use std::path::Path;
use std::sync::Arc;

use tempfile::TempPath;

use crate::archive::sha256_file;
use crate::driver::{ArchiveTarget, BackupDriver, Driver, MultiStrategy};
use crate::error::{BackupError, BackupResult};
use crate::metadata::{BackupInfo, DriverResult};

fn temp_file(work: &Path) -> BackupResult<TempPath> {
    tempfile::Builder::new()
        .prefix(".s3db-backup-dl-")
        .tempfile_in(work)
        .map(tempfile::NamedTempFile::into_temp_path)
        .map_err(|e| BackupError::io(work, e))
}

/// Downloads from one destination into a temporary file and checks the checksum.
async fn get_verified(
    id: &str,
    destination: &dyn BackupDriver,
    location: &str,
    checksum: &str,
    work: &Path,
) -> BackupResult<TempPath> {
    let file = temp_file(work)?;
    destination.get(location, &file).await?;
    let actual = sha256_file(&file).await?;
    if actual != checksum {
        return Err(BackupError::ChecksumMismatch {
            id: id.to_owned(),
            expected: checksum.to_owned(),
            actual,
        });
    }
    Ok(file)
}

async fn put_one(
    label: String,
    destination: Arc<dyn BackupDriver>,
    target: &ArchiveTarget,
    archive: &Path,
    verify: bool,
    work: &Path,
) -> DriverResult {
    let span = tracing::info_span!("backup_upload", destination = %label);
    let attempt = async {
        let location = destination.put(target, archive).await?;
        if verify
            && let Err(e) = get_verified(
                &target.id,
                destination.as_ref(),
                &location,
                &target.checksum,
                work,
            )
            .await
        {
            let _ = destination.delete(&location).await;
            return Err(e);
        }
        Ok::<_, BackupError>(location)
    };
    match tracing::Instrument::instrument(attempt, span).await {
        Ok(location) => DriverResult {
            destination: label,
            location: Some(location),
            ok: true,
            error: None,
        },
        Err(e) => {
            tracing::warn!(destination = %label, error = %e, "backup upload failed");
            DriverResult {
                destination: label,
                location: None,
                ok: false,
                error: Some(e.to_string()),
            }
        }
    }
}

/// Uploads the archive as the driver's strategy says; returns every destination's result and
/// whether the upload as a whole succeeded. When it did not, the uploads that succeeded are
/// deleted again.
pub(crate) async fn upload(
    driver: &Driver,
    target: &ArchiveTarget,
    archive: &Path,
    verify: bool,
    work: &Path,
) -> (Vec<DriverResult>, bool) {
    let destinations = driver.destinations();
    let strategy = driver.strategy();
    let mut results = Vec::new();
    match strategy {
        MultiStrategy::Priority => {
            for (label, d) in destinations {
                let r = put_one(label, d, target, archive, verify, work).await;
                let ok = r.ok;
                results.push(r);
                if ok {
                    break;
                }
            }
        }
        MultiStrategy::All | MultiStrategy::Any => {
            let puts = destinations
                .into_iter()
                .map(|(label, d)| put_one(label, d, target, archive, verify, work));
            results = futures::future::join_all(puts).await;
        }
    }
    let ok = match strategy {
        MultiStrategy::All => results.iter().all(|r| r.ok),
        MultiStrategy::Any | MultiStrategy::Priority => results.iter().any(|r| r.ok),
    };
    if !ok {
        for r in &mut results {
            if let (true, Some(location)) = (r.ok, r.location.take())
                && let Some(d) = find(driver, &r.destination)
            {
                let _ = d.delete(&location).await;
                r.ok = false;
                r.error = Some("rolled back: the backup failed at another destination".to_owned());
            }
        }
    }
    (results, ok)
}

fn find(driver: &Driver, label: &str) -> Option<Arc<dyn BackupDriver>> {
    driver
        .destinations()
        .into_iter()
        .find(|(l, _)| l == label)
        .map(|(_, d)| d)
}

/// Downloads a completed backup from the first destination that holds a copy with the right
/// checksum.
pub(crate) async fn fetch_verified(
    driver: &Driver,
    info: &BackupInfo,
    work: &Path,
) -> BackupResult<TempPath> {
    let checksum = info.checksum.clone().unwrap_or_default();
    let mut last: Option<BackupError> = None;
    for r in info.drivers.iter().filter(|r| r.ok) {
        let (Some(location), Some(d)) = (&r.location, find(driver, &r.destination)) else {
            continue;
        };
        match get_verified(&info.id, d.as_ref(), location, &checksum, work).await {
            Ok(file) => return Ok(file),
            Err(e) => {
                tracing::warn!(backup = %info.id, destination = %r.destination, error = %e, "cannot read the archive here");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        BackupError::driver(
            "any",
            format!(
                "no configured destination holds backup {} (destinations that have it: {:?})",
                info.id,
                info.drivers
                    .iter()
                    .filter(|r| r.ok)
                    .map(|r| r.destination.as_str())
                    .collect::<Vec<_>>()
            ),
        )
    }))
}

/// Deletes every uploaded copy of a backup.
pub(crate) async fn delete(driver: &Driver, info: &BackupInfo) -> BackupResult<()> {
    let mut first: Option<BackupError> = None;
    for r in info.drivers.iter().filter(|r| r.ok) {
        let (Some(location), Some(d)) = (&r.location, find(driver, &r.destination)) else {
            continue;
        };
        if let Err(e) = d.delete(location).await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
