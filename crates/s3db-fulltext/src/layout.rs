//! Where the index lives in the bucket. Everything is scoped to the indexed resource, below
//! `resource=<r>/plugin=<slug>/`:
//!
//! ```text
//! meta                      the settings the index was built with (fields, tokenizer, shards)
//! terms/<shard>             postings of every term whose first `shard_prefix` characters are
//!                           <shard>: {term: {record id: {field: occurrences}}}
//! lengths/<nnnn>            field lengths (in terms) of the records whose id hashes (FNV-1a) to
//!                           shard nnnn of `length_shards`: {record id: {field: length}}
//! docs/<id>                 one record's entry: the terms it is indexed under, and while a
//!                           change is being applied, the terms that change may touch
//! pending/<id>/<token>      a write of record <id> whose index change has not completed
//! pending-insert/<token>    the same for an insert without an id (known only after the write)
//! ```
//!
//! Shard names are the term's leading characters, ASCII letters and digits as they are, any other
//! character as `_` and six hex digits of its code point (so a name is a valid key part and the
//! encoding of a prefix is a prefix of the encoding).

use s3db_core::Key;
use s3db_core::plugin::{PluginStorage, Result};

/// Sub-prefix of the postings shards.
pub(crate) const TERMS: &str = "terms";
/// Sub-prefix of the length shards.
pub(crate) const LENGTHS: &str = "lengths";
/// Sub-prefix of the records' entries.
pub(crate) const DOCS: &str = "docs";
/// Sub-prefix of the pending markers of known records.
pub(crate) const PENDING: &str = "pending";
/// Sub-prefix of the pending markers of inserts without an id.
pub(crate) const PENDING_INSERT: &str = "pending-insert";
/// The index's settings.
pub(crate) const META: &str = "meta";

/// Builds the keys of one plugin's index.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) storage: PluginStorage,
    pub(crate) shard_prefix: usize,
    pub(crate) length_shards: usize,
}

impl Layout {
    pub(crate) fn meta(&self, resource: &str) -> Result<Key> {
        self.storage.key(Some(resource), &[META])
    }

    pub(crate) fn postings(&self, resource: &str, shard: &str) -> Result<Key> {
        self.storage.key(Some(resource), &[TERMS, shard])
    }

    pub(crate) fn lengths(&self, resource: &str, shard: usize) -> Result<Key> {
        self.storage
            .key(Some(resource), &[LENGTHS, &format!("{shard:04}")])
    }

    pub(crate) fn doc(&self, resource: &str, id: &str) -> Result<Key> {
        self.storage.key(Some(resource), &[DOCS, id])
    }

    pub(crate) fn pending(&self, resource: &str, id: Option<&str>, token: &str) -> Result<Key> {
        match id {
            Some(id) => self.storage.key(Some(resource), &[PENDING, id, token]),
            None => self.storage.key(Some(resource), &[PENDING_INSERT, token]),
        }
    }

    pub(crate) fn sub(&self, resource: &str, sub: &str) -> Result<Key> {
        self.storage.key(Some(resource), &[sub])
    }

    /// The shard holding `term`'s postings.
    pub(crate) fn shard_of(&self, term: &str) -> String {
        encode(&term.chars().take(self.shard_prefix).collect::<String>())
    }

    /// Whether `term` is shorter than a shard name (its prefix matches may be in several shards).
    pub(crate) fn is_short(&self, term: &str) -> bool {
        term.chars().count() < self.shard_prefix
    }

    /// The length shard of record `id`.
    pub(crate) fn length_shard_of(&self, id: &str) -> usize {
        let shards = u64::try_from(self.length_shards).unwrap_or(1).max(1);
        usize::try_from(fnv1a(id.as_bytes()) % shards).unwrap_or(0)
    }
}

/// The key-safe, prefix-preserving encoding of a term prefix.
pub(crate) fn encode(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push_str(&format!("_{:06x}", u32::from(c)));
        }
    }
    out
}

/// FNV-1a, 64 bits: stable across processes and versions (unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_prefixes() {
        assert_eq!(encode("ab"), "ab");
        assert_eq!(encode("é1"), "_0000e91");
        let whole = encode("東京");
        assert!(whole.starts_with(&encode("東")));
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
