//! Partitions: named sets of fields under which every record writes a reference object, so that
//! listing, counting and querying by those fields read only one prefix.
//!
//! The reference of record `id` in partition `byRegion` on field `region` = `eu` is the empty object
//! `resource=<r>/partition=byRegion/region=eu/id=<id>`. With several fields they come sorted by name.
//! Values are encoded so that any value makes a valid key part: `%` `/` and control characters are
//! percent-encoded (and `.` when the value is `.` or contains `..`); a missing or null value is
//! `%00`; numbers and booleans are written as their JSON text.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::key::Key;

/// A partition: its name and its fields, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    name: String,
    fields: Vec<String>,
}

impl Partition {
    /// A partition over `fields` (sorted and de-duplicated).
    ///
    /// # Errors
    /// [`Error::BadSchema`] if the name or a field is empty or contains `/` or `=`.
    pub fn new(name: &str, fields: impl IntoIterator<Item = impl Into<String>>) -> Result<Self> {
        let mut fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        fields.sort();
        fields.dedup();
        let bad = |reason: &str| Error::BadSchema {
            attribute: name.to_owned(),
            rule: format!("partition {name}: {}", fields.join(",")),
            reason: reason.to_owned(),
        };
        if name.is_empty() || name.contains(['/', '=']) || name.chars().any(char::is_control) {
            return Err(bad(
                "partition names must be non-empty, without '/', '=' or control characters",
            ));
        }
        if fields.is_empty() {
            return Err(bad("a partition needs at least one field"));
        }
        if fields
            .iter()
            .any(|f| f.is_empty() || f.contains(['/', '=', '.']) || f.chars().any(char::is_control))
        {
            return Err(bad(
                "partition fields must be top-level attribute names without '/', '=' or '.'",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            fields,
        })
    }

    /// The partition's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its fields, sorted.
    #[must_use]
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The prefix of all references of this partition: `resource=<r>/partition=<P>`.
    ///
    /// # Errors
    /// [`Error::BadKey`] if the names make an invalid key.
    pub fn root(&self, resource: &str) -> Result<Key> {
        Key::from_parts([
            format!("resource={resource}"),
            format!("partition={}", self.name),
        ])
    }

    /// The prefix holding the references whose fields have these values (all fields given), or
    /// `None` if `values` does not fix every field.
    ///
    /// # Errors
    /// [`Error::BadKey`] if a value makes the key too long.
    pub fn prefix_for(
        &self,
        resource: &str,
        values: &BTreeMap<String, Value>,
    ) -> Result<Option<Key>> {
        let mut key = self.root(resource)?;
        for field in &self.fields {
            let Some(value) = values.get(field) else {
                return Ok(None);
            };
            key = key.join(&format!("{field}={}", encode_value(value)))?;
        }
        Ok(Some(key))
    }

    /// The reference key of a record with these data.
    ///
    /// # Errors
    /// [`Error::BadKey`] if a value or the id makes an invalid or too long key.
    pub fn reference(&self, resource: &str, id: &str, data: &Map<String, Value>) -> Result<Key> {
        let mut key = String::with_capacity(64 + resource.len() + id.len());
        key.push_str("resource=");
        key.push_str(resource);
        key.push_str("/partition=");
        key.push_str(&self.name);
        for field in &self.fields {
            key.push('/');
            key.push_str(field);
            key.push('=');
            push_encoded_value(&mut key, data.get(field).unwrap_or(&Value::Null));
        }
        key.push_str("/id=");
        key.push_str(id);
        Key::from_string(key)
    }

    /// Whether a record with these data belongs under the reference `values` describes.
    #[must_use]
    pub fn matches(&self, data: &Map<String, Value>, values: &BTreeMap<String, Value>) -> bool {
        self.fields.iter().all(|f| {
            let have = data.get(f).unwrap_or(&Value::Null);
            let want = values.get(f).unwrap_or(&Value::Null);
            encode_value(have) == encode_value(want)
        })
    }
}

/// Encodes a partition value as a key-part-safe string.
#[must_use]
pub fn encode_value(value: &Value) -> String {
    let mut out = String::new();
    push_encoded_value(&mut out, value);
    out
}

/// Appends [`encode_value`] of `value` to `out`.
fn push_encoded_value(out: &mut String, value: &Value) {
    let json;
    let text = match value {
        Value::Null => {
            out.push_str("%00");
            return;
        }
        Value::String(s) => s.as_str(),
        other => {
            json = other.to_string();
            json.as_str()
        }
    };
    let dots = text == "." || text.contains("..");
    let plain = |c: char| !(c == '%' || c == '/' || c.is_control() || (dots && c == '.'));
    if text.chars().all(plain) {
        out.push_str(text);
        return;
    }
    out.reserve(text.len());
    for c in text.chars() {
        if plain(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn reference_keys() -> Result<()> {
        let p = Partition::new("byRegionAndTier", ["tier", "region"])?;
        assert_eq!(p.fields(), ["region", "tier"]);
        let key = p.reference("users", "u1", &doc(json!({"region": "eu/west", "tier": 2})))?;
        assert_eq!(
            key.as_str(),
            "resource=users/partition=byRegionAndTier/region=eu%2Fwest/tier=2/id=u1"
        );
        let missing = p.reference("users", "u2", &doc(json!({"region": ".."})))?;
        assert_eq!(
            missing.as_str(),
            "resource=users/partition=byRegionAndTier/region=%2E%2E/tier=%00/id=u2"
        );
        let values: BTreeMap<String, Value> = [("region".to_owned(), json!("eu/west"))].into();
        assert_eq!(p.prefix_for("users", &values)?, None);
        let values: BTreeMap<String, Value> = [
            ("region".to_owned(), json!("eu/west")),
            ("tier".to_owned(), json!(2)),
        ]
        .into();
        assert!(
            p.prefix_for("users", &values)?
                .is_some_and(|k| key.is_under(&k))
        );
        assert!(p.matches(&doc(json!({"region": "eu/west", "tier": 2})), &values));
        assert!(!p.matches(&doc(json!({"region": "eu", "tier": 2})), &values));
        Ok(())
    }

    #[test]
    fn encoding_is_injective_on_strings() {
        let values = ["a", "a%2F", "a/", "%00", "", ".", "..", "a.b", "é", "x\ny"];
        let encoded: Vec<_> = values.iter().map(|v| encode_value(&json!(v))).collect();
        let mut unique = encoded.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), encoded.len(), "{encoded:?}");
        assert_ne!(encode_value(&Value::Null), encode_value(&json!("%00")));
        for e in &encoded {
            if !e.is_empty() {
                assert!(crate::key::check_part(e).is_ok(), "{e}");
            }
        }
    }

    #[test]
    fn bad_definitions() {
        assert!(Partition::new("", ["a"]).is_err());
        assert!(Partition::new("p", Vec::<String>::new()).is_err());
        assert!(Partition::new("p", ["a/b"]).is_err());
        assert!(Partition::new("p=x", ["a"]).is_err());
    }
}
