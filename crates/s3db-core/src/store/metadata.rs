//! User metadata (S3 `x-amz-meta-*`), checked so that every backend stores exactly what S3 would.

use std::borrow::Cow;
use std::collections::BTreeMap;
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
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Empty metadata.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a value (checked when the object is written).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(name.into(), value.into())
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
        self.0.get(name).map(String::as_str)
    }

    /// Removes a value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Entries in name order, by value.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (String, String)> {
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
                name: name.clone(),
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
        f.debug_map().entries(self.0.iter()).finish()
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
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
