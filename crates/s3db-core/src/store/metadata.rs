//! User metadata (S3 `x-amz-meta-*`), checked so that every backend stores exactly what S3 would.

use std::borrow::Cow;
use std::fmt;

use crate::error::{Error, Result};

/// S3's limit on user metadata: UTF-8 bytes of all keys and values together.
pub const METADATA_LIMIT: usize = 2048;

/// User metadata of an object: lower-case ASCII names to printable ASCII values.
///
/// S3 lower-cases names and transmits values as HTTP headers, so the store refuses anything that
/// would not come back exactly: names must be lower-case letters, digits, `-` or `_`; values
/// printable ASCII without leading or trailing spaces; and the whole under [`METADATA_LIMIT`].
/// Encoding arbitrary data into metadata is the job of the layers above.
///
/// Entries are kept in a vector sorted by name: objects carry a handful of entries, for which a
/// binary search and one allocation beat a map's nodes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata(Vec<(Cow<'static, str>, String)>);

impl Metadata {
    /// Empty metadata.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a value (checked when the object is written).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.insert_name(Cow::Owned(name.into()), value.into())
    }

    /// [`Metadata::insert`] of a name that may be borrowed for good (no copy of it is made).
    pub(crate) fn insert_name(&mut self, name: Cow<'static, str>, value: String) -> Option<String> {
        match self.position(&name) {
            Ok(at) => self
                .0
                .get_mut(at)
                .map(|entry| std::mem::replace(&mut entry.1, value)),
            Err(at) => {
                self.0.insert(at, (name, value));
                None
            }
        }
    }

    /// Metadata of entries given in any order (one sort instead of an ordered insertion each).
    ///
    /// # Errors
    /// The first name given twice, if any.
    pub(crate) fn from_entries(
        mut entries: Vec<(Cow<'static, str>, String)>,
    ) -> std::result::Result<Self, Cow<'static, str>> {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let twice = entries.windows(2).find_map(|pair| match pair {
            [a, b] if a.0 == b.0 => Some(a.0.clone()),
            _ => None,
        });
        match twice {
            Some(name) => Err(name),
            None => Ok(Self(entries)),
        }
    }

    /// Where the entry `name` is, or would be inserted.
    fn position(&self, name: &str) -> std::result::Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(name))
    }

    /// Builder-style [`Metadata::insert`].
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(name, value);
        self
    }

    /// A value.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        let at = self.position(name).ok()?;
        self.0.get(at).map(|(_, v)| v.as_str())
    }

    /// Removes a value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.position(name).ok()?;
        Some(self.0.remove(at).1)
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// Entries in name order, by value.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (Cow<'static, str>, String)> {
        self.0.into_iter()
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Size as S3 counts it against [`METADATA_LIMIT`]: UTF-8 bytes of names and values.
    #[must_use]
    pub fn size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Checks that S3 would store this metadata exactly as given.
    ///
    /// # Errors
    /// [`Error::BadMetadata`] naming the entry, or [`Error::MetadataLimit`].
    pub fn check(&self) -> Result<()> {
        for (name, value) in &self.0 {
            let bad = |reason: &str| Error::BadMetadata {
                name: name.to_string(),
                reason: reason.to_owned(),
            };
            if name.is_empty() {
                return Err(bad("names must not be empty"));
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(bad(
                    "names may only contain lower-case ASCII letters, digits, '-' and '_' (S3 lower-cases names)",
                ));
            }
            if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(bad(
                    "values must be printable ASCII (encode other text before storing it in metadata)",
                ));
            }
            if value.starts_with(' ') || value.ends_with(' ') {
                return Err(bad(
                    "values must not start or end with a space (HTTP trims them)",
                ));
            }
        }
        let size = self.size();
        if size > METADATA_LIMIT {
            return Err(Error::MetadataLimit {
                size,
                limit: METADATA_LIMIT,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> From<&'a Metadata> for Cow<'a, Metadata> {
    fn from(metadata: &'a Metadata) -> Self {
        Cow::Borrowed(metadata)
    }
}

impl From<Metadata> for Cow<'_, Metadata> {
    fn from(metadata: Metadata) -> Self {
        Cow::Owned(metadata)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut metadata = Self::new();
        for (name, value) in iter {
            metadata.insert(name, value);
        }
        metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_in_any_order_are_sorted_and_a_name_given_twice_is_refused()
    -> std::result::Result<(), String> {
        let entry = |n: &'static str, v: &str| (Cow::Borrowed(n), v.to_owned());
        let metadata =
            Metadata::from_entries(vec![entry("b", "2"), entry("_v", "1"), entry("a", "3")])
                .map_err(Cow::into_owned)?;
        let names: Vec<&str> = metadata.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["_v", "a", "b"]);
        assert_eq!(metadata.get("a"), Some("3"));
        let twice = Metadata::from_entries(vec![entry("a", "1"), entry("b", "2"), entry("a", "3")]);
        assert_eq!(twice.err().as_deref(), Some("a"));
        Ok(())
    }

    #[test]
    fn checks() {
        assert!(Metadata::new().with("a-b_1", "v = 1; ok").check().is_ok());
        for (name, value) in [
            ("Upper", "x"),
            ("", "x"),
            ("sp ace", "x"),
            ("k", "é"),
            ("k", "line\nbreak"),
            ("k", " lead"),
            ("k", "trail "),
        ] {
            let err = Metadata::new().with(name, value).check();
            assert!(
                matches!(err, Err(Error::BadMetadata { .. })),
                "{name:?}={value:?}"
            );
        }
    }

    #[test]
    fn limit_counts_names_and_values() {
        let exactly = Metadata::new().with("k", "v".repeat(METADATA_LIMIT - 1));
        assert_eq!(exactly.size(), METADATA_LIMIT);
        assert!(exactly.check().is_ok());
        let over = Metadata::new().with("kk", "v".repeat(METADATA_LIMIT - 1));
        assert!(matches!(
            over.check(),
            Err(Error::MetadataLimit {
                size: 2049,
                limit: METADATA_LIMIT
            })
        ));
    }
}
