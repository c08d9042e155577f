//! The SQL target: a SQLite database holding one table per replicated resource (feature `sql`).

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use rusqlite::{Connection, ErrorCode, OptionalExtension as _, params};
use s3db_core::plugin::async_trait;
use serde_json::Value;

use super::{ReplicationError, SourceResource, Target};
use crate::change::{Action, Change};

/// Default time SQLite waits for another connection's lock before answering "busy".
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Mirrors changes into a SQLite database: one table per replicated resource, named after the
/// resource's name on the target's side (its rename, if any), created on first use:
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "users" (
///     id         TEXT PRIMARY KEY NOT NULL,
///     data       TEXT NOT NULL, -- the record as replicated, as a JSON object (without its id)
///     updated_at TEXT NOT NULL  -- when the change was made (RFC 3339, UTC, microseconds)
/// )
/// ```
///
/// Inserts and updates become upserts of the row with the record's id (`INSERT … ON
/// CONFLICT(id) DO UPDATE`), deletes delete it; so the table holds exactly the records that
/// the replicator sends (an update that makes a record leave the filter deletes its row).
/// `data` is the change's `data` as every target receives it: internal fields removed, secrets
/// removed unless replicated, transformed if the rule has a transform.
///
/// Table names are checked, then quoted: only names of 1 to 100 ASCII letters, digits, `_` and
/// `-` (what s3db allows for resources), not starting with `sqlite_`, are accepted; a change for
/// any other name (a bad rename) is rejected ([`ReplicationError::Rejected`]) without reaching
/// the database.
///
/// One connection, opened on first use in WAL mode (readers of the file do not block the
/// target, nor it them), serves every change; its blocking calls run on tokio's blocking
/// threads (`spawn_blocking`), one at a time, so the runtime is never blocked. When another
/// connection holds the write lock, SQLite waits up to [`SqlTarget::busy_timeout`] and then
/// answers "busy": a transient [`ReplicationError::Sql`], retried with the replicator's backoff
/// and, if the lock outlasts the retries, logged for [`crate::ReplicatorPlugin::retry_failed`].
pub struct SqlTarget {
    path: PathBuf,
    busy_timeout: Duration,
    state: Arc<tokio::sync::Mutex<State>>,
}

/// The connection (`None` until first use and after `close`) and the tables known to exist.
#[derive(Default)]
struct State {
    conn: Option<Connection>,
    tables: HashSet<String>,
}

impl fmt::Debug for SqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTarget")
            .field("path", &self.path)
            .field("busy_timeout", &self.busy_timeout)
            .finish_non_exhaustive()
    }
}

impl SqlTarget {
    /// A SQLite database file at `path`, created if missing (its directory must exist). The
    /// special path `:memory:` is a private in-memory database (for tests: nothing else can
    /// read it, and it is gone when the plugin stops). An empty path is reported by
    /// [`crate::ReplicatorBuilder::build`].
    #[must_use]
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            state: Arc::new(tokio::sync::Mutex::new(State::default())),
        }
    }

    /// How long one statement waits for another connection's lock before the attempt fails as
    /// busy (default [`DEFAULT_BUSY_TIMEOUT`]; zero: fail at once). Keep it below the
    /// replicator's timeout: the replicator's retries and backoff come on top.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The database's path.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs `work` with the connection (opened if needed) on a blocking thread, one call at a
    /// time. A call whose caller gave up (timeout) still finishes before the next one starts.
    async fn run<T, F>(&self, work: F) -> Result<T, ReplicationError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut HashSet<String>) -> Result<T, ReplicationError>
            + Send
            + 'static,
    {
        let mut state = Arc::clone(&self.state).lock_owned().await;
        let (path, busy_timeout) = (self.path.clone(), self.busy_timeout);
        let task = tokio::task::spawn_blocking(move || {
            let State { conn, tables } = &mut *state;
            let conn = match conn {
                Some(conn) => conn,
                slot @ None => {
                    tables.clear();
                    slot.insert(open(&path, busy_timeout)?)
                }
            };
            let result = work(conn, tables);
            if result.is_err() {
                // A table may have been dropped behind our back: check again next time.
                tables.clear();
            }
            result
        });
        task.await.map_err(|e| ReplicationError::Sql {
            code: None,
            transient: false,
            message: format!("the SQLite task did not finish: {e}"),
        })?
    }
}

/// Opens the database in WAL mode.
fn open(path: &std::path::Path, busy_timeout: Duration) -> Result<Connection, ReplicationError> {
    let conn = Connection::open(path).map_err(sql_error)?;
    conn.busy_timeout(busy_timeout).map_err(sql_error)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sql_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // An in-memory database has no WAL ("memory").
        tracing::debug!(path = %path.display(), mode, "replicator: SQLite journal mode is not WAL");
    }
    Ok(conn)
}

/// A SQLite error as a replication error; busy and locked databases are transient.
fn sql_error(e: rusqlite::Error) -> ReplicationError {
    let (code, transient) = match e.sqlite_error() {
        Some(failure) => (
            Some(failure.extended_code),
            matches!(
                failure.code,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked
            ),
        ),
        None => (None, false),
    };
    ReplicationError::Sql {
        code,
        transient,
        message: e.to_string(),
    }
}

/// The resource's name, if it is one a table may have (see [`SqlTarget`]).
fn table_name(resource: &str) -> Result<&str, ReplicationError> {
    let valid = !resource.is_empty()
        && resource.len() <= 100
        && resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !resource
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("sqlite_"));
    if !valid {
        return Err(ReplicationError::Rejected(format!(
            "{resource:?} cannot name a SQL table: use 1-100 ASCII letters, digits, '_' or '-', \
             not starting with \"sqlite_\""
        )));
    }
    Ok(resource)
}

/// A name as an SQL identifier. [`table_name`] leaves no quote to escape; escaping anyway keeps
/// quoting correct on its own.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the table `name` unless this connection already knows it. SQLite's names ignore
/// case: a table whose name differs only in case is refused, not shared.
fn ensure_table(
    conn: &Connection,
    tables: &mut HashSet<String>,
    name: &str,
) -> Result<(), ReplicationError> {
    if tables.contains(name) {
        return Ok(());
    }
    let existing: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE name = ?1 COLLATE NOCASE",
            params![name],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error)?;
    match existing {
        Some(other) if other != name => {
            return Err(ReplicationError::Rejected(format!(
                "the SQL database already has {other:?}; SQLite names ignore case, so {name:?} \
                 would share it: rename one of them"
            )));
        }
        Some(_) => {}
        None => conn
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                 id TEXT PRIMARY KEY NOT NULL, \
                 data TEXT NOT NULL, \
                 updated_at TEXT NOT NULL)",
                quote(name)
            ))
            .map_err(sql_error)?,
    }
    tables.insert(name.to_owned());
    Ok(())
}

#[async_trait]
impl Target for SqlTarget {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err(
                "the SQLite path must not be empty (a file path, or \":memory:\")".to_owned(),
            );
        }
        Ok(())
    }

    async fn prepare(&self, source: &SourceResource) -> Result<(), ReplicationError> {
        let name = table_name(&source.target_name)?.to_owned();
        self.run(move |conn, tables| ensure_table(conn, tables, &name))
            .await
    }

    async fn send(&self, change: &Change) -> Result<(), ReplicationError> {
        let name = table_name(&change.resource)?.to_owned();
        let table = quote(&name);
        let id = change.id.clone();
        // The row's new content; `None`: delete it.
        let row = match change.action {
            Action::Insert | Action::Update => {
                let data = Value::Object(change.data.clone().unwrap_or_default());
                let data = serde_json::to_string(&data).map_err(|e| {
                    ReplicationError::Rejected(format!("change does not serialize: {e}"))
                })?;
                let updated_at = change
                    .timestamp
                    .to_rfc3339_opts(SecondsFormat::Micros, true);
                Some((data, updated_at))
            }
            Action::Delete => None,
        };
        self.run(move |conn, tables| {
            ensure_table(conn, tables, &name)?;
            match row {
                Some((data, updated_at)) => conn.execute(
                    &format!(
                        "INSERT INTO {table} (id, data, updated_at) VALUES (?1, ?2, ?3) \
                         ON CONFLICT(id) DO UPDATE SET \
                         data = excluded.data, updated_at = excluded.updated_at"
                    ),
                    params![id, data, updated_at],
                ),
                None => conn.execute(&format!("DELETE FROM {table} WHERE id = ?1"), params![id]),
            }
            .map(|_| ())
            .map_err(sql_error)
        })
        .await
    }

    async fn close(&self) {
        let mut state = Arc::clone(&self.state).lock_owned().await;
        // Closing may checkpoint the WAL: not on the runtime's threads.
        let closed = tokio::task::spawn_blocking(move || {
            state.tables.clear();
            state.conn.take().map(Connection::close)
        })
        .await;
        if let Ok(Some(Err((_, e)))) = closed {
            tracing::debug!(error = %e, "replicator: closing the SQLite target");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked_and_quoted() {
        assert_eq!(table_name("users").ok(), Some("users"));
        assert_eq!(table_name("user-profiles_2").ok(), Some("user-profiles_2"));
        assert_eq!(quote("user-profiles_2"), "\"user-profiles_2\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        for bad in [
            "",
            "users\"; DROP TABLE users; --",
            "a b",
            "a.b",
            "naïve",
            "sqlite_master",
            "SQLITE_x",
            &"x".repeat(101),
        ] {
            assert!(
                matches!(table_name(bad), Err(ReplicationError::Rejected(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn busy_and_locked_are_transient() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        let locked = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(6), None);
        let constraint = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(19), None);
        assert!(sql_error(busy).is_transient());
        assert!(sql_error(locked).is_transient());
        let e = sql_error(constraint);
        assert!(!e.is_transient());
        assert!(matches!(e, ReplicationError::Sql { code: Some(19), .. }));
        assert!(!sql_error(rusqlite::Error::InvalidQuery).is_transient());
    }

    #[test]
    fn an_empty_path_is_refused() {
        assert!(SqlTarget::sqlite("").validate().is_err());
        assert!(SqlTarget::sqlite(":memory:").validate().is_ok());
    }
}
