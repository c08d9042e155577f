//! What can go wrong in a backup or a restore, typed.

use std::path::PathBuf;

use crate::PLUGIN_NAME;

/// The error of every fallible backup-plugin operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The archive read back does not have the checksum recorded when it was made. Nothing was
    /// written.
    #[error(
        "backup {id}: the archive's SHA-256 is {actual}, but {expected} was recorded; it is corrupted or was altered (nothing was restored)"
    )]
    ChecksumMismatch {
        /// The backup.
        id: String,
        /// The checksum recorded in `plg_backup_metadata`.
        expected: String,
        /// The checksum of what was read.
        actual: String,
    },
    /// The archive could not be read as a backup archive (bad gzip, tar or JSON).
    #[error("backup {id}: the archive is not readable: {reason}")]
    CorruptArchive {
        /// The backup.
        id: String,
        /// What could not be read.
        reason: String,
    },
    /// No backup has this id.
    #[error("no backup with id {0:?}")]
    NotFound(String),
    /// The backup did not complete, so there is nothing to restore.
    #[error("backup {id} is {status}, not completed: it cannot be restored")]
    NotCompleted {
        /// The backup.
        id: String,
        /// Its status.
        status: String,
    },
    /// A resource named in a backup or restore does not exist (in the database, or in the
    /// backup).
    #[error("resource {resource:?}: {reason}")]
    UnknownResource {
        /// The resource.
        resource: String,
        /// Where it is missing and what to do.
        reason: String,
    },
    /// `replace` was asked of an incremental backup, which holds only the changed records:
    /// replacing with it would delete every unchanged record.
    #[error(
        "backup {id} is incremental: restore its base {base} (full) with mode replace, then the incrementals with mode merge"
    )]
    ReplaceNeedsFull {
        /// The incremental backup.
        id: String,
        /// The backup it was based on (`?` when unknown).
        base: String,
    },
    /// Resources to back up have `secret` attributes, and neither a backup passphrase nor the
    /// plaintext opt-in is configured. Nothing was backed up (no status record, no upload).
    #[error(
        "resource(s) {} have secret attributes, which an archive would hold in clear: configure BackupPlugin::builder().secrets_passphrase(..) to encrypt them in archives (or .plaintext_secrets(true) to store them in clear, unsafe), or leave these resources out; nothing was backed up",
        resources.join(", ")
    )]
    SecretsNotConfigured {
        /// The resources with secret attributes.
        resources: Vec<String>,
    },
    /// The backup holds encrypted secrets for the resources to restore, and the plugin has no
    /// backup passphrase. Nothing was written.
    #[error(
        "backup {id} holds secrets encrypted under a backup passphrase: configure .secrets_passphrase(..) with the passphrase it was made with (nothing was restored)"
    )]
    SecretsPassphraseRequired {
        /// The backup.
        id: String,
    },
    /// The configured backup passphrase is not the one the backup was made with (or the
    /// archive's key check was altered). Nothing was written.
    #[error(
        "backup {id}: the configured secrets passphrase is not the one the backup was made with (nothing was restored)"
    )]
    WrongSecretsPassphrase {
        /// The backup.
        id: String,
    },
    /// A destination failed.
    #[error("backup destination {destination}: {reason}")]
    Driver {
        /// The destination's label.
        destination: String,
        /// What failed.
        reason: String,
    },
    /// A local file (archive buffer, filesystem destination) could not be used.
    #[error("file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin is not installed in a database.
    #[error("the backup plugin is not installed in a database")]
    NotInstalled,
    /// An error of the database.
    #[error(transparent)]
    Core(#[from] s3db_core::Error),
}

impl BackupError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn driver(destination: impl Into<String>, reason: impl ToString) -> Self {
        Self::Driver {
            destination: destination.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<BackupError> for s3db_core::Error {
    fn from(e: BackupError) -> Self {
        let source = match e {
            BackupError::Core(core) => core,
            BackupError::NotFound(id) => s3db_core::Error::NotFound { key: id },
            e @ (BackupError::ChecksumMismatch { .. } | BackupError::CorruptArchive { .. }) => {
                s3db_core::Error::Corrupt {
                    key: String::from("backup archive"),
                    reason: e.to_string(),
                }
            }
            BackupError::WrongSecretsPassphrase { .. } => s3db_core::Error::SecretDecryption {
                field: String::from("backup secrets passphrase"),
            },
            e @ (BackupError::Driver { .. } | BackupError::Io { .. }) => {
                s3db_core::Error::Storage {
                    operation: "backup",
                    key: String::new(),
                    transient: false,
                    source: Box::new(e),
                }
            }
            e => s3db_core::Error::Refused {
                operation: "backup",
                reason: e.to_string(),
            },
        };
        s3db_core::Error::Plugin {
            plugin: PLUGIN_NAME.to_owned(),
            source: Box::new(source),
        }
    }
}

/// Result alias of the plugin.
pub type BackupResult<T> = Result<T, BackupError>;
