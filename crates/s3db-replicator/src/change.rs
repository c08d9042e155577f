//! Changes: what a target receives for one insert, update or delete, and how a record becomes
//! one (internal fields stripped, secrets handled, filter and transform applied).

use chrono::{DateTime, Utc};
use s3db_core::plugin::Document;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What happened to a record (core's [`WriteAction`]: `insert`, `update` — update, patch, replace
/// or an upsert of an existing record — or `delete`; [`crate::ReplicatorPlugin::sync_all`] copies
/// records as inserts).
pub use s3db_core::plugin::WriteAction as Action;

/// One change as a target receives it. Serialized (SQS message body, webhook body) as
/// `{"resource", "source_resource", "action", "id", "data", "before", "timestamp"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The resource on the target's side (the source name, or its rename).
    pub resource: String,
    /// The resource the change happened in.
    pub source_resource: String,
    /// What happened.
    pub action: Action,
    /// The record's id on the target's side (a transform may change it).
    pub id: String,
    /// The record after the change, without its id and internal fields; `None` for a delete.
    pub data: Option<Document>,
    /// The record before the change, for updates and deletes (when it was known and passed the
    /// filter), transformed like `data`.
    pub before: Option<Document>,
    /// When the change was replicated first.
    pub timestamp: DateTime<Utc>,
}

/// Removes internal fields (names starting with `_` or `$`, at every level: the core reserves
/// them for system fields) and, unless `keep_secrets`, the `secret` attributes at `secret_paths`
/// (dotted).
pub(crate) fn strip(doc: &mut Document, secret_paths: &[String], keep_secrets: bool) {
    strip_internal(doc);
    if !keep_secrets {
        for path in secret_paths {
            remove_path(doc, path);
        }
    }
}

fn strip_internal(doc: &mut Document) {
    doc.retain(|k, _| !(k.starts_with('_') || k.starts_with('$')));
    for value in doc.values_mut() {
        if let Value::Object(inner) = value {
            strip_internal(inner);
        }
    }
}

/// Removes the field at a dotted path, if present.
pub(crate) fn remove_path(doc: &mut Document, path: &str) {
    match path.split_once('.') {
        None => {
            doc.remove(path);
        }
        Some((head, rest)) => {
            if let Some(Value::Object(inner)) = doc.get_mut(head) {
                remove_path(inner, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Document {
        match v {
            Value::Object(m) => m,
            _ => Document::new(),
        }
    }

    #[test]
    fn strips_internal_fields_and_secrets() {
        let mut d = doc(json!({
            "name": "a", "_v": "v1", "$x": 1,
            "nested": {"_h": 1, "key": "s", "ok": true},
            "token": "t"
        }));
        strip(&mut d, &["token".into(), "nested.key".into()], false);
        assert_eq!(
            Value::Object(d),
            json!({"name": "a", "nested": {"ok": true}})
        );
        let mut kept = doc(json!({"token": "t", "_v": 1}));
        strip(&mut kept, &["token".into()], true);
        assert_eq!(Value::Object(kept), json!({"token": "t"}));
    }
}
