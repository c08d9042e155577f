//! The error type of every fallible s3db operation.

use std::fmt;

/// Result alias used across s3db.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in s3db.
///
/// Variants carry what a user needs to fix the problem: the key that was refused and why, the part
/// of a connection string that is malformed, the store operation that failed and whether retrying
/// it may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object (or record) does not exist.
    #[error("not found: {key}")]
    NotFound {
        /// Full key (below the database prefix) that was looked up.
        key: String,
    },

    /// A conditional create found an object already there.
    #[error("already exists: {key}")]
    AlreadyExists {
        /// Key that already exists.
        key: String,
    },

    /// A conditional update found a different version than the one it was based on (or no object
    /// at all): someone else wrote in between. Re-read and retry.
    #[error("precondition failed (the object changed or is gone): {key}")]
    PreconditionFailed {
        /// Key whose version did not match.
        key: String,
    },

    /// A key or key part was refused before any request was made.
    #[error("bad key {key:?}: {reason}")]
    BadKey {
        /// The offending key or key part.
        key: String,
        /// What is wrong with it.
        reason: KeyProblem,
    },

    /// User metadata that S3 would not store as given.
    #[error("bad metadata entry {name:?}: {reason}")]
    BadMetadata {
        /// Metadata key.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// User metadata is larger than S3's 2 KB limit (UTF-8 bytes of keys and values).
    #[error("metadata is {size} bytes, over the {limit}-byte limit of S3 user metadata")]
    MetadataLimit {
        /// Size as S3 counts it.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A document failed validation: every failing field, with the rule it broke. Nothing was
    /// written.
    #[error("validation failed: {}", FieldError::join(.0))]
    Validation(Vec<FieldError>),

    /// A resource definition is invalid (found at `create_resource`).
    #[error("bad definition of attribute {attribute:?} (rule {rule:?}): {reason}")]
    BadSchema {
        /// Attribute path (`address.zip` for nested ones).
        attribute: String,
        /// The rule text as given.
        rule: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// A secret field could not be decrypted: wrong passphrase, or the data was altered.
    #[error("cannot decrypt secret field {field:?}: wrong passphrase or corrupted data")]
    SecretDecryption {
        /// The secret attribute.
        field: String,
    },

    /// A stored object could not be decoded.
    #[error("corrupt object {key}: {reason}")]
    Corrupt {
        /// Key of the object.
        key: String,
        /// What could not be decoded.
        reason: String,
    },

    /// The operation is refused by the resource's settings (e.g. `delete_all` on a paranoid
    /// resource), or the database is not in a state to do it.
    #[error("{operation} refused: {reason}")]
    Refused {
        /// The refused operation.
        operation: &'static str,
        /// Why, and how to allow it.
        reason: String,
    },

    /// A plugin failed; the error carries its name.
    #[error("plugin {plugin}: {source}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },

    /// The connection string could not be understood.
    #[error(transparent)]
    BadConnectionString(#[from] ConnectionStringError),

    /// The object store failed.
    #[error("storage error during {operation} of {key:?} ({}): {source}", if *.transient { "transient, may be retried" } else { "permanent" })]
    Storage {
        /// Operation that failed (`put`, `get`, `list`, …).
        operation: &'static str,
        /// Key involved, or the listed prefix.
        key: String,
        /// Whether the failure is likely to go away on retry (network, 5xx, throttling).
        transient: bool,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What kind of error an [`Error`] is, without its details: for matching, counting and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::NotFound`].
    NotFound,
    /// [`Error::AlreadyExists`].
    AlreadyExists,
    /// [`Error::PreconditionFailed`].
    PreconditionFailed,
    /// [`Error::BadKey`].
    BadKey,
    /// [`Error::BadMetadata`].
    BadMetadata,
    /// [`Error::MetadataLimit`].
    MetadataLimit,
    /// [`Error::Validation`].
    Validation,
    /// [`Error::BadSchema`].
    BadSchema,
    /// [`Error::SecretDecryption`].
    SecretDecryption,
    /// [`Error::Corrupt`].
    Corrupt,
    /// [`Error::Refused`].
    Refused,
    /// [`Error::Plugin`].
    Plugin,
    /// [`Error::BadConnectionString`].
    BadConnectionString,
    /// [`Error::Storage`].
    Storage,
}

impl ErrorKind {
    /// A short, stable snake-case name (`not_found`, `already_exists`, …), e.g. for a metric
    /// label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::BadKey => "bad_key",
            ErrorKind::BadMetadata => "bad_metadata",
            ErrorKind::MetadataLimit => "metadata_limit",
            ErrorKind::Validation => "validation",
            ErrorKind::BadSchema => "bad_schema",
            ErrorKind::SecretDecryption => "secret_decryption",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Refused => "refused",
            ErrorKind::Plugin => "plugin",
            ErrorKind::BadConnectionString => "bad_connection_string",
            ErrorKind::Storage => "storage",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The kind of this error (a plugin's error is of kind [`ErrorKind::Plugin`], whatever it
    /// wraps).
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::PreconditionFailed { .. } => ErrorKind::PreconditionFailed,
            Error::BadKey { .. } => ErrorKind::BadKey,
            Error::BadMetadata { .. } => ErrorKind::BadMetadata,
            Error::MetadataLimit { .. } => ErrorKind::MetadataLimit,
            Error::Validation(_) => ErrorKind::Validation,
            Error::BadSchema { .. } => ErrorKind::BadSchema,
            Error::SecretDecryption { .. } => ErrorKind::SecretDecryption,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Plugin { .. } => ErrorKind::Plugin,
            Error::BadConnectionString(_) => ErrorKind::BadConnectionString,
            Error::Storage { .. } => ErrorKind::Storage,
        }
    }

    /// Whether retrying the same operation may succeed (a transient storage failure).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Storage {
                transient: true,
                ..
            }
        )
    }

    /// Whether this is [`Error::NotFound`].
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is a lost race of a conditional write ([`Error::PreconditionFailed`] or
    /// [`Error::AlreadyExists`]).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::PreconditionFailed { .. } | Error::AlreadyExists { .. }
        )
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// One failing field of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field (`email`, `address.zip`, `tags[2]`).
    pub field: String,
    /// The rule that failed (`required`, `min`, `email`, `type`, `unknown`, …).
    pub rule: String,
    /// A sentence that says what to fix.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(
        field: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
            message: message.into(),
        }
    }

    fn join(errors: &[FieldError]) -> String {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.message, self.rule)
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// An empty key part.
    Empty,
    /// A key part containing `/` (it would create a new path level).
    ContainsSlash,
    /// A key part containing `..` or equal to `.`.
    DotSegment,
    /// A key part containing a control character.
    ControlCharacter,
    /// The full key, with the database prefix, is longer than S3's 1024 bytes.
    TooLong {
        /// Length in bytes of the full key.
        len: usize,
    },
    /// Refused by the object store's path rules for another reason.
    Invalid(String),
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Empty => f.write_str("key parts must not be empty"),
            KeyProblem::ContainsSlash => f.write_str("key parts must not contain '/'"),
            KeyProblem::DotSegment => f.write_str("key parts must not contain '..' or be '.'"),
            KeyProblem::ControlCharacter => {
                f.write_str("key parts must not contain control characters")
            }
            KeyProblem::TooLong { len } => write!(
                f,
                "the full key is {len} bytes, over S3's limit of {} bytes",
                crate::key::MAX_KEY_BYTES
            ),
            KeyProblem::Invalid(why) => f.write_str(why),
        }
    }
}

/// A malformed connection string: which part is wrong and why. Never contains credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad connection string ({part}): {reason}")]
pub struct ConnectionStringError {
    /// The part that is wrong: `scheme`, `credentials`, `bucket`, `host`, `path`, `query`, …
    pub part: &'static str,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl ConnectionStringError {
    pub(crate) fn new(part: &'static str, reason: impl Into<String>) -> Self {
        Self {
            part,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_their_variant() {
        let not_found = Error::NotFound { key: "k".into() };
        let cases = [
            (not_found, ErrorKind::NotFound, "not_found"),
            (
                Error::AlreadyExists { key: "k".into() },
                ErrorKind::AlreadyExists,
                "already_exists",
            ),
            (
                Error::Validation(vec![FieldError::new("a", "required", "is required")]),
                ErrorKind::Validation,
                "validation",
            ),
            (
                Error::Plugin {
                    plugin: "p".into(),
                    source: Box::new(Error::NotFound { key: "k".into() }),
                },
                ErrorKind::Plugin,
                "plugin",
            ),
            (
                Error::Storage {
                    operation: "get",
                    key: "k".into(),
                    transient: true,
                    source: "down".into(),
                },
                ErrorKind::Storage,
                "storage",
            ),
        ];
        for (error, kind, name) in cases {
            assert_eq!(error.kind(), kind);
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
        }
    }
}
