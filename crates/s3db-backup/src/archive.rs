//! The archive: a tar stream, gzip-compressed, written to a temporary file as records arrive and
//! hashed (SHA-256) on the way out.
//!
//! Layout (entries in this order):
//! ```text
//! s3db.json                                  the database metadata at backup time
//! resources/<r>/ids/<n>.txt                  ids present, one per line, in key order (one entry per page)
//! resources/<r>/records/<n>.jsonl            records, one JSON object per line (`id` included)
//! resources/<r>/deleted/<n>.txt              ids deleted since the base (incremental)
//! manifest.json                              the backup's summary, written last
//! ```
//! Records hold `secret` attributes encrypted under the backup passphrase (the manifest's
//! `secrets` says how: salt, key check, paths), or in clear if the plaintext opt-in was given.
//! Every page of records becomes its own tar entry, so a page is the most the writer holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tempfile::TempPath;

use crate::error::{BackupError, BackupResult};
use crate::metadata::{BackupKind, ResourceSummary};
use crate::secrets::ManifestSecrets;

/// Version of the archive layout written (2: the manifest says how secrets are held; a reader
/// of version 1 would take encrypted secrets for plaintext, so it must refuse these archives).
pub(crate) const FORMAT: u32 = 2;
/// Oldest layout read (1: no `secrets` in the manifest, secrets in clear).
pub(crate) const MIN_FORMAT: u32 = 1;
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const DATABASE_METADATA: &str = "s3db.json";

/// The summary stored as the archive's last entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) id: String,
    pub(crate) kind: BackupKind,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) resources: BTreeMap<String, ResourceSummary>,
    /// How `secret` attributes are held (absent in format 1: in clear).
    #[serde(default)]
    pub(crate) secrets: ManifestSecrets,
}

/// The sections of a resource in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Section {
    Ids,
    Records,
    Deleted,
}

impl Section {
    fn dir(self) -> &'static str {
        match self {
            Section::Ids => "ids",
            Section::Records => "records",
            Section::Deleted => "deleted",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Section::Records => "jsonl",
            Section::Ids | Section::Deleted => "txt",
        }
    }

    fn parse(dir: &str) -> Option<Self> {
        [Section::Ids, Section::Records, Section::Deleted]
            .into_iter()
            .find(|s| s.dir() == dir)
    }
}

/// Counts and hashes what goes through it.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Tar = tar::Builder<GzEncoder<HashWriter<BufWriter<File>>>>;

/// A finished archive: a temporary file (deleted when this is dropped), its size and checksum.
#[derive(Debug)]
pub(crate) struct Archive {
    pub(crate) path: TempPath,
    pub(crate) size: u64,
    pub(crate) checksum: String,
}

/// Writes an archive entry by entry; every write runs on the blocking pool.
pub(crate) struct ArchiveWriter {
    tar: Option<Tar>,
    path: Option<TempPath>,
    mtime: u64,
    entries: BTreeMap<(String, Section), u32>,
}

impl ArchiveWriter {
    /// A new archive in a temporary file in `dir`.
    pub(crate) fn create(dir: &Path, started_at: DateTime<Utc>) -> BackupResult<Self> {
        let tmp = tempfile::Builder::new()
            .prefix(".s3db-backup-")
            .suffix(".tar.gz")
            .tempfile_in(dir)
            .map_err(|e| BackupError::io(dir, e))?;
        let (file, path) = tmp.into_parts();
        let sink = HashWriter {
            inner: BufWriter::with_capacity(64 * 1024, file),
            hasher: Sha256::new(),
            written: 0,
        };
        let mut tar = tar::Builder::new(GzEncoder::new(sink, Compression::default()));
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(Self {
            tar: Some(tar),
            path: Some(path),
            mtime: u64::try_from(started_at.timestamp()).unwrap_or(0),
            entries: BTreeMap::new(),
        })
    }

    fn file_path(&self) -> PathBuf {
        self.path
            .as_ref()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    }

    /// Appends one entry.
    pub(crate) async fn append(&mut self, name: String, data: Vec<u8>) -> BackupResult<()> {
        let Some(mut tar) = self.tar.take() else {
            return Err(BackupError::io(
                self.file_path(),
                io::Error::other("the archive writer failed earlier"),
            ));
        };
        let mtime = self.mtime;
        let (tar, result) = tokio::task::spawn_blocking(move || {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            header.set_entry_type(tar::EntryType::Regular);
            let result = tar.append_data(&mut header, &name, data.as_slice());
            (tar, result)
        })
        .await
        .map_err(|e| BackupError::io(self.file_path(), io::Error::other(e)))?;
        result.map_err(|e| BackupError::io(self.file_path(), e))?;
        self.tar = Some(tar);
        Ok(())
    }

    /// Appends the next page of a resource's section.
    pub(crate) async fn append_page(
        &mut self,
        resource: &str,
        section: Section,
        data: Vec<u8>,
    ) -> BackupResult<()> {
        let n = self
            .entries
            .entry((resource.to_owned(), section))
            .or_insert(0);
        *n += 1;
        let name = format!(
            "resources/{resource}/{}/{:06}.{}",
            section.dir(),
            *n,
            section.ext()
        );
        self.append(name, data).await
    }

    /// Ends the archive (the manifest must have been appended) and returns it.
    pub(crate) async fn finish(mut self) -> BackupResult<Archive> {
        let path = self.file_path();
        let (Some(tar), Some(temp)) = (self.tar.take(), self.path.take()) else {
            return Err(BackupError::io(
                path,
                io::Error::other("the archive writer failed earlier"),
            ));
        };
        let p = path.clone();
        let (size, checksum) = tokio::task::spawn_blocking(move || -> io::Result<(u64, String)> {
            let gz = tar.into_inner()?;
            let mut sink = gz.finish()?;
            sink.flush()?;
            let file = sink
                .inner
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            file.sync_all()?;
            Ok((sink.written, hex(&sink.hasher.finalize())))
        })
        .await
        .map_err(|e| BackupError::io(&p, io::Error::other(e)))?
        .map_err(|e| BackupError::io(&p, e))?;
        Ok(Archive {
            path: temp,
            size,
            checksum,
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The SHA-256 of a file, read in 64 KiB blocks.
pub(crate) async fn sha256_file(path: &Path) -> BackupResult<String> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> io::Result<String> {
        let mut file = File::open(&p)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(buf.get(..n).unwrap_or_default());
        }
        Ok(hex(&hasher.finalize()))
    })
    .await
    .map_err(|e| BackupError::io(path, io::Error::other(e)))?
    .map_err(|e| BackupError::io(path, e))
}

/// An archive unpacked for reading: per wanted resource and section, one file with the
/// concatenated pages, in a temporary folder.
#[derive(Debug)]
pub(crate) struct Unpacked {
    pub(crate) manifest: Manifest,
    /// Removed (with the files) when this is dropped.
    _dir: tempfile::TempDir,
    files: BTreeMap<(String, Section), PathBuf>,
}

impl Unpacked {
    /// The file of a resource's section, if the archive has one.
    pub(crate) fn file(&self, resource: &str, section: Section) -> Option<&Path> {
        self.files
            .get(&(resource.to_owned(), section))
            .map(PathBuf::as_path)
    }
}

/// Largest manifest accepted (it lists resources, not records).
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;

/// Reads `archive`, keeping the given sections of the given resources (all resources for
/// `None`), on the blocking pool. Anything unreadable is [`BackupError::CorruptArchive`].
pub(crate) async fn unpack(
    id: &str,
    archive: &Path,
    work_dir: &Path,
    resources: Option<BTreeSet<String>>,
    sections: BTreeSet<Section>,
) -> BackupResult<Unpacked> {
    let dir = tempfile::Builder::new()
        .prefix(".s3db-restore-")
        .tempdir_in(work_dir)
        .map_err(|e| BackupError::io(work_dir, e))?;
    let (archive, out) = (archive.to_path_buf(), dir.path().to_path_buf());
    let corrupt = {
        let id = id.to_owned();
        move |reason: String| BackupError::CorruptArchive {
            id: id.clone(),
            reason,
        }
    };
    let c = corrupt.clone();
    let (manifest, files) = tokio::task::spawn_blocking(move || {
        unpack_blocking(&archive, &out, resources.as_ref(), &sections, &c)
    })
    .await
    .map_err(|e| corrupt(e.to_string()))??;
    Ok(Unpacked {
        manifest,
        _dir: dir,
        files,
    })
}

type Files = BTreeMap<(String, Section), PathBuf>;

fn unpack_blocking(
    archive: &Path,
    out: &Path,
    resources: Option<&BTreeSet<String>>,
    sections: &BTreeSet<Section>,
    corrupt: &dyn Fn(String) -> BackupError,
) -> BackupResult<(Manifest, Files)> {
    let file = File::open(archive).map_err(|e| BackupError::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(64 * 1024, file)));
    let mut manifest: Option<Manifest> = None;
    let mut files: Files = BTreeMap::new();
    let mut handles: BTreeMap<(String, Section), File> = BTreeMap::new();
    let entries = tar.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if name == MANIFEST {
            if entry.size() > MAX_MANIFEST {
                return Err(corrupt("the manifest is too large".to_owned()));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| corrupt(e.to_string()))?;
            let m: Manifest =
                serde_json::from_str(&text).map_err(|e| corrupt(format!("bad manifest: {e}")))?;
            if !(MIN_FORMAT..=FORMAT).contains(&m.format) {
                return Err(corrupt(format!(
                    "archive format {} is not supported (this version reads {MIN_FORMAT} to {FORMAT})",
                    m.format
                )));
            }
            manifest = Some(m);
            continue;
        }
        let mut parts = name.split('/');
        let (Some("resources"), Some(resource), Some(section), Some(_page), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue; // s3db.json, or an entry a later version added
        };
        let Some(section) = Section::parse(section) else {
            continue;
        };
        if !sections.contains(&section) || resources.is_some_and(|r| !r.contains(resource)) {
            continue;
        }
        let key = (resource.to_owned(), section);
        if !handles.contains_key(&key) {
            let path = out.join(format!("{}.{}", files.len(), section.dir()));
            let f = File::create(&path).map_err(|e| BackupError::io(&path, e))?;
            files.insert(key.clone(), path);
            handles.insert(key.clone(), f);
        }
        if let Some(f) = handles.get_mut(&key) {
            io::copy(&mut entry, f).map_err(|e| corrupt(e.to_string()))?;
        }
    }
    for (key, f) in handles {
        f.sync_all()
            .map_err(|e| BackupError::io(files.get(&key).cloned().unwrap_or_default(), e))?;
    }
    let manifest = manifest.ok_or_else(|| corrupt("the archive has no manifest".to_owned()))?;
    Ok((manifest, files))
}
