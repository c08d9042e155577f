//! Resource schemas: attribute definitions in the compact syntax of s3db.js, and document
//! validation against them.
//!
//! A schema is given as a JSON object mapping each attribute name to a rule string (see
//! [`rule`] for the syntax) or to a nested JSON object, whose own attributes follow the same
//! syntax:
//!
//! ```
//! # use s3db_core::schema::Schema;
//! let definition = serde_json::json!({
//!     "name": "string|required|min:2|trim",
//!     "email": "email|required|lowercase",
//!     "region": "enum:eu,us|default:eu",
//!     "tags": "array|items:string|max:10",
//!     "address": { "street": "string", "zip": "string|pattern:^[0-9]{5}$" },
//!     "token": "secret",
//! });
//! let schema = Schema::parse(definition.as_object().unwrap()).unwrap();
//! assert_eq!(schema.secret_paths(), ["token"]);
//! ```
//!
//! A nested object is optional; to make it required, give it the special key
//! `"$$type": "object|required"` (as in s3db.js). `$$type` accepts only `object`, `required` and
//! `optional`.
//!
//! Attribute names must not be empty, must not start with `_` or `$` and must not contain `.`,
//! `[` or `]` (so that field paths like `address.zip` and `tags[2]` are unambiguous). At the top
//! level, `id`, `created_at` and `updated_at` are reserved for the resource layer.

pub mod rule;
pub mod validate;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
pub use rule::{Attribute, AttributeType, ScalarType};
pub use validate::Mode;

/// Key of a nested object definition that holds the nested object's own rule.
pub const NESTED_TYPE_KEY: &str = "$$type";

/// Top-level attribute names the resource layer reserves.
pub const RESERVED_NAMES: [&str; 3] = ["id", "created_at", "updated_at"];

/// The parsed attributes of a resource (or of a nested object), in the order of the definition
/// map.
///
/// Two schemas are equal when they have the same attributes with the same rule texts, in the same
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    attributes: Vec<Attribute>,
}

/// Joins a path prefix and a name with a dot.
pub(crate) fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Checks an attribute name; `top_level` adds the reserved names.
fn check_name(path: &str, name: &str, rule: &str, top_level: bool) -> Result<()> {
    let reason = if name.is_empty() {
        Some("attribute names must not be empty".to_owned())
    } else if name.starts_with('_') {
        Some("names starting with '_' are reserved for system fields; rename it".to_owned())
    } else if name.starts_with('$') {
        Some(format!(
            "names starting with '$' are reserved ({NESTED_TYPE_KEY} is the only one allowed, \
             in nested objects); rename it"
        ))
    } else if name.contains(['.', '[', ']']) {
        Some(
            "names must not contain '.', '[' or ']' (they separate field paths); rename it"
                .to_owned(),
        )
    } else if top_level && RESERVED_NAMES.contains(&name) {
        Some(format!(
            "{name:?} is reserved: the resource layer manages id, created_at and updated_at; \
             rename it"
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::BadSchema {
            attribute: path.to_owned(),
            rule: rule.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Parses the `$$type` rule of a nested object: `object` with `required`/`optional`.
fn parse_nested_rule(path: &str, value: Option<&Value>) -> Result<(String, bool)> {
    let Some(value) = value else {
        return Ok(("object".to_owned(), false));
    };
    let bad = |rule: &str, reason: &str| Error::BadSchema {
        attribute: path.to_owned(),
        rule: rule.to_owned(),
        reason: reason.to_owned(),
    };
    let Value::String(rule) = value else {
        return Err(bad(
            &value.to_string(),
            "$$type must be a rule string like \"object|required\"",
        ));
    };
    let mut tokens = rule.split('|').map(str::trim);
    if tokens.next() != Some("object") {
        return Err(bad(
            rule,
            "the $$type of a nested object must start with object, e.g. \"object|required\"",
        ));
    }
    let mut presence: Option<&str> = None;
    for token in tokens {
        match token {
            "required" | "optional" if presence.is_none() => presence = Some(token),
            "required" | "optional" => {
                return Err(bad(rule, "give required or optional once"));
            }
            _ => {
                return Err(bad(
                    rule,
                    "a nested object's $$type accepts only the modifiers required and optional",
                ));
            }
        }
    }
    Ok((rule.clone(), presence == Some("required")))
}

impl Schema {
    /// Parses a resource's attribute definitions: attribute name → rule string or nested object.
    ///
    /// # Errors
    ///
    /// [`Error::BadSchema`] for the first attribute that is wrong, with its dotted path, its
    /// rule text and what to fix.
    pub fn parse(attributes: &Map<String, Value>) -> Result<Schema> {
        Self::parse_at(attributes, "")
    }

    fn parse_at(attributes: &Map<String, Value>, prefix: &str) -> Result<Schema> {
        let top_level = prefix.is_empty();
        let mut parsed = Vec::with_capacity(attributes.len());
        for (name, value) in attributes {
            if !top_level && name == NESTED_TYPE_KEY {
                continue;
            }
            let path = join_path(prefix, name);
            match value {
                Value::String(rule) => {
                    check_name(&path, name, rule, top_level)?;
                    parsed.push(Attribute::parse_at(&path, name, rule)?);
                }
                Value::Object(nested) => {
                    check_name(&path, name, "(nested object)", top_level)?;
                    let (rule, required) = parse_nested_rule(&path, nested.get(NESTED_TYPE_KEY))?;
                    let schema = Self::parse_at(nested, &path)?;
                    parsed.push(Attribute {
                        name: name.clone(),
                        kind: AttributeType::Object(Some(schema)),
                        required,
                        default: None,
                        min: None,
                        max: None,
                        pattern: None,
                        trim: false,
                        lowercase: false,
                        rule,
                    });
                }
                other => {
                    return Err(Error::BadSchema {
                        attribute: path,
                        rule: other.to_string(),
                        reason: "an attribute is defined by a rule string (e.g. \
                                 \"string|required\") or a nested object of attributes"
                            .to_owned(),
                    });
                }
            }
        }
        Ok(Schema { attributes: parsed })
    }

    /// The attributes, in definition order.
    #[must_use]
    pub fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }

    /// The attribute with this name (at this level; nested attributes are reached through
    /// [`Attribute::nested`]).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The names of the attributes at this level, in definition order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.attributes.iter().map(|a| a.name.as_str())
    }

    /// The dotted paths (`token`, `account.password`) of every `secret` attribute, nested ones
    /// included, in definition order.
    #[must_use]
    pub fn secret_paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        self.collect_secret_paths("", &mut paths);
        paths
    }

    fn collect_secret_paths(&self, prefix: &str, paths: &mut Vec<String>) {
        for attribute in &self.attributes {
            match &attribute.kind {
                AttributeType::Secret => paths.push(join_path(prefix, &attribute.name)),
                AttributeType::Object(Some(nested)) => {
                    nested.collect_secret_paths(&join_path(prefix, &attribute.name), paths);
                }
                _ => {}
            }
        }
    }

    /// The definitions in the compact syntax, as given to [`Schema::parse`] (rule texts
    /// verbatim), so that they can be stored and parsed again into an equal schema.
    #[must_use]
    pub fn to_json(&self) -> Map<String, Value> {
        self.attributes
            .iter()
            .map(|attribute| {
                let value = match &attribute.kind {
                    AttributeType::Object(Some(nested)) => {
                        let mut map = nested.to_json();
                        if attribute.rule != "object" {
                            map.insert(
                                NESTED_TYPE_KEY.to_owned(),
                                Value::String(attribute.rule.clone()),
                            );
                        }
                        Value::Object(map)
                    }
                    _ => Value::String(attribute.rule.clone()),
                };
                (attribute.name.clone(), value)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn schema(value: Value) -> Schema {
        match Schema::parse(&map(value)) {
            Ok(s) => s,
            Err(e) => panic!("should parse: {e}"),
        }
    }

    /// (attribute, reason) of a refused definition.
    fn refused(value: Value) -> (String, String) {
        match Schema::parse(&map(value)) {
            Ok(s) => panic!("should be refused: {s:?}"),
            Err(Error::BadSchema {
                attribute, reason, ..
            }) => (attribute, reason),
            Err(other) => panic!("wrong error {other:?}"),
        }
    }

    fn sample() -> Value {
        json!({
            "name": "string|required|min:2|trim",
            "email": "email|required|lowercase",
            "region": "enum:eu,us|default:eu",
            "tags": "array|items:string|max:10",
            "address": {
                "street": "string",
                "zip": "string|pattern:^[0-9]{5}$|x",
                "geo": { "lat": "number|min:-90|max:90", "$$type": "object|required" },
                "pin": "secret",
            },
            "token": "secret|required",
            "extra": "json",
        })
    }

    #[test]
    fn parses_nested_definitions() {
        let s = schema(sample());
        let names: Vec<&str> = s.names().collect();
        assert_eq!(names.len(), 7);
        for name in [
            "name", "email", "region", "tags", "address", "token", "extra",
        ] {
            assert!(s.get(name).is_some(), "{name}");
        }
        assert!(s.get("zip").is_none());
        let Some(address) = s.get("address") else {
            panic!("no address")
        };
        assert!(!address.required);
        assert_eq!(address.rule, "object");
        let Some(nested) = address.nested() else {
            panic!("address is not nested")
        };
        assert_eq!(nested.attributes().len(), 4);
        let Some(zip) = nested.get("zip") else {
            panic!("no zip")
        };
        assert_eq!(
            zip.pattern.as_ref().map(regex_lite::Regex::as_str),
            Some("^[0-9]{5}$|x")
        );
        let Some(geo) = nested.get("geo") else {
            panic!("no geo")
        };
        assert!(geo.required);
        assert_eq!(geo.rule, "object|required");
        assert!(geo.nested().is_some_and(|g| g.get("lat").is_some()));
        assert!(nested.get(NESTED_TYPE_KEY).is_none());
    }

    #[test]
    fn secret_paths_include_nested() {
        let s = schema(sample());
        let mut paths = s.secret_paths();
        paths.sort();
        assert_eq!(paths, ["address.pin", "token"]);
        assert!(schema(json!({"a": "string"})).secret_paths().is_empty());
    }

    #[test]
    fn json_round_trip() {
        let s = schema(sample());
        let stored = serde_json::to_string(&s.to_json()).unwrap_or_default();
        let back: Value = serde_json::from_str(&stored).unwrap_or(Value::Null);
        assert_eq!(back, sample());
        let again = schema(back);
        assert_eq!(again, s);
        assert_eq!(again.to_json(), s.to_json());
        // A different rule makes a different schema.
        let mut changed = sample();
        changed["address"]["street"] = json!("string|required");
        assert_ne!(schema(changed), s);
    }

    #[test]
    fn nested_optional_type_round_trips() {
        let def = json!({"a": {"$$type": "object|optional", "b": "string"}});
        let s = schema(def.clone());
        assert_eq!(Value::Object(s.to_json()), def);
        assert_eq!(schema(Value::Object(s.to_json())), s);
    }

    #[test]
    fn bad_names() {
        for (def, path, needle) in [
            (json!({"": "string"}), "", "empty"),
            (json!({"_x": "string"}), "_x", "reserved for system"),
            (json!({"id": "string"}), "id", "reserved"),
            (json!({"created_at": "date"}), "created_at", "reserved"),
            (json!({"updated_at": "date"}), "updated_at", "reserved"),
            (json!({"$$type": "object"}), "$$type", "'$'"),
            (json!({"a.b": "string"}), "a.b", "'.'"),
            (json!({"a[0]": "string"}), "a[0]", "'['"),
            (
                json!({"a": {"_b": "string"}}),
                "a._b",
                "reserved for system",
            ),
            (json!({"a": {"": "string"}}), "a.", "empty"),
            (json!({"_a": {"b": "string"}}), "_a", "reserved for system"),
        ] {
            let (attribute, reason) = refused(def);
            assert_eq!(attribute, path);
            assert!(reason.contains(needle), "{reason}");
        }
        // `id` and the timestamps are only reserved at the top level; names are case-sensitive.
        let s = schema(json!({"a": {"id": "string"}, "Id": "string", "ID": "number"}));
        assert_eq!(s.attributes().len(), 3);
    }

    #[test]
    fn bad_definitions_report_the_dotted_path() {
        let (attribute, reason) = refused(json!({"a": {"b": {"c": "strng"}}}));
        assert_eq!(attribute, "a.b.c");
        assert!(reason.contains("unknown type"));
        let (attribute, reason) = refused(json!({"a": 3}));
        assert_eq!(attribute, "a");
        assert!(reason.contains("rule string"));
        let (_, reason) = refused(json!({"a": ["string"]}));
        assert!(reason.contains("rule string"));
        let (attribute, reason) = refused(json!({"a": {"$$type": "string"}}));
        assert_eq!(attribute, "a");
        assert!(reason.contains("start with object"));
        let (_, reason) = refused(json!({"a": {"$$type": "object|min:1"}}));
        assert!(reason.contains("only the modifiers"));
        let (_, reason) = refused(json!({"a": {"$$type": "object|required|required"}}));
        assert!(reason.contains("once"));
        let (_, reason) = refused(json!({"a": {"$$type": true}}));
        assert!(reason.contains("rule string"));
    }

    #[test]
    fn empty_schema() {
        let s = schema(json!({}));
        assert!(s.attributes().is_empty());
        assert!(s.to_json().is_empty());
    }
}
