//! Object keys: validated paths below the database prefix.
//!
//! Everything s3db stores lives under the database prefix. A [`Key`] is a `/`-separated path
//! below it, for instance `resource=users/data/id=abc`. Every part is checked before any request
//! is made: a part may not be empty, contain `/`, contain `..` (or be `.`), or contain a control
//! character; and the full key, database prefix included, may not exceed S3's 1024 bytes (checked
//! by the store, which knows the prefix).

use std::fmt;

use crate::error::{Error, KeyProblem, Result};

/// S3's limit on the length of a key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// A validated key below the database prefix.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Parses a `/`-separated key, checking every part.
    ///
    /// ```
    /// use s3db_core::Key;
    /// let key = Key::parse("resource=users/data/id=abc").unwrap();
    /// assert_eq!(key.parts().count(), 3);
    /// assert!(Key::parse("resource=users/../secrets").is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::BadKey`] naming the offending part.
    pub fn parse(key: &str) -> Result<Self> {
        Self::from_string(key.to_owned())
    }

    /// Builds a key from parts, each of which is checked (a part may not contain `/`).
    ///
    /// ```
    /// use s3db_core::Key;
    /// let key = Key::from_parts(["resource=users", "data", "id=abc"]).unwrap();
    /// assert_eq!(key.as_str(), "resource=users/data/id=abc");
    /// assert!(Key::from_parts(["resource=users", "id=a/b"]).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::BadKey`] naming the offending part.
    pub fn from_parts<I>(parts: I) -> Result<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut key = String::new();
        for part in parts {
            let part = part.as_ref();
            check_part(part)?;
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(part);
        }
        if key.is_empty() {
            return Err(bad("", KeyProblem::Empty));
        }
        check_len(key.len(), &key)?;
        Ok(Self(key))
    }

    /// This key with one more part appended.
    ///
    /// # Errors
    /// [`Error::BadKey`] if `part` is not a valid key part.
    pub fn join(&self, part: &str) -> Result<Self> {
        check_part(part)?;
        let key = format!("{}/{part}", self.0);
        check_len(key.len(), &key)?;
        Ok(Self(key))
    }

    /// [`Key::parse`] of a string already built, without copying it.
    pub(crate) fn from_string(key: String) -> Result<Self> {
        if key.is_empty() {
            return Err(bad(&key, KeyProblem::Empty));
        }
        for part in key.split('/') {
            check_part(part)?;
        }
        check_len(key.len(), &key)?;
        Ok(Self(key))
    }

    /// This key with the part `<name>=<value>` appended (one allocation; the part is checked).
    pub(crate) fn join_pair(&self, name: &str, value: &str) -> Result<Self> {
        let mut key = String::with_capacity(self.0.len() + name.len() + value.len() + 2);
        key.push_str(&self.0);
        key.push('/');
        let start = key.len();
        key.push_str(name);
        key.push('=');
        key.push_str(value);
        check_part(&key[start..])?;
        check_len(key.len(), &key)?;
        Ok(Self(key))
    }

    /// A key as the store listed it (written by anyone, so not re-checked).
    pub(crate) fn listed(key: &str) -> Self {
        Self(key.to_owned())
    }

    /// The key as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated parts of the key.
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last part of the key (the "file name").
    #[must_use]
    pub fn last_part(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Whether `prefix` is this key or a whole-part prefix of it (`a/b` is a prefix of `a/b/c`,
    /// not of `a/bc`).
    #[must_use]
    pub fn is_under(&self, prefix: &Key) -> bool {
        self.0 == prefix.0
            || (self.0.starts_with(&prefix.0)
                && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Checks one key part (a record id, a partition value, a plugin key segment…): not empty, no
/// `/`, no `..`, not `.`, no control characters.
///
/// ```
/// use s3db_core::key::check_part;
/// assert!(check_part("id=user-1").is_ok());
/// assert!(check_part("a/b").is_err());
/// assert!(check_part("..").is_err());
/// assert!(check_part("tab\there").is_err());
/// ```
///
/// # Errors
/// [`Error::BadKey`] saying what is wrong.
pub fn check_part(part: &str) -> Result<()> {
    if part.is_empty() {
        return Err(bad(part, KeyProblem::Empty));
    }
    if part == "." {
        return Err(bad(part, KeyProblem::DotSegment));
    }
    // One pass over the bytes (keys are checked on every request). Control characters are
    // U+0000–U+001F and U+007F (one byte) and U+0080–U+009F (UTF-8 `C2 80`–`C2 9F`).
    let (mut slash, mut dots, mut control) = (false, false, false);
    let mut previous = 0u8;
    for &b in part.as_bytes() {
        slash |= b == b'/';
        dots |= b == b'.' && previous == b'.';
        control |= b < 0x20 || b == 0x7f || (previous == 0xc2 && (0x80..0xa0).contains(&b));
        previous = b;
    }
    let problem = if slash {
        KeyProblem::ContainsSlash
    } else if dots {
        KeyProblem::DotSegment
    } else if control {
        KeyProblem::ControlCharacter
    } else {
        return Ok(());
    };
    Err(bad(part, problem))
}

/// Checks the length of a full key (database prefix included).
pub(crate) fn check_len(len: usize, key: &str) -> Result<()> {
    if len > MAX_KEY_BYTES {
        return Err(bad(key, KeyProblem::TooLong { len }));
    }
    Ok(())
}

fn bad(key: &str, reason: KeyProblem) -> Error {
    // Keep error messages readable when the refused key is huge.
    let shown: String = key.chars().take(200).collect();
    Error::BadKey { key: shown, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_checked() {
        for bad_part in ["", ".", "..", "a..b", "x\u{0}y", "line\nfeed", "del\u{7f}"] {
            assert!(
                check_part(bad_part).is_err(),
                "{bad_part:?} should be refused"
            );
        }
        for good in [
            "id=abc",
            "région=été",
            "a.b",
            "x-y_z~1",
            "with space",
            "=",
            "%41",
        ] {
            assert!(check_part(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn control_characters_are_those_of_char_is_control() {
        // The byte scan of `check_part` must agree with `char::is_control` on every character of
        // the first planes (C1 controls are two UTF-8 bytes), alone and between other text.
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            for part in [format!("{c}"), format!("a{c}b"), format!("é{c}")] {
                let refused = matches!(
                    check_part(&part),
                    Err(Error::BadKey {
                        reason: KeyProblem::ControlCharacter,
                        ..
                    })
                );
                assert_eq!(refused, c.is_control(), "{c:?} in {part:?}");
            }
        }
    }

    #[test]
    fn parse_and_join() -> Result<()> {
        let key = Key::parse("resource=users/data")?;
        let rec = key.join("id=1")?;
        assert_eq!(rec.as_str(), "resource=users/data/id=1");
        assert_eq!(rec.last_part(), "id=1");
        assert!(rec.is_under(&key));
        assert!(!Key::parse("resource=users/database")?.is_under(&key));
        assert!(matches!(
            key.join("a/b"),
            Err(Error::BadKey {
                reason: KeyProblem::ContainsSlash,
                ..
            })
        ));
        assert!(Key::parse("a//b").is_err());
        assert!(Key::parse("/a").is_err());
        Ok(())
    }

    #[test]
    fn length_limit() {
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            Key::parse(&long),
            Err(Error::BadKey {
                reason: KeyProblem::TooLong { len: 1025 },
                ..
            })
        ));
        assert!(Key::parse(&"y".repeat(MAX_KEY_BYTES)).is_ok());
    }
}
