//! Records: the documents a resource stores, with their system fields.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::store::ETag;

/// A document as the user gives it: field name → JSON value.
pub type Document = Map<String, Value>;

/// A stored record: its id, its data (user fields, and `created_at`/`updated_at` when the resource
/// keeps timestamps), the ETag of the version read, and the schema version it was written with.
///
/// Serializable, so caches and replicas can keep records outside the process.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub(crate) id: String,
    pub(crate) data: Document,
    pub(crate) etag: ETag,
    pub(crate) schema_version: String,
}

impl Record {
    /// A record from its parts (for caches and replicas that stored one; the resource layer makes
    /// its own).
    #[must_use]
    pub fn from_parts(id: String, data: Document, etag: ETag, schema_version: String) -> Self {
        Self {
            id,
            data,
            etag,
            schema_version,
        }
    }

    /// The record's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// One field.
    #[must_use]
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.data.get(field)
    }

    /// All fields (without the id).
    #[must_use]
    pub fn data(&self) -> &Document {
        &self.data
    }

    /// The ETag of this version, for [`crate::Resource::update_if_match`].
    #[must_use]
    pub fn etag(&self) -> &ETag {
        &self.etag
    }

    /// The schema version the record was written with (`v1`, `v2`, …).
    #[must_use]
    pub fn schema_version(&self) -> &str {
        &self.schema_version
    }

    /// The record as one JSON object, `id` included.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut map = self.data.clone();
        map.insert("id".to_owned(), Value::String(self.id.clone()));
        Value::Object(map)
    }

    /// The record deserialized into your type (its `id` field, if any, gets the record's id).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the data does not fit `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.to_json()).map_err(|e| Error::Corrupt {
            key: self.id.clone(),
            reason: format!(
                "the record does not deserialize into {}: {e}",
                std::any::type_name::<T>()
            ),
        })
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("data", &self.data)
            .field("etag", &self.etag)
            .field("schema_version", &self.schema_version)
            .finish()
    }
}

/// Turns anything serializable into a [`Document`].
///
/// # Errors
/// [`Error::Validation`] if it is not a JSON object.
pub fn to_document<T: Serialize + ?Sized>(value: &T) -> Result<Document> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::Validation(vec![crate::error::FieldError::new(
            "",
            "type",
            format!("a record must be a JSON object, not {}", json_kind(&other)),
        )])),
        Err(e) => Err(Error::Validation(vec![crate::error::FieldError::new(
            "",
            "type",
            format!("the value does not serialize to JSON: {e}"),
        )])),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json() -> Result<()> {
        let mut data = Document::new();
        data.insert("name".into(), Value::String("Ann".into()));
        let record = Record::from_parts("a".into(), data, ETag::new("\"e1\""), "v2".into());
        let text = serde_json::to_string(&record).map_err(|e| Error::Corrupt {
            key: "a".into(),
            reason: e.to_string(),
        })?;
        let back: Record = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
            key: "a".into(),
            reason: e.to_string(),
        })?;
        assert_eq!(back, record);
        assert_eq!(back.etag().as_str(), "\"e1\"");
        Ok(())
    }
}
