//! Attribute names ↔ metadata names: [`FieldMap`] short keys and the `x-` escape.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Prefix of the metadata names of attributes that are not in the [`FieldMap`].
pub const ESCAPED_PREFIX: &str = "x-";

/// The single-character keys (`0`..`9`, `a`..`z`), in counter order.
const SINGLE_KEYS: [&str; 36] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f", "g", "h", "i",
    "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
];

/// A stable mapping from attribute names to short metadata keys.
///
/// Keys are base-36 numerals (`0`..`9`, `a`..`z`, `10`, `11`, …) handed out in order from a
/// counter. Once a name has a key it keeps it forever: [`FieldMap::extend`] only adds, and there is
/// deliberately no way to remove a name, so a key can never be reused for another attribute (old
/// objects written with it stay readable). Keys contain only `[0-9a-z]`, so they never collide with
/// escaped names (`x-…`, see [`escape_name`]) or system entries (`_…`).
///
/// Serialized (for `s3db.json`) as `{"next": <counter>, "keys": {"<name>": "<key>", …}}`;
/// deserializing checks that keys are canonical, unique and below the counter.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FieldMapRepr", into = "FieldMapRepr")]
pub struct FieldMap {
    next: u64,
    keys: BTreeMap<String, String>,
    names: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldMapRepr {
    next: u64,
    keys: BTreeMap<String, String>,
}

impl FieldMap {
    /// An empty map: every attribute is written under its escaped name.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A map assigning keys to `names` in order (duplicates are ignored).
    pub fn from_names<I>(names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut map = Self::new();
        map.extend(names);
        map
    }

    /// Assigns fresh keys to the names that have none yet, in order; existing keys never change.
    ///
    /// Returns whether anything was added (so the caller knows to persist the map).
    pub fn extend<I>(&mut self, names: I) -> bool
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut changed = false;
        for name in names {
            let name = name.as_ref();
            if self.keys.contains_key(name) {
                continue;
            }
            let key = base36(self.next);
            self.next += 1;
            self.keys.insert(name.to_owned(), key.clone());
            self.names.insert(key, name.to_owned());
            changed = true;
        }
        changed
    }

    /// The short key of an attribute.
    #[must_use]
    pub fn key_of(&self, name: &str) -> Option<&str> {
        self.keys.get(name).map(String::as_str)
    }

    /// The attribute a short key stands for.
    #[must_use]
    pub fn name_of(&self, key: &str) -> Option<&str> {
        self.names.get(key).map(String::as_str)
    }

    /// Whether the attribute has a key.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.keys.contains_key(name)
    }

    /// Number of mapped attributes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no attribute is mapped.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `(attribute, key)` pairs in attribute-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys.iter().map(|(n, k)| (n.as_str(), k.as_str()))
    }

    /// The metadata name an attribute is written under: its short key, or [`escape_name`].
    #[must_use]
    pub fn metadata_name(&self, name: &str) -> Cow<'static, str> {
        match self.key_of(name) {
            // The first 36 keys are single characters: borrowed from a static table, so writing a
            // record does not allocate their names.
            Some(key) => {
                let single = match key.as_bytes() {
                    [b @ b'0'..=b'9'] => SINGLE_KEYS.get(usize::from(b - b'0')),
                    [b @ b'a'..=b'z'] => SINGLE_KEYS.get(usize::from(b - b'a') + 10),
                    _ => None,
                };
                match single {
                    Some(single) => Cow::Borrowed(single),
                    None => Cow::Owned(key.to_owned()),
                }
            }
            None => Cow::Owned(escape_name(name)),
        }
    }

    /// The attribute a metadata name (short key or escaped name) stands for; `None` for system
    /// names (`_…`), unknown keys and malformed escapes.
    #[must_use]
    pub fn attribute_name(&self, metadata_name: &str) -> Option<String> {
        if metadata_name.starts_with(ESCAPED_PREFIX) {
            unescape_name(metadata_name)
        } else {
            self.name_of(metadata_name).map(str::to_owned)
        }
    }
}

impl fmt::Debug for FieldMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldMap")
            .field("next", &self.next)
            .field("keys", &self.keys)
            .finish()
    }
}

impl From<FieldMap> for FieldMapRepr {
    fn from(map: FieldMap) -> Self {
        Self {
            next: map.next,
            keys: map.keys,
        }
    }
}

impl TryFrom<FieldMapRepr> for FieldMap {
    type Error = String;

    fn try_from(repr: FieldMapRepr) -> Result<Self, Self::Error> {
        let mut names = BTreeMap::new();
        for (name, key) in &repr.keys {
            let index = parse_base36(key).ok_or_else(|| {
                format!("field map: key {key:?} of {name:?} is not a base-36 key")
            })?;
            if index >= repr.next {
                return Err(format!(
                    "field map: key {key:?} of {name:?} is not below the counter {}",
                    repr.next
                ));
            }
            if let Some(other) = names.insert(key.clone(), name.clone()) {
                return Err(format!(
                    "field map: key {key:?} is used by both {other:?} and {name:?}"
                ));
            }
        }
        Ok(Self {
            next: repr.next,
            keys: repr.keys,
            names,
        })
    }
}

fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        let d = u8::try_from(n % 36).unwrap_or(0);
        digits.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().map(|&b| char::from(b)).collect()
}

/// The number of a canonical base-36 key (no leading zeros), if it is one.
fn parse_base36(key: &str) -> Option<u64> {
    if key.is_empty() || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return None;
    }
    u64::from_str_radix(key, 36).ok()
}

/// The metadata name of an attribute that has no short key: [`ESCAPED_PREFIX`] followed by the
/// name's UTF-8 bytes, each byte outside `[a-z0-9]` written as `_` and two lower-case hex digits
/// (`firstName` → `x-first_4eame`). Reversed by [`unescape_name`].
#[must_use]
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(ESCAPED_PREFIX.len() + name.len());
    out.push_str(ESCAPED_PREFIX);
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
    out
}

/// The attribute name behind an escaped metadata name (see [`escape_name`]); `None` unless the
/// input is exactly what [`escape_name`] produces for some name.
#[must_use]
pub fn unescape_name(metadata_name: &str) -> Option<String> {
    let escaped = metadata_name.strip_prefix(ESCAPED_PREFIX)?.as_bytes();
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while let Some(&b) = escaped.get(i) {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            bytes.push(b);
            i += 1;
        } else if b == b'_' {
            let hi = hex_value(*escaped.get(i + 1)?)?;
            let lo = hex_value(*escaped.get(i + 2)?)?;
            let byte = (hi << 4) | lo;
            if byte.is_ascii_lowercase() || byte.is_ascii_digit() {
                return None; // not canonical: this byte is never escaped
            }
            bytes.push(byte);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_keys() {
        let expected = [
            (0, "0"),
            (9, "9"),
            (10, "a"),
            (35, "z"),
            (36, "10"),
            (1295, "zz"),
            (1296, "100"),
        ];
        for (n, key) in expected {
            assert_eq!(base36(n), key);
            assert_eq!(parse_base36(key), Some(n));
        }
        assert_eq!(parse_base36("01"), None);
        assert_eq!(parse_base36(""), None);
        assert_eq!(parse_base36("A"), None);
        assert_eq!(parse_base36("x-"), None);
    }
}
