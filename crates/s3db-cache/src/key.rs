//! Cache keys, the families they belong to, and what a write invalidates.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use s3db_core::plugin::{Document, Operation};
use s3db_core::resource::partition::encode_value;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a cached read depends on: one record, the whole resource, or one partition of it.
///
/// A write to a record invalidates its [`Family::Record`] keys, every [`Family::Collection`]
/// key of its resource and the [`Family::Partition`] keys the record was or is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Family {
    /// `get` and `exists` of one record.
    Record {
        /// The record's id.
        id: String,
    },
    /// `list`, `list_ids`, `count` of the whole resource, `page` and `query`.
    Collection,
    /// `list`, `list_ids` and `count` of one partition.
    Partition {
        /// The partition's name.
        name: String,
        /// The values asked for, field → value.
        values: BTreeMap<String, Value>,
    },
}

impl Family {
    fn path(&self) -> String {
        match self {
            Family::Record { id } => format!("rec/{}", short_hash(id.as_bytes())),
            Family::Collection => "coll".to_owned(),
            Family::Partition { name, values } => {
                let text = serde_json::to_string(values).unwrap_or_default();
                format!("part/{}", short_hash(format!("{name}\0{text}").as_bytes()))
            }
        }
    }
}

/// The key of one cached read: resource, schema version, family, operation and a hash of the
/// operation's parameters.
///
/// Its [`CacheKey::path`] (`<resource>/<version>/<family>/<operation>/<params>`) is unique and
/// made of key-safe parts only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    resource: String,
    version: String,
    family: Family,
    operation: String,
    params: String,
    path: String,
}

impl CacheKey {
    /// A key; `params` is hashed.
    #[must_use]
    pub fn new(
        resource: &str,
        version: &str,
        family: Family,
        operation: &str,
        params: Option<&str>,
    ) -> Self {
        let params = params.map_or_else(|| "-".to_owned(), |p| short_hash(p.as_bytes()));
        let path = format!(
            "{resource}/{version}/{}/{operation}/{params}",
            family.path()
        );
        Self {
            resource: resource.to_owned(),
            version: version.to_owned(),
            family,
            operation: operation.to_owned(),
            params,
            path,
        }
    }

    /// The key of a read operation of a resource at a schema version, or `None` for an operation
    /// the cache does not keep (writes, and operations it does not know).
    #[must_use]
    pub fn of_operation(resource: &str, version: &str, op: &Operation) -> Option<Self> {
        let partition_family = |p: &Option<(String, BTreeMap<String, Value>)>| match p {
            Some((name, values)) => Family::Partition {
                name: name.clone(),
                values: values.clone(),
            },
            None => Family::Collection,
        };
        let key = match op {
            Operation::Get { id } => Self::new(
                resource,
                version,
                Family::Record { id: id.clone() },
                "get",
                None,
            ),
            Operation::Exists { id } => Self::new(
                resource,
                version,
                Family::Record { id: id.clone() },
                "exists",
                None,
            ),
            Operation::List { partition, limit } => Self::new(
                resource,
                version,
                partition_family(partition),
                "list",
                Some(&format!("{limit:?}")),
            ),
            Operation::ListIds { partition, limit } => Self::new(
                resource,
                version,
                partition_family(partition),
                "list_ids",
                Some(&format!("{limit:?}")),
            ),
            Operation::Count { partition } => Self::new(
                resource,
                version,
                partition_family(partition),
                "count",
                None,
            ),
            Operation::Page { size, cursor } => Self::new(
                resource,
                version,
                Family::Collection,
                "page",
                Some(&format!("{size}\0{cursor:?}")),
            ),
            Operation::Query { filter } => Self::new(
                resource,
                version,
                Family::Collection,
                "query",
                Some(&format!("{filter:?}")),
            ),
            _ => return None,
        };
        Some(key)
    }

    /// The resource.
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The schema version of the resource the read ran against.
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }

    /// What the read depends on.
    #[must_use]
    pub fn family(&self) -> &Family {
        &self.family
    }

    /// The operation (`get`, `list`, `count`, …).
    #[must_use]
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The hash of the parameters (`-` when the operation has none).
    #[must_use]
    pub fn params(&self) -> &str {
        &self.params
    }

    /// `<resource>/<version>/<family>/<operation>/<params>`: unique, key-safe parts only.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// What a write (or an explicit invalidation) makes stale in one resource. Drivers ask
/// [`Invalidation::affects`] which of their keys to drop.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalidation {
    resource: String,
    scope: Scope,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scope {
    /// Everything of the resource.
    Everything,
    /// A write to one record: its own keys (when the id is known), every collection key, and
    /// the partition keys of the given versions of its data (every partition key when `None`).
    Record {
        id: Option<String>,
        data: Option<Vec<Document>>,
    },
}

impl Invalidation {
    /// Everything cached for `resource`.
    #[must_use]
    pub fn resource(resource: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            scope: Scope::Everything,
        }
    }

    /// A write to record `id` (unknown for a failed insert without id) whose data was or is
    /// each of `data` (`None` when unknown: every partition key is affected).
    #[must_use]
    pub fn record(resource: &str, id: Option<&str>, data: Option<Vec<Document>>) -> Self {
        Self {
            resource: resource.to_owned(),
            scope: Scope::Record {
                id: id.map(str::to_owned),
                data,
            },
        }
    }

    /// The resource it is about.
    #[must_use]
    pub fn resource_name(&self) -> &str {
        &self.resource
    }

    /// Whether it drops everything of the resource.
    #[must_use]
    pub fn is_whole_resource(&self) -> bool {
        matches!(self.scope, Scope::Everything)
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Whether the read cached under `key` may have changed.
    ///
    /// A partition key is affected when a version of the record's data has the value asked for
    /// in **any** of the key's fields: a record belongs to a partition listing only if it
    /// matches all of the partition's fields, so this never misses a change (it may drop a
    /// little more than needed for partitions of several fields).
    #[must_use]
    pub fn affects(&self, key: &CacheKey) -> bool {
        if key.resource != self.resource {
            return false;
        }
        match &self.scope {
            Scope::Everything => true,
            Scope::Record { id, data } => match &key.family {
                Family::Record { id: key_id } => id.as_deref() == Some(key_id.as_str()),
                Family::Collection => true,
                Family::Partition { values, .. } => match data {
                    None => true,
                    Some(data) => data.iter().any(|d| partition_touched(values, d)),
                },
            },
        }
    }
}

/// Whether a record with `data` has the value of any field of a partition key.
pub(crate) fn partition_touched(values: &BTreeMap<String, Value>, data: &Document) -> bool {
    values.iter().any(|(field, want)| {
        let have = data.get(field).unwrap_or(&Value::Null);
        encode_value(have) == encode_value(want)
    })
}

/// Hex of the first 16 bytes of the SHA-256 of `bytes`.
pub(crate) fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Hex of the whole SHA-256 of `bytes`.
pub(crate) fn full_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Document {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let a = CacheKey::new("users", "v1", Family::Collection, "list", Some("None"));
        let b = CacheKey::new("users", "v1", Family::Collection, "list", Some("Some(3)"));
        let c = CacheKey::new("users", "v2", Family::Collection, "list", Some("None"));
        assert_ne!(a.path(), b.path());
        assert_ne!(a.path(), c.path());
        assert_eq!(
            a.path(),
            CacheKey::new("users", "v1", Family::Collection, "list", Some("None")).path()
        );
        assert!(a.path().starts_with("users/v1/coll/list/"));
    }

    #[test]
    fn a_record_write_affects_exactly_its_keys() {
        let get =
            |id: &str| CacheKey::new("u", "v1", Family::Record { id: id.into() }, "get", None);
        let part = |region: &str| {
            CacheKey::new(
                "u",
                "v1",
                Family::Partition {
                    name: "byRegion".into(),
                    values: [("region".to_owned(), json!(region))].into(),
                },
                "list",
                None,
            )
        };
        let coll = CacheKey::new("u", "v1", Family::Collection, "count", None);
        let other = CacheKey::new("other", "v1", Family::Collection, "count", None);
        let write = Invalidation::record(
            "u",
            Some("a"),
            Some(vec![
                doc(json!({"region": "eu"})),
                doc(json!({"region": "us"})),
            ]),
        );
        assert!(write.affects(&get("a")));
        assert!(!write.affects(&get("b")));
        assert!(write.affects(&coll));
        assert!(!write.affects(&other));
        assert!(write.affects(&part("eu")));
        assert!(write.affects(&part("us")));
        assert!(!write.affects(&part("asia")));
        let unknown = Invalidation::record("u", Some("a"), None);
        assert!(unknown.affects(&part("asia")));
        assert!(Invalidation::resource("u").affects(&get("zzz")));
    }

    #[test]
    fn partition_values_compare_as_stored() {
        // 1 and "1" are the same partition value in core's encoding.
        let values = [("n".to_owned(), json!(1))].into();
        assert!(partition_touched(&values, &doc(json!({"n": "1"}))));
        let null = [("n".to_owned(), Value::Null)].into();
        assert!(partition_touched(&null, &doc(json!({}))));
    }
}
