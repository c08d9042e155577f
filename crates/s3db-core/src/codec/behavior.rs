//! How a document is split between metadata and body.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where the fields of a document go: S3 user metadata (2 KB, read with a cheap `HEAD`) or the
/// object body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behavior {
    /// Every field in metadata; if that exceeds the limit, every field goes to the body instead
    /// and the result says so (`overflowed`), so the caller can emit an event.
    #[default]
    UserManaged,
    /// Every field in metadata; exceeding the limit is an error
    /// ([`Error::MetadataLimit`](crate::Error::MetadataLimit)).
    EnforceLimits,
    /// Fields in metadata, smallest first, while they fit; the first string that does not fit is
    /// cut to the room left, everything else that does not fit is dropped. Nothing goes to the
    /// body; what was cut or dropped is reported.
    TruncateData,
    /// Fields in metadata, smallest first, while they fit; the rest go to the body.
    BodyOverflow,
    /// Every field in the body; metadata holds only system entries.
    BodyOnly,
}

impl Behavior {
    /// Every behavior.
    pub const ALL: [Behavior; 5] = [
        Behavior::UserManaged,
        Behavior::EnforceLimits,
        Behavior::TruncateData,
        Behavior::BodyOverflow,
        Behavior::BodyOnly,
    ];

    /// The name used in definitions and `s3db.json` (`user-managed`, `enforce-limits`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::UserManaged => "user-managed",
            Behavior::EnforceLimits => "enforce-limits",
            Behavior::TruncateData => "truncate-data",
            Behavior::BodyOverflow => "body-overflow",
            Behavior::BodyOnly => "body-only",
        }
    }
}

impl fmt::Display for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Behavior`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown behavior {input:?}: expected user-managed, enforce-limits, truncate-data, body-overflow or body-only"
)]
pub struct ParseBehaviorError {
    /// The string that was given.
    pub input: String,
}

impl FromStr for Behavior {
    type Err = ParseBehaviorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Behavior::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| ParseBehaviorError {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(Behavior::default(), Behavior::UserManaged);
        for b in Behavior::ALL {
            let name = b.to_string();
            assert_eq!(name.parse::<Behavior>()?, b);
            assert_eq!(serde_json::to_string(&b)?, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Behavior>(&format!("\"{name}\""))?, b);
        }
        assert!("body_only".parse::<Behavior>().is_err());
        assert!("".parse::<Behavior>().is_err());
        Ok(())
    }
}
