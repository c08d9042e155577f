//! The `file://` backend: an [`ObjectStore`] over a local folder with user metadata and atomic
//! conditional create and update that hold across OS processes.
//!
//! object_store's own `LocalFileSystem` stores no user metadata and has no conditional update, so
//! this backend is written for s3db. Its design:
//!
//! - **One file per object.** An object at key `a/b/c` is the file `a/b/c%obj` below the root: a
//!   small header (magic, length, then JSON with the key, ETag, modification time and attributes
//!   including user metadata) followed by the body. Header and body are one file, so they always
//!   change together.
//! - **Atomic publication.** Every write goes to a unique temporary file in the same folder and is
//!   renamed over the object file; readers open the file once and see either the old or the new
//!   object, never a mix. With `fsync` on, the temporary file is flushed before the rename.
//! - **Per-key lock across processes.** Every write (put in any mode, copy onto, delete) holds an
//!   exclusive `flock` on the key's lock file `a/b/c%lock` while it checks the precondition and
//!   renames. The lock file may be removed by a delete while another writer waits on it, so after
//!   locking, a writer checks that the path still names the inode it locked and starts over if not.
//! - **ETags** are random 128-bit values: every write gets a new one, so a conditional update can
//!   never be fooled by an old version coming back (no ABA).
//! - **Names.** `%` in a key part is written `%25`, so names made by s3db never contain `%`
//!   followed by a non-hex letter; the suffixes `%obj`, `%lock`, `%tmp…` and `%name` are therefore
//!   unambiguous and a key `a` can coexist with keys below `a/` as on S3. A key part whose name would
//!   exceed 200 bytes is stored as `%L<sha256>`; a folder with such a name carries its real name in
//!   a `%name` file, and an object file always carries its full key in its header.
//! - **Listing** walks the folder below the prefix, reads each object's header and returns keys in
//!   lexicographic order, like S3.
//!
//! The locking relies on POSIX `flock` semantics on a local file system (Linux, macOS); network file
//! systems that do not implement `flock` faithfully are not supported.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyMode, CopyOptions, GetOptions, GetResult,
    GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const STORE_NAME: &str = "FileStore";
const OBJECT_SUFFIX: &str = "%obj";
const LOCK_SUFFIX: &str = "%lock";
const TEMP_MARK: &str = "%tmp";
const NAME_FILE: &str = "%name";
const LONG_MARK: &str = "%L";
const MAX_PLAIN_NAME: usize = 200;
const MAGIC: &[u8; 8] = b"S3DBOBJ1";

/// An [`ObjectStore`] over a local folder; see the module documentation for the on-disk design.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    fsync: bool,
}

impl FileStore {
    /// A store rooted at `root` (created on first write). With `fsync`, every object is flushed
    /// to the disk before it is renamed into place.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>, fsync: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                root: root.into(),
                fsync,
            }),
        }
    }

    /// The folder this store writes to.
    #[must_use]
    pub fn root(&self) -> &FsPath {
        &self.inner.root
    }

    async fn blocking<T, F>(&self, f: F) -> object_store::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> object_store::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.inner.root)
            .field("fsync", &self.inner.fsync)
            .finish()
    }
}

impl fmt::Display for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileStore({})", self.inner.root.display())
    }
}

/// The JSON header stored in front of every object's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    key: String,
    etag: String,
    modified_ms: i64,
    #[serde(default)]
    attrs: Vec<(String, String)>,
}

impl Header {
    fn new(key: &Path, attributes: &Attributes) -> Self {
        Self {
            key: key.as_ref().to_owned(),
            etag: new_etag(),
            modified_ms: Utc::now().timestamp_millis(),
            attrs: encode_attributes(attributes),
        }
    }

    fn meta(&self, size: u64) -> object_store::Result<ObjectMeta> {
        Ok(ObjectMeta {
            location: Path::parse(&self.key)?,
            last_modified: millis_to_time(self.modified_ms),
            size,
            e_tag: Some(self.etag.clone()),
            version: None,
        })
    }
}

/// Where one key lives on disk.
struct Location {
    /// Folder segments, encoded, with the real names of long segments.
    dirs: Vec<(String, Option<String>)>,
    dir: PathBuf,
    data: PathBuf,
    lock: PathBuf,
    base: String,
}

impl Inner {
    fn locate(&self, path: &Path) -> object_store::Result<Location> {
        let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_owned()).collect();
        let Some((last, dirs)) = parts.split_last() else {
            return Err(invalid_path(path, "the key is empty"));
        };
        let mut dir = self.root.clone();
        let mut encoded_dirs = Vec::with_capacity(dirs.len());
        for segment in dirs {
            let (name, long) = encode_segment(segment);
            dir.push(&name);
            encoded_dirs.push((name, long.then(|| segment.clone())));
        }
        let (base, _) = encode_segment(last);
        Ok(Location {
            data: dir.join(format!("{base}{OBJECT_SUFFIX}")),
            lock: dir.join(format!("{base}{LOCK_SUFFIX}")),
            dirs: encoded_dirs,
            dir,
            base,
        })
    }

    fn prefix_dir(&self, prefix: Option<&Path>) -> PathBuf {
        let mut dir = self.root.clone();
        if let Some(prefix) = prefix {
            for segment in prefix.parts() {
                dir.push(encode_segment(segment.as_ref()).0);
            }
        }
        dir
    }

    /// Creates the folders of a location, with `%name` files for long names.
    fn ensure_dirs(&self, loc: &Location) -> io::Result<()> {
        fs::create_dir_all(&loc.dir)?;
        let mut dir = self.root.clone();
        for (name, real) in &loc.dirs {
            dir.push(name);
            if let Some(real) = real {
                let name_file = dir.join(NAME_FILE);
                if !name_file.exists() {
                    let tmp = dir.join(format!("{NAME_FILE}{TEMP_MARK}{}", unique_suffix()));
                    fs::write(&tmp, real.as_bytes())?;
                    fs::rename(&tmp, &name_file)?;
                }
            }
        }
        Ok(())
    }

    /// Runs `f` while holding the exclusive lock of `loc`'s key.
    fn with_lock<T>(
        &self,
        path: &Path,
        loc: &Location,
        f: impl FnOnce() -> object_store::Result<T>,
    ) -> object_store::Result<T> {
        let lock_file = loop {
            self.ensure_dirs(loc).map_err(|e| io_error(path, e))?;
            let file = match OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&loc.lock)
            {
                Ok(file) => file,
                // A folder was removed between creating it and opening the lock: start over.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(path, e)),
            };
            file.lock().map_err(|e| io_error(path, e))?;
            let held = file.metadata().map_err(|e| io_error(path, e))?;
            match fs::metadata(&loc.lock) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => break file,
                // The lock file was deleted (and maybe recreated) while we waited: retry.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(path, e)),
            }
        };
        let result = f();
        drop(lock_file);
        result
    }

    /// Writes `header` + `body` to a temporary file and renames it over the object.
    fn publish(
        &self,
        path: &Path,
        loc: &Location,
        header: &Header,
        body: &PutPayload,
    ) -> object_store::Result<()> {
        let tmp = loc
            .dir
            .join(format!("{}{TEMP_MARK}{}", loc.base, unique_suffix()));
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            let header_json = serde_json::to_vec(header).map_err(io::Error::other)?;
            let header_len = u32::try_from(header_json.len())
                .map_err(|_| io::Error::other("object header larger than 4 GiB"))?;
            let mut buf = Vec::with_capacity(12 + header_json.len() + body.content_length());
            buf.extend_from_slice(MAGIC);
            buf.extend_from_slice(&header_len.to_le_bytes());
            buf.extend_from_slice(&header_json);
            for chunk in body {
                buf.extend_from_slice(chunk);
            }
            file.write_all(&buf)?;
            if self.fsync {
                file.sync_all()?;
            }
            fs::rename(&tmp, &loc.data)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error(path, e)
        })
    }

    fn put(
        &self,
        path: &Path,
        payload: &PutPayload,
        opts: &PutOptions,
    ) -> object_store::Result<PutResult> {
        let loc = self.locate(path)?;
        self.with_lock(path, &loc, || {
            let current = read_header_at(&loc.data).map_err(|e| io_error(path, e))?;
            match (&opts.mode, current) {
                (PutMode::Overwrite, _) | (PutMode::Create, None) => {}
                (PutMode::Create, Some(_)) => return Err(already_exists(path)),
                (PutMode::Update(_), None) => {
                    return Err(precondition(path, "the object does not exist"));
                }
                (PutMode::Update(version), Some((header, _))) => {
                    if version.e_tag.as_deref() != Some(header.etag.as_str()) {
                        return Err(precondition(path, "the ETag does not match"));
                    }
                }
            }
            let header = Header::new(path, &opts.attributes);
            self.publish(path, &loc, &header, payload)?;
            Ok(PutResult {
                e_tag: Some(header.etag),
                version: None,
                extensions: Default::default(),
            })
        })
    }

    fn get(
        &self,
        path: &Path,
        options: &GetOptions,
    ) -> object_store::Result<(ObjectMeta, Attributes, Range<u64>, Bytes)> {
        if options.version.is_some() {
            return Err(object_store::Error::NotSupported {
                source: "the file backend keeps no object versions".into(),
            });
        }
        let loc = self.locate(path)?;
        let mut file = match File::open(&loc.data) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found(path)),
            Err(e) => return Err(io_error(path, e)),
        };
        let (header, body_offset) = read_header(&mut file).map_err(|e| io_error(path, e))?;
        let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
        let size = file_len.saturating_sub(body_offset);
        let meta = header.meta(size)?;
        options.check_preconditions(&meta)?;
        let attributes = decode_attributes(&header.attrs);
        let range = match &options.range {
            Some(range) => range
                .as_range(size)
                .map_err(|e| object_store::Error::Generic {
                    store: STORE_NAME,
                    source: Box::new(e),
                })?,
            None => 0..size,
        };
        if options.head {
            return Ok((meta, attributes, range, Bytes::new()));
        }
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| io_error(path, io::Error::other("range too large for this platform")))?;
        let mut buf = vec![0; len];
        file.seek(SeekFrom::Start(body_offset + range.start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| io_error(path, e))?;
        Ok((meta, attributes, range, Bytes::from(buf)))
    }

    fn delete(&self, path: &Path) -> object_store::Result<()> {
        let loc = self.locate(path)?;
        if !loc.data.exists() && !loc.lock.exists() {
            return Ok(()); // Deleting a missing key succeeds, as on S3.
        }
        self.with_lock(path, &loc, || {
            match fs::remove_file(&loc.data) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(path, e)),
            }
            // Removing the lock file while holding it is safe: waiters re-check the inode.
            match fs::remove_file(&loc.lock) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(path, e)),
            }
        })
    }

    fn copy(&self, from: &Path, to: &Path, mode: &CopyMode) -> object_store::Result<()> {
        let (_, attributes, _, body) = self.get(from, &GetOptions::default())?;
        let put = PutOptions {
            mode: match mode {
                CopyMode::Overwrite => PutMode::Overwrite,
                CopyMode::Create => PutMode::Create,
            },
            attributes,
            ..PutOptions::default()
        };
        self.put(to, &PutPayload::from_bytes(body), &put)
            .map(|_| ())
    }

    /// Every object below `prefix`, in key order.
    fn list(&self, prefix: Option<&Path>) -> object_store::Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let dir = self.prefix_dir(prefix);
        walk(&dir, &mut out).map_err(|e| io_error(prefix.unwrap_or(&Path::ROOT), e))?;
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let dir = self.prefix_dir(prefix);
        let at = |e| io_error(prefix.unwrap_or(&Path::ROOT), e);
        let mut objects = Vec::new();
        let mut common_prefixes = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(ListResult {
                    common_prefixes,
                    objects,
                    extensions: Default::default(),
                });
            }
            Err(e) => return Err(at(e)),
        };
        for entry in entries {
            let entry = entry.map_err(at)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let file_type = entry.file_type().map_err(at)?;
            if file_type.is_dir() {
                if !dir_has_objects(&entry.path()).map_err(at)? {
                    continue;
                }
                let real = if name.starts_with(LONG_MARK) {
                    fs::read_to_string(entry.path().join(NAME_FILE)).map_err(at)?
                } else {
                    decode_segment(&name)
                };
                let base = prefix.cloned().unwrap_or_default();
                common_prefixes.push(base.join(real.as_str()));
            } else if name.ends_with(OBJECT_SUFFIX)
                && let Some(meta) = object_meta(&entry.path()).map_err(at)?
            {
                objects.push(meta?);
            }
        }
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        common_prefixes.sort();
        Ok(ListResult {
            common_prefixes,
            objects,
            extensions: Default::default(),
        })
    }
}

fn walk(dir: &FsPath, out: &mut Vec<ObjectMeta>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(&entry.path(), out)?;
        } else if entry.file_name().to_string_lossy().ends_with(OBJECT_SUFFIX)
            && let Some(meta) = object_meta(&entry.path())?
        {
            out.push(meta.map_err(io::Error::other)?);
        }
    }
    Ok(())
}

fn dir_has_objects(dir: &FsPath) -> io::Result<bool> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            if dir_has_objects(&entry.path())? {
                return Ok(true);
            }
        } else if entry.file_name().to_string_lossy().ends_with(OBJECT_SUFFIX) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The metadata of the object file at `file`, or `None` if it vanished meanwhile.
fn object_meta(file: &FsPath) -> io::Result<Option<object_store::Result<ObjectMeta>>> {
    match read_header_at(file)? {
        Some((header, size)) => Ok(Some(header.meta(size))),
        None => Ok(None),
    }
}

/// Reads the header of the object file at `file`; `None` if there is none. Returns the header and
/// the body size.
fn read_header_at(file: &FsPath) -> io::Result<Option<(Header, u64)>> {
    let mut f = match File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (header, offset) = read_header(&mut f)?;
    let len = f.metadata()?.len();
    Ok(Some((header, len.saturating_sub(offset))))
}

/// Reads the header from the start of an object file; returns it and the body's offset.
fn read_header(file: &mut File) -> io::Result<(Header, u64)> {
    let mut fixed = [0u8; 12];
    file.read_exact(&mut fixed)?;
    if &fixed[..8] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an s3db object file (bad magic)",
        ));
    }
    let len = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    let mut json = vec![0; len as usize];
    file.read_exact(&mut json)?;
    let header: Header =
        serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((header, 12 + u64::from(len)))
}

fn encode_segment(segment: &str) -> (String, bool) {
    let encoded = segment.replace('%', "%25");
    if encoded.len() <= MAX_PLAIN_NAME {
        return (encoded, false);
    }
    let digest = Sha256::digest(segment.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (format!("{LONG_MARK}{hex}"), true)
}

fn decode_segment(name: &str) -> String {
    name.replace("%25", "%")
}

fn encode_attributes(attributes: &Attributes) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|(k, v)| {
            let name = match k {
                Attribute::ContentDisposition => "content-disposition".to_owned(),
                Attribute::ContentEncoding => "content-encoding".to_owned(),
                Attribute::ContentLanguage => "content-language".to_owned(),
                Attribute::ContentType => "content-type".to_owned(),
                Attribute::CacheControl => "cache-control".to_owned(),
                Attribute::StorageClass => "storage-class".to_owned(),
                Attribute::Metadata(name) => format!("meta:{name}"),
                // Attributes added by later object_store versions are kept under their Debug name.
                #[allow(unreachable_patterns)]
                other => format!("other:{other:?}"),
            };
            (name, v.as_ref().to_owned())
        })
        .collect()
}

fn decode_attributes(attrs: &[(String, String)]) -> Attributes {
    attrs
        .iter()
        .filter_map(|(name, value)| {
            let attribute = match name.as_str() {
                "content-disposition" => Attribute::ContentDisposition,
                "content-encoding" => Attribute::ContentEncoding,
                "content-language" => Attribute::ContentLanguage,
                "content-type" => Attribute::ContentType,
                "cache-control" => Attribute::CacheControl,
                "storage-class" => Attribute::StorageClass,
                other => Attribute::Metadata(other.strip_prefix("meta:")?.to_owned().into()),
            };
            Some((attribute, AttributeValue::from(value.clone())))
        })
        .collect()
}

fn new_etag() -> String {
    format!("\"{:032x}\"", rand::random::<u128>())
}

fn unique_suffix() -> String {
    format!(".{:016x}", rand::random::<u64>())
}

fn millis_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn io_error(path: &Path, e: io::Error) -> object_store::Error {
    if e.kind() == io::ErrorKind::NotFound {
        return not_found(path);
    }
    object_store::Error::Generic {
        store: STORE_NAME,
        source: format!("{path}: {e}").into(),
    }
}

fn not_found(path: &Path) -> object_store::Error {
    object_store::Error::NotFound {
        path: path.to_string(),
        source: "no such object".into(),
    }
}

fn already_exists(path: &Path) -> object_store::Error {
    object_store::Error::AlreadyExists {
        path: path.to_string(),
        source: "an object exists at this key".into(),
    }
}

fn precondition(path: &Path, why: &str) -> object_store::Error {
    object_store::Error::Precondition {
        path: path.to_string(),
        source: why.to_owned().into(),
    }
}

fn invalid_path(path: &Path, why: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE_NAME,
        source: format!("invalid key {path:?}: {why}").into(),
    }
}

#[async_trait]
impl ObjectStore for FileStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let location = location.clone();
        self.blocking(move |inner| inner.put(&location, &payload, &opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(FileUpload {
            store: self.clone(),
            location: location.clone(),
            attributes: opts.attributes,
            parts: Vec::new(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let location = location.clone();
        let (meta, attributes, range, body) = self
            .blocking(move |inner| inner.get(&location, &options))
            .await?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async move { Ok(body) }).boxed()),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    let path = location.clone();
                    store.blocking(move |inner| inner.delete(&path)).await?;
                    Ok(location)
                }
            })
            .buffered(8)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let store = self.clone();
        let prefix = prefix.cloned();
        stream::once(async move {
            store
                .blocking(move |inner| inner.list(prefix.as_ref()))
                .await
        })
        .map(|listed| match listed {
            Ok(objects) => stream::iter(objects.into_iter().map(Ok)).boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let prefix = prefix.cloned();
        self.blocking(move |inner| inner.list_with_delimiter(prefix.as_ref()))
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let (from, to) = (from.clone(), to.clone());
        self.blocking(move |inner| inner.copy(&from, &to, &options.mode))
            .await
    }
}

/// A multipart upload to the file backend: parts are kept in memory and written as one object on
/// completion.
#[derive(Debug)]
struct FileUpload {
    store: FileStore,
    location: Path,
    attributes: Attributes,
    parts: Vec<PutPayload>,
}

#[async_trait]
impl MultipartUpload for FileUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts.push(data);
        Box::pin(async { Ok(()) })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let payload: PutPayload = std::mem::take(&mut self.parts)
            .into_iter()
            .flatten()
            .collect();
        let opts = PutOptions {
            attributes: std::mem::take(&mut self.attributes),
            ..PutOptions::default()
        };
        self.store.put_opts(&self.location, payload, opts).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for segment in ["id=abc", "50%", "%25", "x%obj", "é=ü"] {
            let (name, long) = encode_segment(segment);
            assert!(!long);
            assert_eq!(decode_segment(&name), segment);
            assert!(!name.ends_with(OBJECT_SUFFIX) || segment.ends_with("%obj"));
        }
        // A key part that ends like an object file is encoded so it cannot collide.
        assert_eq!(encode_segment("x%obj").0, "x%25obj");
        let (name, long) = encode_segment(&"v".repeat(300));
        assert!(long && name.starts_with(LONG_MARK) && name.len() < MAX_PLAIN_NAME);
    }
}
