//! The message format, and how a received message becomes a command (or a reason it cannot).
//!
//! A message is a JSON object `{"resource": "users", "action": "insert", "data": {…}}`. Updates
//! and deletes take the record's id from `data.id` (else a top-level `id`). When the body lacks
//! `resource` or `action`, the message attributes of the same names are used (SQS message
//! attributes, AMQP headers). An SNS notification envelope (`{"Type": "Notification", "Message":
//! "<json>"}`, what an SNS subscription without raw delivery puts in SQS) is unwrapped.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a message asks for (core's [`WriteAction`]): insert `data` (its `id`, if any, is the
/// record's id), merge `data` (less its `id`) into the record `data.id`, or delete the record
/// `data.id` (deleting a missing record succeeds).
pub use s3db_core::plugin::WriteAction as Action;

/// Reads an action name leniently: `insert` / `update` / `delete`, also in the past tense the
/// original's docs use (`inserted`, …), any case, surrounding spaces ignored.
#[must_use]
pub fn parse_action(name: &str) -> Option<Action> {
    match name.trim().to_ascii_lowercase().as_str() {
        "insert" | "inserted" => Some(Action::Insert),
        "update" | "updated" => Some(Action::Update),
        "delete" | "deleted" => Some(Action::Delete),
        _ => None,
    }
}

/// A message to apply: what [`crate::QueueConsumerPlugin::publish`] sends, and what a well-formed
/// received message reads as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// The target resource.
    pub resource: String,
    /// What to do.
    pub action: Action,
    /// The record's data (insert, update) or at least its `id` (update, delete).
    pub data: Value,
}

impl QueueMessage {
    /// Insert `data` into `resource`.
    pub fn insert(resource: impl Into<String>, data: Value) -> Self {
        Self {
            resource: resource.into(),
            action: Action::Insert,
            data,
        }
    }

    /// Merge `changes` into the record `id` of `resource`.
    pub fn update(resource: impl Into<String>, id: &str, changes: Value) -> Self {
        let mut data = match changes {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        data.insert("id".to_owned(), Value::String(id.to_owned()));
        Self {
            resource: resource.into(),
            action: Action::Update,
            data: Value::Object(data),
        }
    }

    /// Delete the record `id` of `resource`.
    pub fn delete(resource: impl Into<String>, id: &str) -> Self {
        Self {
            resource: resource.into(),
            action: Action::Delete,
            data: serde_json::json!({ "id": id }),
        }
    }

    /// The message as the JSON body sent to a queue.
    #[must_use]
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a message was refused. It is reported (event and counter) and not acknowledged: the
/// queue delivers it again, and a dead-letter queue takes it after its receive limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BadMessage {
    /// The body is not JSON.
    NotJson {
        /// The parser's complaint.
        error: String,
    },
    /// The body is JSON but not an object.
    NotAnObject,
    /// Neither the body nor the attributes name a resource.
    MissingResource,
    /// Neither the body nor the attributes name an action.
    MissingAction,
    /// The action is not insert, update or delete.
    UnknownAction {
        /// The action as given.
        action: String,
    },
    /// No resource of this name exists in the database.
    UnknownResource {
        /// The name as given.
        resource: String,
    },
    /// The consumer may not write to this resource: it is not in its `resources` list, or it is a
    /// plugin's internal `plg_*` resource.
    ResourceNotAllowed {
        /// The name as given.
        resource: String,
    },
    /// `data` is present but not an object.
    DataNotAnObject,
    /// An update or delete without a string `data.id`.
    MissingId {
        /// The action.
        action: Action,
    },
    /// The resource refused the data (validation, a bad id): nothing was written.
    InvalidData {
        /// The resource's error.
        error: String,
    },
}

impl fmt::Display for BadMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadMessage::NotJson { error } => write!(f, "the body is not JSON: {error}"),
            BadMessage::NotAnObject => f.write_str("the body is not a JSON object"),
            BadMessage::MissingResource => {
                f.write_str("no \"resource\" in the body or the message attributes")
            }
            BadMessage::MissingAction => {
                f.write_str("no \"action\" in the body or the message attributes")
            }
            BadMessage::UnknownAction { action } => {
                write!(f, "unknown action {action:?}: use insert, update or delete")
            }
            BadMessage::UnknownResource { resource } => {
                write!(f, "no resource named {resource:?} in the database")
            }
            BadMessage::ResourceNotAllowed { resource } => {
                write!(f, "this consumer may not write to resource {resource:?}")
            }
            BadMessage::DataNotAnObject => f.write_str("\"data\" is not a JSON object"),
            BadMessage::MissingId { action } => {
                write!(f, "{action} needs the record's id as a string in data.id")
            }
            BadMessage::InvalidData { error } => {
                write!(f, "the resource refused the data: {error}")
            }
        }
    }
}

impl std::error::Error for BadMessage {}

/// A parsed message: target, action, the record id (required for update and delete) and the
/// data without routing fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Command {
    pub(crate) resource: String,
    pub(crate) action: Action,
    pub(crate) id: Option<String>,
    pub(crate) data: Map<String, Value>,
}

/// Reads a body (and attributes) into a command.
pub(crate) fn parse(
    body: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<Command, BadMessage> {
    let value: Value = serde_json::from_str(body).map_err(|e| BadMessage::NotJson {
        error: e.to_string(),
    })?;
    let Value::Object(mut object) = unwrap_sns(value) else {
        return Err(BadMessage::NotAnObject);
    };
    let field = |object: &Map<String, Value>, name: &str| -> Option<String> {
        match object.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            _ => attributes
                .get(name)
                .filter(|s| !s.trim().is_empty())
                .cloned(),
        }
    };
    let resource = field(&object, "resource").ok_or(BadMessage::MissingResource)?;
    let action_name = field(&object, "action").ok_or(BadMessage::MissingAction)?;
    let action = parse_action(&action_name).ok_or(BadMessage::UnknownAction {
        action: action_name,
    })?;
    let mut data = match object.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(BadMessage::DataNotAnObject),
    };
    let id = match (action, data.get("id")) {
        (_, Some(Value::String(id))) => Some(id.clone()),
        (Action::Insert, Some(Value::Null) | None) => None,
        // An insert with a non-string id is left to the resource to refuse (InvalidData).
        (Action::Insert, Some(_)) => None,
        (Action::Update | Action::Delete, _) => match object.get("id") {
            Some(Value::String(id)) => Some(id.clone()),
            _ => return Err(BadMessage::MissingId { action }),
        },
    };
    if id.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(BadMessage::MissingId { action });
    }
    if action == Action::Update {
        data.remove("id");
    }
    Ok(Command {
        resource,
        action,
        id,
        data,
    })
}

/// The message inside an SNS notification envelope, or the value itself.
fn unwrap_sns(value: Value) -> Value {
    let is_envelope = value.get("Type").and_then(Value::as_str) == Some("Notification")
        && value.get("resource").is_none();
    if is_envelope
        && let Some(Value::String(inner)) = value.get("Message")
        && let Ok(parsed) = serde_json::from_str::<Value>(inner)
    {
        return parsed;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_attrs() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn reads_the_three_actions() {
        let c = parse(
            r#"{"resource":"users","action":"insert","data":{"id":"u1","name":"A"}}"#,
            &no_attrs(),
        );
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.resource.as_str(), c.action), ("users", Action::Insert));
        assert_eq!(c.id.as_deref(), Some("u1"));
        assert_eq!(c.data.get("name"), Some(&json!("A")));
        // Insert keeps the id in the data (the resource takes it from there).
        assert_eq!(c.data.get("id"), Some(&json!("u1")));

        let c = parse(
            r#"{"resource":"users","action":"UPDATED","data":{"id":"u1","name":"B"}}"#,
            &no_attrs(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.action, c.id.as_deref()), (Action::Update, Some("u1")));
        assert_eq!(c.data.get("id"), None, "update data loses its id");

        let c = parse(
            r#"{"resource":"users","action":"delete","id":"u2"}"#,
            &no_attrs(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.action, c.id.as_deref()), (Action::Delete, Some("u2")));
    }

    #[test]
    fn attributes_fill_in_routing_and_sns_envelopes_are_unwrapped() {
        let attrs: BTreeMap<String, String> = [
            ("resource".to_owned(), "users".to_owned()),
            ("action".to_owned(), "insert".to_owned()),
        ]
        .into();
        let c = parse(r#"{"data":{"name":"A"}}"#, &attrs).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.resource.as_str(), c.action), ("users", Action::Insert));
        // The body wins over the attributes.
        let c = parse(
            r#"{"resource":"orders","action":"delete","data":{"id":"o"}}"#,
            &attrs,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.resource.as_str(), c.action), ("orders", Action::Delete));

        let inner = QueueMessage::delete("users", "u9").to_body();
        let envelope = json!({"Type": "Notification", "MessageId": "m", "Message": inner});
        let c = parse(&envelope.to_string(), &no_attrs()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.action, c.id.as_deref()), (Action::Delete, Some("u9")));
    }

    #[test]
    fn refuses_bad_messages_with_the_reason() {
        let cases = [
            (
                "not json",
                BadMessage::NotJson {
                    error: String::new(),
                },
            ),
            ("[1,2]", BadMessage::NotAnObject),
            (r#"{"action":"insert"}"#, BadMessage::MissingResource),
            (r#"{"resource":"u"}"#, BadMessage::MissingAction),
            (
                r#"{"resource":"u","action":"explode"}"#,
                BadMessage::UnknownAction {
                    action: "explode".to_owned(),
                },
            ),
            (
                r#"{"resource":"u","action":"insert","data":[1]}"#,
                BadMessage::DataNotAnObject,
            ),
            (
                r#"{"resource":"u","action":"update","data":{"name":"x"}}"#,
                BadMessage::MissingId {
                    action: Action::Update,
                },
            ),
            (
                r#"{"resource":"u","action":"delete","data":{"id":7}}"#,
                BadMessage::MissingId {
                    action: Action::Delete,
                },
            ),
            (
                r#"{"resource":"u","action":"delete","data":{"id":" "}}"#,
                BadMessage::MissingId {
                    action: Action::Delete,
                },
            ),
        ];
        for (body, want) in cases {
            let got = parse(body, &no_attrs()).err();
            match (&got, &want) {
                (Some(BadMessage::NotJson { error }), BadMessage::NotJson { .. }) => {
                    assert!(!error.is_empty());
                }
                _ => assert_eq!(got.as_ref(), Some(&want), "{body}"),
            }
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn messages_round_trip_through_their_body() {
        let m = QueueMessage::update("users", "u1", json!({"name": "N"}));
        let c = parse(&m.to_body(), &no_attrs()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.action, c.id.as_deref()), (Action::Update, Some("u1")));
        assert_eq!(c.data.get("name"), Some(&json!("N")));
        assert_eq!(parse_action(" Deleted "), Some(Action::Delete));
        assert_eq!(parse_action("upsert"), None);
        for a in Action::ALL {
            assert_eq!(parse_action(a.as_str()), Some(a));
        }
    }
}
