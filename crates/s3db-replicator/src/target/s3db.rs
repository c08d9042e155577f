//! The `s3db` target: another s3db database (any backend: memory, file, S3).

use std::fmt;

use s3db_core::plugin::{Database, Resource, ResourceConfig, async_trait};
use s3db_core::resource::{CREATED_AT, UPDATED_AT};
use s3db_core::{ConnectionString, Error};
use serde_json::Value;

use super::{ReplicationError, SourceResource, Target};
use crate::change::{Action, Change, remove_path};
use crate::rule::SecretPolicy;

enum Origin {
    /// Connect on first use (and again after `close`).
    Connection {
        conn: Result<ConnectionString, String>,
        passphrase: Option<String>,
    },
    /// A database the caller connected.
    Database(Database),
}

/// Replicates into another s3db database: inserts and updates become upserts of the same id
/// (the replica holds exactly the record as sent), deletes delete it.
///
/// The replica's resource is found by name (the source's, or its rename). When it does not
/// exist, it is created from the source's definition (attributes, partitions, behavior,
/// timestamps, versioning; secret attributes only when they are replicated) unless the rule has
/// a transform (then the records' shape is yours: create the resource in the replica first) or
/// [`S3dbTarget::create_missing_resources`] is off.
///
/// `created_at` / `updated_at` are not sent: a replica with timestamps keeps its own.
pub struct S3dbTarget {
    origin: Origin,
    create_missing: bool,
    db: tokio::sync::Mutex<Option<Database>>,
}

impl fmt::Debug for S3dbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("S3dbTarget");
        match &self.origin {
            Origin::Connection { conn, passphrase } => {
                // The connection string's Display hides credentials; the passphrase is never shown.
                s.field(
                    "connection",
                    &conn.as_ref().map(ToString::to_string).unwrap_or_default(),
                )
                .field("passphrase", &passphrase.as_ref().map(|_| "<redacted>"));
            }
            Origin::Database(_) => {
                s.field("connection", &"<database>");
            }
        }
        s.field("create_missing_resources", &self.create_missing)
            .finish_non_exhaustive()
    }
}

impl S3dbTarget {
    /// A database reached by a connection string (`memory://`, `file://`, `s3://`, `http://`);
    /// connected on first use. A malformed string is reported by
    /// [`crate::ReplicatorBuilder::build`].
    #[must_use]
    pub fn new(connection: &str) -> Self {
        Self::with_origin(Origin::Connection {
            conn: ConnectionString::parse(connection).map_err(|e| e.to_string()),
            passphrase: None,
        })
    }

    /// A database you connected yourself (kept open until the target is dropped).
    #[must_use]
    pub fn database(db: Database) -> Self {
        Self::with_origin(Origin::Database(db))
    }

    fn with_origin(origin: Origin) -> Self {
        Self {
            origin,
            create_missing: true,
            db: tokio::sync::Mutex::new(None),
        }
    }

    /// The replica's own passphrase, for resources with `secret` attributes (see
    /// [`SecretPolicy`]). Ignored for [`S3dbTarget::database`].
    #[must_use]
    pub fn passphrase(mut self, passphrase: impl Into<String>) -> Self {
        if let Origin::Connection { passphrase: p, .. } = &mut self.origin {
            *p = Some(passphrase.into());
        }
        self
    }

    /// Whether a missing resource is created from the source's definition (default `true`).
    #[must_use]
    pub fn create_missing_resources(mut self, on: bool) -> Self {
        self.create_missing = on;
        self
    }

    async fn connection(&self) -> Result<Database, ReplicationError> {
        let mut slot = self.db.lock().await;
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = match &self.origin {
            Origin::Database(db) => db.clone(),
            Origin::Connection { conn, passphrase } => {
                let conn = conn.clone().map_err(ReplicationError::Rejected)?;
                let mut builder = Database::builder().connection(conn);
                if let Some(p) = passphrase {
                    builder = builder.passphrase(p.clone());
                }
                builder
                    .connect()
                    .await
                    .map_err(ReplicationError::Database)?
            }
        };
        *slot = Some(db.clone());
        Ok(db)
    }

    async fn resource(
        &self,
        db: &Database,
        name: &str,
    ) -> Result<Option<Resource>, ReplicationError> {
        if let Some(r) = db.resource(name) {
            return Ok(Some(r));
        }
        // Another process may have created it.
        db.reload().await.map_err(ReplicationError::Database)?;
        Ok(db.resource(name))
    }
}

/// The source's definition as a config for the replica: the configuration the source's current
/// version was made from ([`ResourceDefinition::to_config`]), as it is when the replica's resource
/// has the same name and no secret attribute is left out.
///
/// [`ResourceConfig`] has no way to rename it or to drop an attribute, so a renamed resource, or
/// one whose secrets are excluded, gets a config built again from the definition (attributes
/// without the excluded secrets, partitions, behavior, timestamps, versioning, paranoid).
///
/// [`ResourceDefinition::to_config`]: s3db_core::plugin::ResourceDefinition::to_config
fn mirrored_config(source: &SourceResource) -> ResourceConfig {
    let def = &source.definition;
    let excluded = match source.secrets {
        SecretPolicy::Exclude => def.secret_paths(),
        SecretPolicy::Replicate => Vec::new(),
    };
    let config = def.to_config();
    if config.name() == source.target_name && excluded.is_empty() {
        return config;
    }
    let mut attributes = def.schema().to_json();
    for path in &excluded {
        remove_path(&mut attributes, path);
    }
    let mut config = ResourceConfig::new(source.target_name.clone())
        .behavior(def.behavior())
        .timestamps(def.timestamps())
        .versioning(def.versioning())
        .paranoid(def.paranoid());
    for (name, rule) in attributes {
        config = config.attribute(name, rule);
    }
    for p in def.partitions() {
        // Partitions on fields that are not replicated would be empty: leave them out.
        if p.fields().iter().all(|f| {
            def.schema().get(f.split('.').next().unwrap_or(f)).is_some()
                && !excluded.iter().any(|s| s == f)
        }) {
            config = config.partition(p.name(), p.fields().iter().cloned());
        }
    }
    config
}

#[async_trait]
impl Target for S3dbTarget {
    fn kind(&self) -> &'static str {
        "s3db"
    }

    fn validate(&self) -> Result<(), String> {
        match &self.origin {
            Origin::Connection { conn: Err(e), .. } => {
                Err(format!("bad connection string for the s3db target: {e}"))
            }
            _ => Ok(()),
        }
    }

    async fn prepare(&self, source: &SourceResource) -> Result<(), ReplicationError> {
        let db = self.connection().await?;
        if self.resource(&db, &source.target_name).await?.is_some() {
            return Ok(());
        }
        if !self.create_missing || source.transformed {
            return Err(ReplicationError::Rejected(format!(
                "resource {:?} does not exist in the target database; create it there first{}",
                source.target_name,
                if source.transformed {
                    " (records of a transformed resource are not created from the source's definition)"
                } else {
                    ""
                }
            )));
        }
        db.create_resource(mirrored_config(source))
            .await
            .map_err(ReplicationError::Database)?;
        tracing::info!(resource = %source.target_name, "replicator: created the resource in the s3db target");
        Ok(())
    }

    async fn send(&self, change: &Change) -> Result<(), ReplicationError> {
        let db = self.connection().await?;
        let Some(resource) = self.resource(&db, &change.resource).await? else {
            return Err(ReplicationError::Rejected(format!(
                "resource {:?} does not exist in the target database",
                change.resource
            )));
        };
        let result = match change.action {
            Action::Insert | Action::Update => {
                let mut data = change.data.clone().unwrap_or_default();
                data.remove(CREATED_AT);
                data.remove(UPDATED_AT);
                resource
                    .upsert(&change.id, Value::Object(data))
                    .await
                    .map(|_| ())
            }
            Action::Delete => resource.delete(&change.id).await,
        };
        result.map_err(|e| match e {
            Error::Validation(_) | Error::BadSchema { .. } | Error::Refused { .. } => {
                ReplicationError::Rejected(e.to_string())
            }
            other => ReplicationError::Database(other),
        })
    }

    async fn close(&self) {
        let db = self.db.lock().await.take();
        if let (Some(db), Origin::Connection { .. }) = (db, &self.origin)
            && let Err(e) = db.disconnect().await
        {
            tracing::debug!(error = %e, "replicator: disconnecting the s3db target");
        }
    }
}
