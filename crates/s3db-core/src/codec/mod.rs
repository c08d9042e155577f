//! Documents ↔ stored objects: how a record's fields are split between S3 user metadata and the
//! object body, and encoded so that they come back exactly.
//!
//! # Layout
//!
//! * **Metadata names.** An attribute in the [`FieldMap`] is stored under its short key (`0`, `1`,
//!   …, `a`, …); any other attribute under [`escape_name`] (`x-…`). System entries supplied by the
//!   caller (`_v`, …) start with `_`, which neither produces. The codec itself writes `_t` (the
//!   metadata names of truncated or dropped fields, comma-separated) under
//!   [`Behavior::TruncateData`]; callers may not use `_t` or `_h`.
//! * **Metadata values** are encoded with [`encode_value`] (type tag + ASCII).
//! * **Body**: a compact JSON object (UTF-8, keys sorted at every level, so the same document
//!   always gives the same bytes) mapping metadata names to the plain JSON values of the fields
//!   that are not in metadata. Whenever the metadata is not empty, the body also carries
//!   `"_h": "<16 hex digits>"`, a 64-bit hash of every metadata entry: S3's ETag is the MD5 of the
//!   body alone, and this makes the body (so the ETag) change whenever the metadata does. Nothing
//!   reads `_h` back (decoding ignores it), so only that property matters, not the hash function.

mod behavior;
mod canonical;
mod fields;
mod value;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::Hasher as _;

use bytes::Bytes;
use serde_json::{Map, Value};

pub use behavior::{Behavior, ParseBehaviorError};
pub use fields::{ESCAPED_PREFIX, FieldMap, escape_name, unescape_name};
pub use value::{DecodeError, decode_value, encode_value, is_header_safe};

use crate::error::{Error, Result};
use crate::store::{METADATA_LIMIT, Metadata};

/// Metadata name of the list of truncated or dropped fields (written by the codec).
pub const TRUNCATED_ENTRY: &str = "_t";
/// Body key of the metadata hash (written by the codec, ignored when decoding).
pub const HASH_KEY: &str = "_h";

/// A document ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// User metadata: system entries and the fields stored there. Always passes
    /// [`Metadata::check`].
    pub metadata: Metadata,
    /// Object body: JSON object of the remaining fields (and `_h`).
    pub body: Bytes,
    /// [`Behavior::UserManaged`] only: the fields did not fit in metadata and were all written to
    /// the body instead.
    pub overflowed: bool,
    /// [`Behavior::TruncateData`] only: attributes that were cut short or dropped (the cut one
    /// first, then the dropped ones, smallest first).
    pub truncated: Vec<String>,
}

/// A document read back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// The fields, from metadata and body together.
    pub doc: Map<String, Value>,
    /// System entries (metadata names starting with `_`, except the codec's own `_t`).
    pub system: BTreeMap<String, String>,
    /// Attributes that were cut short or dropped when written ([`Behavior::TruncateData`]): a
    /// truncated string holds a prefix of the original, a dropped field is absent.
    pub truncated: Vec<String>,
}

/// One field of the document being encoded.
struct Field<'a> {
    name: &'a str,
    meta: Cow<'static, str>,
    value: &'a Value,
    /// Encoded metadata value (not computed for [`Behavior::BodyOnly`]).
    encoded: String,
}

impl Field<'_> {
    fn size(&self) -> usize {
        self.meta.len() + self.encoded.len()
    }
}

/// Encodes a document into metadata and body according to `behavior`.
///
/// `system` entries (names starting with `_`, lower-case `[a-z0-9_-]`, values printable ASCII
/// without leading or trailing space) are put into the metadata first, whatever the behavior, and
/// count toward the 2 KB limit; [`decode`] hands them back in [`Decoded::system`].
///
/// # Errors
/// * [`Error::BadMetadata`] for an invalid, duplicated or reserved (`_t`, `_h`) system entry.
/// * [`Error::MetadataLimit`] under [`Behavior::EnforceLimits`] when the fields do not fit, and
///   under every behavior when the system entries alone (with, under
///   [`Behavior::TruncateData`], the list of dropped fields) exceed the limit.
pub fn encode(
    doc: &Map<String, Value>,
    fields: &FieldMap,
    behavior: Behavior,
    system: &[(&'static str, String)],
) -> Result<Encoded> {
    // Entries are collected in any order and sorted by name once, at the end.
    let mut entries: Vec<(Cow<'static, str>, String)> =
        Vec::with_capacity(system.len() + doc.len() + 1);
    let mut system_size = 0;
    for (name, value) in system {
        check_system_entry(name, value)?;
        if entries.iter().any(|(given, _)| given == name) {
            return Err(Error::BadMetadata {
                name: (*name).to_owned(),
                reason: "system entry given twice".to_owned(),
            });
        }
        system_size += name.len() + value.len();
        entries.push((Cow::Borrowed(name), value.clone()));
    }
    if system_size > METADATA_LIMIT {
        return Err(Error::MetadataLimit {
            size: system_size,
            limit: METADATA_LIMIT,
        });
    }

    let mut all: Vec<Field<'_>> = doc
        .iter()
        .map(|(name, value)| Field {
            name,
            meta: fields.metadata_name(name),
            value,
            encoded: if behavior == Behavior::BodyOnly {
                String::new()
            } else {
                encode_value(value)
            },
        })
        .collect();

    let mut in_body: Vec<Field<'_>> = Vec::new();
    let mut overflowed = false;
    let mut truncated = Vec::new();
    let fits = || system_size + all.iter().map(Field::size).sum::<usize>() <= METADATA_LIMIT;
    match behavior {
        Behavior::BodyOnly => in_body = all,
        // Everything fits (the usual case): every behavior but body-only writes it all to the
        // metadata, in no particular order.
        Behavior::EnforceLimits
        | Behavior::UserManaged
        | Behavior::BodyOverflow
        | Behavior::TruncateData
            if fits() =>
        {
            entries.extend(all.into_iter().map(|field| (field.meta, field.encoded)));
        }
        Behavior::EnforceLimits => {
            return Err(Error::MetadataLimit {
                size: system_size + all.iter().map(Field::size).sum::<usize>(),
                limit: METADATA_LIMIT,
            });
        }
        Behavior::UserManaged => {
            in_body = all;
            overflowed = true;
        }
        Behavior::BodyOverflow => {
            sort_by_size(&mut all);
            let mut used = system_size;
            for field in all {
                if used + field.size() <= METADATA_LIMIT {
                    used += field.size();
                    entries.push((field.meta, field.encoded));
                } else {
                    in_body.push(field);
                }
            }
        }
        Behavior::TruncateData => {
            sort_by_size(&mut all);
            truncated = truncate(all, &mut entries, system_size)?;
        }
    }
    // Attribute names map to distinct metadata names that never start with `_`, and system names
    // were checked above: a name given twice would be a bug of this module.
    let metadata = Metadata::from_entries(entries).map_err(|name| Error::BadMetadata {
        name: name.into_owned(),
        reason: "metadata name given twice".to_owned(),
    })?;

    let hash = (!metadata.is_empty()).then(|| metadata_hash(&metadata));
    let body = if in_body.is_empty() {
        // Everything is in the metadata (the usual case): the body is `{"_h":"…"}` or `{}`,
        // exactly as the serializer below would write it.
        let mut body = Vec::with_capacity(8 + HASH_KEY.len() + 16);
        body.push(b'{');
        if let Some(hash) = &hash {
            body.push(b'"');
            body.extend_from_slice(HASH_KEY.as_bytes());
            body.extend_from_slice(b"\":\"");
            body.extend_from_slice(hash.as_bytes());
            body.push(b'"');
        }
        body.push(b'}');
        body
    } else {
        let hash_value = hash.map(Value::String);
        canonical::to_vec(
            &canonical::SortedObject::new(
                in_body
                    .iter()
                    .map(|f| (f.meta.as_ref(), f.value))
                    .chain(hash_value.as_ref().map(|h| (HASH_KEY, h))),
            ),
            false,
        )
    };
    // Every entry was built header-safe and the size kept within the limit above; the store
    // checks the metadata again before writing it.
    debug_assert!(metadata.check().is_ok(), "{metadata:?}");
    Ok(Encoded {
        metadata,
        body: Bytes::from(body),
        overflowed,
        truncated,
    })
}

fn check_system_entry(name: &str, value: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::BadMetadata {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if !name.starts_with('_') {
        return bad("system entry names must start with '_'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return bad(
            "system entry names may only contain lower-case ASCII letters, digits, '-' and '_'",
        );
    }
    if name == TRUNCATED_ENTRY || name == HASH_KEY {
        return bad("this name is reserved for the codec");
    }
    if !is_header_safe(value) {
        return bad(
            "system entry values must be printable ASCII without leading or trailing space",
        );
    }
    Ok(())
}

/// Smallest encoded entry first, ties by attribute name.
fn sort_by_size(fields: &mut [Field<'_>]) {
    fields.sort_by(|a, b| a.size().cmp(&b.size()).then_with(|| a.name.cmp(b.name)));
}

/// [`Behavior::TruncateData`]: fills `metadata` with `fields` (sorted by size) while they fit,
/// leaving room for the `_t` list of the others; cuts the first of those to the room left if it is
/// a string. Returns the attributes listed in `_t`.
fn truncate(
    fields: Vec<Field<'_>>,
    metadata: &mut Vec<(Cow<'static, str>, String)>,
    system_size: usize,
) -> Result<Vec<String>> {
    let mut kept = 0;
    let mut used = system_size;
    while let Some(field) = fields.get(kept) {
        if used + field.size() > METADATA_LIMIT {
            break;
        }
        used += field.size();
        kept += 1;
    }
    if kept == fields.len() {
        metadata.extend(fields.into_iter().map(|field| (field.meta, field.encoded)));
        return Ok(Vec::new());
    }
    // Size of the `_t` entry listing fields[kept..]; give back kept fields until it fits.
    let list_size = |kept: usize| {
        let rest = fields.get(kept..).unwrap_or_default();
        TRUNCATED_ENTRY.len() + rest.iter().map(|f| f.meta.len()).sum::<usize>() + rest.len() - 1
    };
    let mut t_size = list_size(kept);
    while used + t_size > METADATA_LIMIT {
        let Some(last) = kept.checked_sub(1) else {
            return Err(Error::MetadataLimit {
                size: used + t_size,
                limit: METADATA_LIMIT,
            });
        };
        kept = last;
        used -= fields.get(kept).map_or(0, Field::size);
        t_size = list_size(kept);
    }

    let mut fields = fields.into_iter();
    metadata.extend(
        fields
            .by_ref()
            .take(kept)
            .map(|field| (field.meta, field.encoded)),
    );
    let dropped: Vec<Field<'_>> = fields.collect();
    let list = dropped
        .iter()
        .map(|f| f.meta.as_ref())
        .collect::<Vec<_>>()
        .join(",");
    metadata.push((Cow::Borrowed(TRUNCATED_ENTRY), list));
    if let Some(first) = dropped.first()
        && let Value::String(s) = first.value
    {
        let room = METADATA_LIMIT.saturating_sub(used + t_size + first.meta.len());
        let prefix = longest_prefix(s, room);
        if !prefix.is_empty() {
            metadata.push((first.meta.clone(), value::encode_string(prefix)));
        }
    }
    Ok(dropped.iter().map(|f| f.name.to_owned()).collect())
}

/// The longest prefix of `s`, cut on a char boundary, whose encoding takes at most `room` bytes.
fn longest_prefix(s: &str, room: usize) -> &str {
    let bytes = s.as_bytes();
    let printable = bytes
        .iter()
        .position(|b| !(0x20..0x7f).contains(b))
        .unwrap_or(bytes.len());
    let starts_with_space = bytes.first() == Some(&b' ');
    // The encoding is at least one byte longer than the text.
    let mut len = s.len().min(room.saturating_sub(1));
    loop {
        if s.is_char_boundary(len) {
            let safe = len == 0
                || (len <= printable && !starts_with_space && bytes.get(len - 1) != Some(&b' '));
            let encoded = 1 + if safe { len } else { value::base64_len(len) };
            if encoded <= room {
                return s.get(..len).unwrap_or_default();
            }
        }
        match len.checked_sub(1) {
            Some(shorter) => len = shorter,
            None => return "",
        }
    }
}

/// 16 hex digits of a 64-bit hash of the metadata's `name=value` lines, in name order.
///
/// It only has to change whenever the metadata changes (so that the body, hence S3's ETag, does);
/// nothing compares it with another writer's, so `std`'s SipHash serves (its algorithm may change
/// between Rust releases without harm) at half the cost of SHA-256.
fn metadata_hash(metadata: &Metadata) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    for (name, value) in metadata.iter() {
        hasher.write(name.as_bytes());
        hasher.write_u8(b'=');
        hasher.write(value.as_bytes());
        hasher.write_u8(b'\n');
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = hasher.finish();
    let mut out = String::with_capacity(16);
    for nibble in (0..16).rev() {
        out.push(char::from(HEX[((hash >> (nibble * 4)) & 15) as usize]));
    }
    out
}

/// Decodes an object written by [`encode`] (under any behavior) back into its document.
///
/// `key_for_errors` is the object's key, used in errors only.
///
/// # Errors
/// [`Error::Corrupt`] for a metadata name or body key that is neither a system entry, a known
/// short key nor a valid escaped name; a value that does not decode; a body that is not a JSON
/// object; or a field present both in metadata and body.
pub fn decode(
    metadata: &Metadata,
    body: &[u8],
    fields: &FieldMap,
    key_for_errors: &str,
) -> Result<Decoded> {
    let corrupt = |reason: String| Error::Corrupt {
        key: key_for_errors.to_owned(),
        reason,
    };
    let attribute = |meta: &str, place: &str| {
        fields.attribute_name(meta).ok_or_else(|| {
            if meta.starts_with(ESCAPED_PREFIX) {
                corrupt(format!(
                    "{place} name {meta:?} is not a valid escaped attribute name"
                ))
            } else {
                corrupt(format!(
                    "{place} name {meta:?} is not a key of the resource's field map"
                ))
            }
        })
    };

    let mut decoded = Decoded::default();
    for (meta, text) in metadata.iter() {
        if meta == TRUNCATED_ENTRY {
            for item in text.split(',') {
                decoded
                    .truncated
                    .push(attribute(item, "truncated-field list")?);
            }
        } else if meta.starts_with('_') {
            decoded.system.insert(meta.to_owned(), text.to_owned());
        } else {
            let name = attribute(meta, "metadata")?;
            let value =
                decode_value(text).map_err(|e| corrupt(format!("metadata entry {meta:?}: {e}")))?;
            decoded.doc.insert(name, value);
        }
    }

    let body = std::str::from_utf8(body).map_err(|_| corrupt("body is not UTF-8".to_owned()))?;
    if body.trim().is_empty() {
        return Ok(decoded);
    }
    let Value::Object(entries) =
        canonical::parse(body).map_err(|e| corrupt(format!("body: {e}")))?
    else {
        return Err(corrupt("body is not a JSON object".to_owned()));
    };
    for (meta, value) in entries {
        if meta == HASH_KEY {
            continue;
        }
        if meta.starts_with('_') {
            return Err(corrupt(format!(
                "unexpected system entry {meta:?} in the body"
            )));
        }
        let name = attribute(&meta, "body")?;
        if decoded.doc.contains_key(&name) {
            return Err(corrupt(format!(
                "field {name:?} is both in metadata and body"
            )));
        }
        decoded.doc.insert(name, value);
    }
    Ok(decoded)
}
