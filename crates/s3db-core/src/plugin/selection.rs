//! Which resources a plugin works on: an include list, an exclude list, never internal ones.

use std::collections::BTreeSet;
use std::fmt;

use super::is_internal_resource;

/// The resources a plugin works on: every user resource by default, only the included ones
/// when an include list is given, never the excluded ones, and never a plugin's internal
/// resource (`plg_…`, see [`super::INTERNAL_RESOURCE_PREFIX`]), whatever the lists say.
///
/// Build it with [`ResourceSelection::include`] and [`ResourceSelection::exclude`] (each adds
/// to the names given before), refuse bad lists with [`ResourceSelection::check`], then ask
/// [`ResourceSelection::selects`].
///
/// ```
/// use s3db_core::plugin::{BadNameReason, ResourceSelection, SelectionError};
///
/// let all_but_sessions = ResourceSelection::new().exclude(["sessions"]);
/// all_but_sessions.check()?;
/// assert!(all_but_sessions.selects("users"));
/// assert!(!all_but_sessions.selects("sessions"));
/// assert!(!all_but_sessions.selects("plg_audits"));
///
/// let only_users = ResourceSelection::new().include(["users"]);
/// assert!(only_users.selects("users") && !only_users.selects("orders"));
///
/// assert_eq!(
///     ResourceSelection::new().include(["plg_audits"]).check(),
///     Err(SelectionError::BadResourceName {
///         name: "plg_audits".into(),
///         reason: BadNameReason::Internal,
///     })
/// );
/// # Ok::<(), SelectionError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct ResourceSelection {
    include: BTreeSet<String>,
    exclude: BTreeSet<String>,
}

impl ResourceSelection {
    /// Every user resource (empty include and exclude lists).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds these resources to the include list: once it is not empty, only the resources it
    /// names are selected.
    pub fn include<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.include.extend(resources.into_iter().map(Into::into));
        self
    }

    /// Adds these resources to the exclude list: they are never selected.
    pub fn exclude<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude.extend(resources.into_iter().map(Into::into));
        self
    }

    /// The include list, in name order (empty: no include list was given).
    pub fn included(&self) -> impl Iterator<Item = &str> {
        self.include.iter().map(String::as_str)
    }

    /// The exclude list, in name order.
    pub fn excluded(&self) -> impl Iterator<Item = &str> {
        self.exclude.iter().map(String::as_str)
    }

    /// Refuses lists that cannot be meant: an empty name or an internal `plg_*` name in either
    /// list (the include list is looked at first, each in name order), then a name in both.
    ///
    /// # Errors
    /// [`SelectionError::BadResourceName`] for the first bad name;
    /// [`SelectionError::IncludedAndExcluded`] for the first name in both lists.
    pub fn check(&self) -> Result<(), SelectionError> {
        for name in self.include.iter().chain(&self.exclude) {
            let reason = if name.is_empty() {
                BadNameReason::Empty
            } else if is_internal_resource(name) {
                BadNameReason::Internal
            } else {
                continue;
            };
            return Err(SelectionError::BadResourceName {
                name: name.clone(),
                reason,
            });
        }
        if let Some(name) = self.include.intersection(&self.exclude).next() {
            return Err(SelectionError::IncludedAndExcluded { name: name.clone() });
        }
        Ok(())
    }

    /// Whether the plugin works on `resource`: never an internal `plg_*` resource, never an
    /// excluded one, and, when an include list is given, only an included one.
    #[must_use]
    pub fn selects(&self, resource: &str) -> bool {
        !is_internal_resource(resource)
            && !self.exclude.contains(resource)
            && (self.include.is_empty() || self.include.contains(resource))
    }
}

/// A [`ResourceSelection`] that [`ResourceSelection::check`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectionError {
    /// A name in the include or the exclude list is empty or names an internal `plg_*`
    /// resource (never selected).
    #[error("bad resource name {name:?} in include/exclude: {reason}")]
    BadResourceName {
        /// The name.
        name: String,
        /// Why it was refused.
        reason: BadNameReason,
    },
    /// A resource is both included and excluded.
    #[error("resource {name:?} is both included and excluded")]
    IncludedAndExcluded {
        /// The name.
        name: String,
    },
}

/// Why a name of an include or exclude list was refused
/// ([`SelectionError::BadResourceName`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BadNameReason {
    /// The name is empty.
    Empty,
    /// The name is a plugin's internal resource (`plg_…`), which is never selected.
    Internal,
}

impl fmt::Display for BadNameReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadNameReason::Empty => "it is empty",
            BadNameReason::Internal => "internal plg_* resources are never selected",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(name: &str, reason: BadNameReason) -> Result<(), SelectionError> {
        Err(SelectionError::BadResourceName {
            name: name.to_owned(),
            reason,
        })
    }

    #[test]
    fn everything_by_default() {
        let s = ResourceSelection::new();
        assert_eq!(s, ResourceSelection::default());
        assert_eq!(s.check(), Ok(()));
        assert!(s.selects("users") && s.selects("orders"));
        assert!(!s.selects("plg_audits"));
        assert!(!s.selects("plg_"));
    }

    #[test]
    fn include_list_restricts() {
        let s = ResourceSelection::new()
            .include(["users"])
            .include(["notes"]);
        assert_eq!(s.check(), Ok(()));
        assert!(s.selects("users") && s.selects("notes"));
        assert!(!s.selects("orders"));
        assert_eq!(s.included().collect::<Vec<_>>(), ["notes", "users"]);
        assert_eq!(s.excluded().count(), 0);
    }

    #[test]
    fn exclude_list_wins() {
        let s = ResourceSelection::new()
            .include(["users", "notes"])
            .exclude(vec!["orders".to_owned()]);
        assert_eq!(s.check(), Ok(()));
        assert!(s.selects("users") && !s.selects("orders") && !s.selects("other"));
        let s = ResourceSelection::new().exclude(["sessions"]);
        assert!(s.selects("users") && !s.selects("sessions"));
        assert_eq!(s.excluded().collect::<Vec<_>>(), ["sessions"]);
        // Even a name both included and excluded (refused by `check`) is not selected.
        let both = ResourceSelection::new().include(["a"]).exclude(["a"]);
        assert!(!both.selects("a"));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(
            ResourceSelection::new().include([""]).check(),
            bad("", BadNameReason::Empty)
        );
        assert_eq!(
            ResourceSelection::new().exclude([""]).check(),
            bad("", BadNameReason::Empty)
        );
        assert_eq!(
            ResourceSelection::new().include(["plg_audits"]).check(),
            bad("plg_audits", BadNameReason::Internal)
        );
        assert_eq!(
            ResourceSelection::new().exclude(["plg_x"]).check(),
            bad("plg_x", BadNameReason::Internal)
        );
        // The include list first, then the exclude list; names before the intersection.
        assert_eq!(
            ResourceSelection::new()
                .include(["a", "plg_b"])
                .exclude(["", "a"])
                .check(),
            bad("plg_b", BadNameReason::Internal)
        );
        assert_eq!(
            ResourceSelection::new()
                .include(["a", "b"])
                .exclude(["b", "a"])
                .check(),
            Err(SelectionError::IncludedAndExcluded { name: "a".into() })
        );
    }

    #[test]
    fn messages_name_the_resource_and_the_reason() {
        let msg = |s: ResourceSelection| s.check().err().map(|e| e.to_string());
        assert_eq!(
            msg(ResourceSelection::new().exclude([""])).as_deref(),
            Some(r#"bad resource name "" in include/exclude: it is empty"#)
        );
        assert_eq!(
            msg(ResourceSelection::new().include(["plg_x"])).as_deref(),
            Some(
                r#"bad resource name "plg_x" in include/exclude: internal plg_* resources are never selected"#
            )
        );
        assert_eq!(
            msg(ResourceSelection::new().include(["a"]).exclude(["a"])).as_deref(),
            Some(r#"resource "a" is both included and excluded"#)
        );
    }
}
