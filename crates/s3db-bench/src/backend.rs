//! Backends: where a run stores its objects (a fresh prefix or folder per run).

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use object_store::path::Path;
use s3db_core::{ConnectionString, Store};
use tempfile::TempDir;

use crate::measure::{BoxError, CONCURRENCY};

/// Environment variable naming the S3 test server (set by `cargo xtask bench`).
pub const S3_ENV: &str = "S3DB_TEST_S3";

/// A kind of backend the workloads run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `memory://`: in-process memory.
    Memory,
    /// `file://`: a local folder.
    File,
    /// `http://`: the S3 test server named by [`S3_ENV`].
    S3,
}

impl BackendKind {
    /// Every backend, in the order they run.
    pub const ALL: [Self; 3] = [Self::Memory, Self::File, Self::S3];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::File => "file",
            Self::S3 => "s3",
        }
    }

    /// Objects per phase of the `store` workload when `--n` is not given (the S3 test server does
    /// ~150–200 requests/s).
    pub fn default_n(self) -> usize {
        match self {
            // Memory phases of 2000 operations last a few milliseconds: too short to time.
            Self::Memory => 20_000,
            Self::File => 2000,
            Self::S3 => 200,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or(())
    }
}

/// Identifies a run: milliseconds since the Unix epoch, used in prefixes.
pub fn run_id() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Where one backend's run stores its objects.
#[derive(Debug)]
pub struct Target {
    /// Which backend.
    pub kind: BackendKind,
    /// The connection of the run: the layer lives below `<prefix>/layer`, raw objects below
    /// `<prefix>/raw`.
    pub base: ConnectionString,
    /// The temporary folder of the file backend, removed when the target is dropped.
    _folder: Option<TempDir>,
}

/// Outcome of preparing a backend.
#[derive(Debug)]
pub enum Prepared {
    /// The backend can run.
    Ready(Target),
    /// The backend is not available; the reason is shown to the user.
    Skipped(String),
}

/// Prepares a fresh place for one run on `kind`.
pub fn prepare(kind: BackendKind, run_id: u128) -> Result<Prepared, BoxError> {
    let (base, folder) = match kind {
        BackendKind::Memory => (
            ConnectionString::parse(&format!("memory://bench/run-{run_id}"))?,
            None,
        ),
        BackendKind::File => {
            let folder = tempfile::Builder::new().prefix("s3db-bench-").tempdir()?;
            (ConnectionString::file(folder.path()), Some(folder))
        }
        BackendKind::S3 => {
            let Ok(server) = std::env::var(S3_ENV) else {
                return Ok(Prepared::Skipped(format!(
                    "{S3_ENV} is not set (run `cargo xtask bench <workload>`, or set it to \
                     http://KEY:SECRET@HOST:PORT/bucket)"
                )));
            };
            let conn = ConnectionString::parse(&server)
                .map_err(|e| format!("{S3_ENV} is not a valid connection string: {e}"))?;
            let prefix = join(conn.prefix(), &format!("bench-{run_id}"));
            (conn.with_prefix(&prefix)?, None)
        }
    };
    Ok(Prepared::Ready(Target {
        kind,
        base,
        _folder: folder,
    }))
}

impl Target {
    /// The connection string of the run, credentials redacted.
    pub fn description(&self) -> String {
        self.base.to_string()
    }

    /// The connection of the storage layer under test.
    pub fn layer_connection(&self) -> Result<ConnectionString, BoxError> {
        let prefix = join(self.base.prefix(), "layer");
        Ok(self.base.clone().with_prefix(&prefix)?)
    }

    /// The raw `object_store` path of raw object `name` (the run's prefix included).
    pub fn raw_path(&self, name: &str) -> Result<Path, BoxError> {
        Ok(Path::parse(join(&join(self.base.prefix(), "raw"), name))?)
    }

    /// The raw `object_store` path of `key` below the run's prefix (where a database connected
    /// at the run's connection string keeps its object `key`).
    pub fn path(&self, key: &str) -> Result<Path, BoxError> {
        Ok(Path::parse(join(self.base.prefix(), key))?)
    }

    /// The raw `object_store` prefix every raw object lives below.
    pub fn raw_root(&self) -> Result<Path, BoxError> {
        Ok(Path::parse(join(self.base.prefix(), "raw"))?)
    }
}

/// Deletes every object of the run (below its prefix); returns how many.
pub async fn clean_up(target: &Target) -> Result<usize, BoxError> {
    let store = Store::builder(target.base.clone()).build()?;
    let keys = store.list_keys(None).await?;
    for result in store.delete_many(&keys, CONCURRENCY).await {
        result?;
    }
    Ok(keys.len())
}

/// `a/b` from `a` and `b`, or `b` when `a` is empty.
fn join(prefix: &str, part: &str) -> String {
    if prefix.is_empty() {
        part.to_owned()
    } else {
        format!("{prefix}/{part}")
    }
}
