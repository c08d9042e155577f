//! What the cache keeps: the answer of a read, stamped with when and by whom it was loaded.

use std::borrow::Cow;

use s3db_core::PageResult;
use s3db_core::plugin::{Error, Outcome, Record, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The kinds of cached answers; drivers say which they can hold ([`crate::CacheDriver::accepts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// Records, lists of records and pages. The memory driver keeps them as the values core
    /// returned; drivers that store bytes keep them serialized ([`CacheEntry::to_json`]). The
    /// s3 driver does not take them: a cached `get` there would cost a GET, like the record.
    Live,
    /// A count.
    Count,
    /// A list of ids.
    Ids,
    /// Whether a record exists.
    Exists,
    /// A `get` of a record that does not exist.
    NotFound,
}

/// A cached answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CachedValue {
    /// A record, records or a page, as core returned them (or as read back from bytes).
    Live(Outcome),
    /// A count.
    Count(u64),
    /// Ids.
    Ids(Vec<String>),
    /// Whether a record exists.
    Exists(bool),
    /// The record did not exist (the key core reported).
    NotFound(String),
}

impl CachedValue {
    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> ValueKind {
        match self {
            CachedValue::Live(_) => ValueKind::Live,
            CachedValue::Count(_) => ValueKind::Count,
            CachedValue::Ids(_) => ValueKind::Ids,
            CachedValue::Exists(_) => ValueKind::Exists,
            CachedValue::NotFound(_) => ValueKind::NotFound,
        }
    }

    /// The value to cache for the result of `operation`, if it is cacheable: successful reads,
    /// and "not found" for `get`.
    pub(crate) fn from_result(operation: &str, result: &Result<Outcome>) -> Option<Self> {
        match (operation, result) {
            ("get", Ok(o @ Outcome::Record(_)))
            | ("list" | "query", Ok(o @ Outcome::Records(_)))
            | ("page", Ok(o @ Outcome::Page(_))) => Some(CachedValue::Live(o.clone())),
            ("get", Err(Error::NotFound { key })) => Some(CachedValue::NotFound(key.clone())),
            ("list_ids", Ok(Outcome::Ids(ids))) => Some(CachedValue::Ids(ids.clone())),
            ("count", Ok(Outcome::Count(n))) => Some(CachedValue::Count(*n)),
            ("exists", Ok(Outcome::Exists(b))) => Some(CachedValue::Exists(*b)),
            _ => None,
        }
    }

    /// The kinds of value `operation` may produce.
    pub(crate) fn kinds_of(operation: &str) -> &'static [ValueKind] {
        match operation {
            "get" => &[ValueKind::Live, ValueKind::NotFound],
            "list" | "query" | "page" => &[ValueKind::Live],
            "list_ids" => &[ValueKind::Ids],
            "count" => &[ValueKind::Count],
            "exists" => &[ValueKind::Exists],
            _ => &[],
        }
    }

    /// Whether this value answers `operation`.
    pub(crate) fn answers(&self, operation: &str) -> bool {
        matches!(
            (operation, self),
            (
                "get",
                CachedValue::Live(Outcome::Record(_)) | CachedValue::NotFound(_)
            ) | ("list" | "query", CachedValue::Live(Outcome::Records(_)))
                | ("page", CachedValue::Live(Outcome::Page(_)))
                | ("list_ids", CachedValue::Ids(_))
                | ("count", CachedValue::Count(_))
                | ("exists", CachedValue::Exists(_))
        )
    }

    /// The answer it gives (check [`CachedValue::answers`] first).
    pub(crate) fn into_answer(self) -> Result<Outcome> {
        match self {
            CachedValue::Live(o) => Ok(o),
            CachedValue::NotFound(key) => Err(Error::NotFound { key }),
            CachedValue::Ids(ids) => Ok(Outcome::Ids(ids)),
            CachedValue::Count(n) => Ok(Outcome::Count(n)),
            CachedValue::Exists(b) => Ok(Outcome::Exists(b)),
        }
    }

    /// An estimate of the memory it takes, in bytes (for the memory driver's weigher).
    #[must_use]
    pub fn estimated_size(&self) -> usize {
        match self {
            CachedValue::Live(outcome) => 32 + outcome_size(outcome),
            CachedValue::Count(_) | CachedValue::Exists(_) => 16,
            CachedValue::Ids(ids) => 24 + ids.iter().map(|i| i.len() + 24).sum::<usize>(),
            CachedValue::NotFound(key) => 24 + key.len(),
        }
    }
}

fn outcome_size(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Record(r) => record_size(r),
        Outcome::Records(rs) => rs.iter().map(record_size).sum(),
        Outcome::Page(p) => {
            p.items.iter().map(record_size).sum::<usize>()
                + p.next_cursor.as_ref().map_or(0, String::len)
        }
        Outcome::Ids(ids) => ids.iter().map(|i| i.len() + 24).sum(),
        _ => 16,
    }
}

fn record_size(r: &Record) -> usize {
    64 + r.id().len()
        + r.etag().as_str().len()
        + r.schema_version().len()
        + r.data()
            .iter()
            .map(|(k, v)| k.len() + value_size(v))
            .sum::<usize>()
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 16,
        Value::String(s) => 24 + s.len(),
        Value::Array(a) => 24 + a.iter().map(value_size).sum::<usize>(),
        Value::Object(o) => {
            32 + o
                .iter()
                .map(|(k, v)| k.len() + 24 + value_size(v))
                .sum::<usize>()
        }
    }
}

/// One cached answer with its stamp: when its load started (microseconds since the epoch, on
/// the loading process's clock) and which plugin instance loaded it.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The answer.
    pub value: CachedValue,
    /// When the load that produced it started (µs since the Unix epoch).
    pub loaded_at: u64,
    /// The plugin instance (process) that loaded it.
    pub writer: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Portable<'a> {
    // Borrowed when written, owned when read back: a list is not copied to be serialized.
    Record { record: Cow<'a, Record> },
    Records { records: Cow<'a, [Record]> },
    Page { page: Cow<'a, PageResult> },
    Count { count: u64 },
    Ids { ids: Vec<String> },
    Exists { exists: bool },
    NotFound { key: String },
}

#[derive(Serialize, Deserialize)]
struct PortableEntry<'a> {
    value: Portable<'a>,
    loaded_at: u64,
    writer: String,
}

impl CacheEntry {
    /// The entry as a JSON object, for drivers that store bytes: records, lists of records and
    /// pages are serialized with them. `None` for a [`CachedValue::Live`] value that is not a
    /// record, a list of records or a page (core never returns such a read).
    #[must_use]
    pub fn to_json(&self) -> Option<Map<String, Value>> {
        let value = match &self.value {
            CachedValue::Live(Outcome::Record(record)) => Portable::Record {
                record: Cow::Borrowed(record),
            },
            CachedValue::Live(Outcome::Records(records)) => Portable::Records {
                records: Cow::Borrowed(records),
            },
            CachedValue::Live(Outcome::Page(page)) => Portable::Page {
                page: Cow::Borrowed(page),
            },
            CachedValue::Live(_) => return None,
            CachedValue::Count(count) => Portable::Count { count: *count },
            CachedValue::Ids(ids) => Portable::Ids { ids: ids.clone() },
            CachedValue::Exists(exists) => Portable::Exists { exists: *exists },
            CachedValue::NotFound(key) => Portable::NotFound { key: key.clone() },
        };
        let entry = PortableEntry {
            value,
            loaded_at: self.loaded_at,
            writer: self.writer.clone(),
        };
        match serde_json::to_value(entry) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// An entry read back from [`CacheEntry::to_json`]; `None` if `json` is not one.
    #[must_use]
    pub fn from_json(json: Map<String, Value>) -> Option<Self> {
        let entry: PortableEntry<'_> = serde_json::from_value(Value::Object(json)).ok()?;
        let value = match entry.value {
            Portable::Record { record } => CachedValue::Live(Outcome::Record(record.into_owned())),
            Portable::Records { records } => {
                CachedValue::Live(Outcome::Records(records.into_owned()))
            }
            Portable::Page { page } => CachedValue::Live(Outcome::Page(page.into_owned())),
            Portable::Count { count } => CachedValue::Count(count),
            Portable::Ids { ids } => CachedValue::Ids(ids),
            Portable::Exists { exists } => CachedValue::Exists(exists),
            Portable::NotFound { key } => CachedValue::NotFound(key),
        };
        Some(Self {
            value,
            loaded_at: entry.loaded_at,
            writer: entry.writer,
        })
    }

    /// Whether it is past `ttl` after its load started, at `now_us`.
    #[must_use]
    pub fn expired(&self, ttl: Option<std::time::Duration>, now_us: u64) -> bool {
        ttl.is_some_and(|ttl| {
            let ttl = u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX);
            self.loaded_at.saturating_add(ttl) <= now_us
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_values_round_trip() {
        for value in [
            CachedValue::Count(7),
            CachedValue::Ids(vec!["a".into(), "b".into()]),
            CachedValue::Exists(true),
            CachedValue::NotFound("resource=u/data/id=x".into()),
        ] {
            let entry = CacheEntry {
                value,
                loaded_at: 12,
                writer: "w".into(),
            };
            let json = entry.to_json().unwrap_or_default();
            let back = CacheEntry::from_json(json).unwrap_or_else(|| panic!("round trip"));
            assert_eq!(format!("{:?}", back.value), format!("{:?}", entry.value));
            assert_eq!(back.loaded_at, 12);
            assert_eq!(back.writer, "w");
        }
        assert!(CacheEntry::from_json(Map::new()).is_none());
    }

    #[test]
    fn records_lists_and_pages_round_trip() {
        let mut data = Map::new();
        data.insert("name".into(), Value::from("Ann"));
        data.insert("tags".into(), serde_json::json!(["x", {"y": 1}]));
        let record = Record::from_parts(
            "a".into(),
            data,
            s3db_core::ETag::new("\"e1\""),
            "v2".into(),
        );
        let page = PageResult {
            items: vec![record.clone()],
            has_more: true,
            next_cursor: Some("a".into()),
        };
        for outcome in [
            Outcome::Page(page),
            Outcome::Record(record.clone()),
            Outcome::Records(Vec::new()),
            Outcome::Records(vec![record.clone(), record]),
        ] {
            let entry = CacheEntry {
                value: CachedValue::Live(outcome),
                loaded_at: 7,
                writer: "w".into(),
            };
            let json = entry.to_json().unwrap_or_else(|| panic!("portable"));
            let back = CacheEntry::from_json(json).unwrap_or_else(|| panic!("round trip"));
            assert_eq!(format!("{:?}", back.value), format!("{:?}", entry.value));
            assert_eq!(back.value.kind(), ValueKind::Live);
            assert_eq!((back.loaded_at, back.writer.as_str()), (7, "w"));
        }
        let deleted = CacheEntry {
            value: CachedValue::Live(Outcome::Deleted),
            loaded_at: 0,
            writer: String::new(),
        };
        assert!(deleted.to_json().is_none(), "not a read answer");
    }

    #[test]
    fn expiry_counts_from_the_load() {
        let entry = CacheEntry {
            value: CachedValue::Count(1),
            loaded_at: 1_000_000,
            writer: String::new(),
        };
        let ttl = Some(std::time::Duration::from_secs(1));
        assert!(!entry.expired(ttl, 1_500_000));
        assert!(entry.expired(ttl, 2_000_000));
        assert!(!entry.expired(None, u64::MAX));
    }
}
