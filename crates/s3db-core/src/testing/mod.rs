//! Test kit (feature `testing`): test stores on every backend, a fault-injecting decorator, the
//! storage conformance suite and worker processes for cross-process tests ([`TestWorker`]), for
//! this workspace and for third parties.
//!
//! Server-backed tests find the S3 test server through `S3DB_TEST_S3` (a connection string such
//! as `http://test:test@127.0.0.1:PORT/s3db-test`), or the file `target/services/services.env`
//! that `cargo xtask services up` writes. Without a server they skip with a printed reason, unless
//! `CI=true`, where a missing server fails the test.

pub mod conformance;
pub mod plugin_conformance;
pub mod worker;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::store::fault::{
    FaultCounter, FaultMode, FaultPlan, FaultSwitch, FaultyStore, InjectedFault,
};
use crate::{ConnectionString, Store};
pub use worker::{TestWorker, WorkerError, WorkerOutput, worker_var};

/// Environment variable naming the S3 test server's connection string.
pub const S3_ENV: &str = "S3DB_TEST_S3";
/// Environment variable naming the SQS test server's endpoint URL.
pub const SQS_ENV: &str = "S3DB_TEST_SQS_ENDPOINT";

/// A store for one test, with whatever keeps its backend alive (a temporary folder).
#[derive(Debug)]
pub struct TestStore {
    /// The store, under a prefix of its own.
    pub store: Store,
    /// The connection string of the store (for other processes to open the same one).
    pub conn: ConnectionString,
    /// How many keys a listing test should write on this backend.
    pub big_list: usize,
    /// How many rounds a race test should run on this backend.
    pub race_rounds: usize,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A fresh `memory://` store.
    ///
    /// # Panics
    /// Never for valid test names (letters, digits, `-`, `_`).
    #[must_use]
    pub fn memory(test: &str) -> Self {
        let conn = ConnectionString::memory("s3db-tests", &unique_prefix(test))
            .unwrap_or_else(|e| panic!("memory connection for {test}: {e}"));
        Self::from_conn(conn, 1_500, 50, None)
    }

    /// A fresh `file://` store in a temporary folder, removed when this is dropped.
    ///
    /// # Panics
    /// If no temporary folder can be created.
    #[must_use]
    pub fn file(test: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("s3db-{test}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("temporary folder for {test}: {e}"));
        let conn = ConnectionString::file(dir.path());
        Self::from_conn(conn, 1_500, 50, Some(dir))
    }

    /// A store on the S3 test server under a fresh prefix, or `None` (with a printed reason) when
    /// no server is configured and `CI` is not `true`.
    ///
    /// # Panics
    /// When no server is configured and `CI=true`, or the configured string is malformed.
    #[must_use]
    pub fn s3(test: &str) -> Option<Self> {
        let conn = s3_connection()?;
        let conn = conn
            .with_prefix(&unique_prefix(test))
            .unwrap_or_else(|e| panic!("S3 test prefix for {test}: {e}"));
        // The test server answers ~150-200 requests/s: keep server-backed workloads small.
        Some(Self::from_conn(conn, 1_050, 50, None))
    }

    fn from_conn(
        conn: ConnectionString,
        big_list: usize,
        race_rounds: usize,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let store = Store::builder(conn.clone())
            .build()
            .unwrap_or_else(|e| panic!("opening {conn}: {e}"));
        Self {
            store,
            conn,
            big_list,
            race_rounds,
            _dir: dir,
        }
    }
}

/// A fresh `memory://` store behind a [`FaultyStore`] with `plan`, and the counter of the faults
/// it injects.
///
/// # Panics
/// Never for valid test names.
#[must_use]
pub fn faulty_memory_store(test: &str, plan: FaultPlan) -> (Store, FaultCounter) {
    let conn = ConnectionString::memory("s3db-faults", &unique_prefix(test))
        .unwrap_or_else(|e| panic!("memory connection for {test}: {e}"));
    let faulty_slot: std::sync::Arc<std::sync::Mutex<Option<FaultCounter>>> =
        std::sync::Arc::default();
    let slot = std::sync::Arc::clone(&faulty_slot);
    let store = Store::builder(conn)
        .layer(move |inner| {
            let faulty = FaultyStore::new(inner, plan);
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(faulty.counter());
            }
            std::sync::Arc::new(faulty)
        })
        .build()
        .unwrap_or_else(|e| panic!("opening a faulty store for {test}: {e}"));
    let counter = faulty_slot
        .lock()
        .ok()
        .and_then(|mut c| c.take())
        .unwrap_or_else(|| panic!("the fault layer was not built"));
    (store, counter)
}

/// A prefix no other test run uses: `t-<test>-<nanos>`.
#[must_use]
pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("t-{test}-{nanos:x}-{:04x}", rand::random::<u16>())
}

/// The S3 test server's connection string, if one is configured.
///
/// # Panics
/// When none is configured and `CI=true` (server-backed tests must run in CI).
#[must_use]
pub fn s3_connection() -> Option<ConnectionString> {
    let value = test_server_value(S3_ENV, "S3")?;
    match ConnectionString::parse(&value) {
        Ok(conn) => Some(conn),
        Err(e) => panic!("{S3_ENV} is malformed: {e}"),
    }
}

/// The SQS test server's endpoint URL (`http://127.0.0.1:<port>`), if one is configured: the
/// same server as [`s3_connection`] (moto), from `S3DB_TEST_SQS_ENDPOINT`.
///
/// # Panics
/// When none is configured and `CI=true` (server-backed tests must run in CI).
#[must_use]
pub fn sqs_endpoint() -> Option<String> {
    test_server_value(SQS_ENV, "SQS")
}

/// A test server's setting from the environment, else from `target/services/services.env`; when
/// neither has it, a panic under `CI=true`, otherwise `None` with a note (once per server kind).
fn test_server_value(variable: &str, kind: &'static str) -> Option<String> {
    let value = std::env::var(variable)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| services_env_value(variable));
    if value.is_some() {
        return value;
    }
    if ci() {
        panic!(
            "CI=true but no {kind} test server is configured: set {variable} or run `cargo xtask services up` \
             (`cargo xtask test` does this for you)"
        );
    }
    static NOTED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let first = NOTED
        .lock()
        .map(|mut noted| {
            let first = !noted.contains(&kind);
            if first {
                noted.push(kind);
            }
            first
        })
        .unwrap_or(true);
    if first {
        // Written past the test harness's capture so the reason is always visible.
        let _ = writeln!(
            std::io::stderr(),
            "note: skipping {kind}-server tests: no test server (set {variable} or run `cargo xtask services up`; \
             `cargo xtask test` starts one)"
        );
    }
    None
}

/// Whether `CI` says we run in CI.
#[must_use]
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Reads one variable from the nearest `target/services/services.env` above the working folder.
fn services_env_value(name: &str) -> Option<String> {
    let file = find_services_env(&std::env::current_dir().ok()?)?;
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_owned())
    })
}

fn find_services_env(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join("target/services/services.env"))
        .find(|candidate| candidate.is_file())
}
