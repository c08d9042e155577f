//! The three record writes plugins exchange with the outside world (queue messages, replication
//! targets): `insert`, `update`, `delete`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A record write as plugins name it in messages and payloads: `insert`, `update` or `delete`
/// (serialized in snake case).
///
/// ```
/// use s3db_core::plugin::WriteAction;
/// assert_eq!(WriteAction::parse("update"), Some(WriteAction::Update));
/// assert_eq!(WriteAction::Delete.to_string(), "delete");
/// assert_eq!(serde_json::to_value(WriteAction::Insert).ok(), Some(serde_json::json!("insert")));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteAction {
    /// A record is (to be) inserted.
    Insert,
    /// A record is (to be) updated: update, patch, replace, or an upsert of an existing record.
    Update,
    /// A record is (to be) deleted.
    Delete,
}

impl WriteAction {
    /// Every action.
    pub const ALL: [WriteAction; 3] = [
        WriteAction::Insert,
        WriteAction::Update,
        WriteAction::Delete,
    ];

    /// `insert`, `update` or `delete`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            WriteAction::Insert => "insert",
            WriteAction::Update => "update",
            WriteAction::Delete => "delete",
        }
    }

    /// The action named exactly `name` (`insert`, `update`, `delete`).
    #[must_use]
    pub fn parse(name: &str) -> Option<WriteAction> {
        WriteAction::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for WriteAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in WriteAction::ALL {
            assert_eq!(WriteAction::parse(a.as_str()), Some(a));
            assert_eq!(
                serde_json::from_value::<WriteAction>(serde_json::json!(a.as_str())).ok(),
                Some(a)
            );
        }
        assert_eq!(WriteAction::parse("upsert"), None);
        assert_eq!(WriteAction::parse("Insert"), None);
    }
}
