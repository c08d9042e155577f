//! One attribute rule: the compact `type|modifier|…` syntax of s3db.js.
//!
//! A rule string starts with the type and continues with `|`-separated modifiers:
//!
//! | type | values |
//! |------|--------|
//! | `string` | any string |
//! | `number` | any JSON number |
//! | `integer` | a JSON number without fractional part |
//! | `boolean` | `true` / `false` |
//! | `date` | an RFC 3339 timestamp or a `YYYY-MM-DD` string |
//! | `email` | a string like `name@example.com` |
//! | `enum:a,b,c` | one of the listed strings |
//! | `array`, `array\|items:<scalar>` | an array (of any items, or of one scalar type) |
//! | `object` | any JSON object (no nested schema) |
//! | `json` | any JSON value |
//! | `secret` | a string, encrypted at rest |
//!
//! Modifiers: `required`, `optional` (the default), `default:<value>`, `min:<n>`, `max:<n>`,
//! `trim`, `lowercase`, `items:<scalar>` (arrays only) and `pattern:<regex>`, which must come last
//! because everything after `pattern:` is the regex (so it may contain `|`).

use std::fmt;

use regex_lite::Regex;
use serde_json::Value;

use super::Schema;
use crate::error::{Error, Result};

/// The type names a rule can start with, for error messages.
const KNOWN_TYPES: &str = "string, number, integer, boolean, date, email, enum:a,b,c, array, \
                           object, json, secret";

/// The modifiers a rule can have, for error messages.
const KNOWN_MODIFIERS: &str = "required, optional, default:<value>, min:<n>, max:<n>, trim, \
                               lowercase, items:<type> (arrays only), pattern:<regex> (last)";

/// The type of the items of a typed array (`array|items:<type>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarType {
    /// Any string.
    String,
    /// Any JSON number.
    Number,
    /// A JSON number without fractional part.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// An RFC 3339 timestamp or a `YYYY-MM-DD` string.
    Date,
    /// An email address.
    Email,
}

impl ScalarType {
    /// The name used in rules (`string`, `integer`, …).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::String => "string",
            ScalarType::Number => "number",
            ScalarType::Integer => "integer",
            ScalarType::Boolean => "boolean",
            ScalarType::Date => "date",
            ScalarType::Email => "email",
        }
    }

    /// The scalar type with this rule name, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<ScalarType> {
        Some(match name {
            "string" => ScalarType::String,
            "number" => ScalarType::Number,
            "integer" => ScalarType::Integer,
            "boolean" => ScalarType::Boolean,
            "date" => ScalarType::Date,
            "email" => ScalarType::Email,
            _ => return None,
        })
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeType {
    /// Any string.
    String,
    /// Any JSON number.
    Number,
    /// A JSON number without fractional part.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// An RFC 3339 timestamp or a `YYYY-MM-DD` string.
    Date,
    /// An email address.
    Email,
    /// One of these strings (never empty, no duplicates).
    Enum(Vec<String>),
    /// An array; `Some` restricts the items to one scalar type.
    Array(Option<ScalarType>),
    /// A JSON object: `None` for a free-form `object`, `Some` for a nested object with its own
    /// attributes.
    Object(Option<Schema>),
    /// Any JSON value.
    Json,
    /// A string that is encrypted at rest (see [`crate::secret`]).
    Secret,
}

impl AttributeType {
    /// The name of the type as it starts a rule (`enum` for enums, `object` for nested objects).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::Number => "number",
            AttributeType::Integer => "integer",
            AttributeType::Boolean => "boolean",
            AttributeType::Date => "date",
            AttributeType::Email => "email",
            AttributeType::Enum(_) => "enum",
            AttributeType::Array(_) => "array",
            AttributeType::Object(_) => "object",
            AttributeType::Json => "json",
            AttributeType::Secret => "secret",
        }
    }

    /// Whether values of this type are strings (so `trim`, `lowercase` and `pattern` may apply).
    fn is_text(&self) -> bool {
        matches!(
            self,
            AttributeType::String | AttributeType::Email | AttributeType::Secret
        )
    }

    /// Whether `min`/`max` count characters or items (and so must be whole, non-negative).
    fn measures_length(&self) -> bool {
        self.is_text() || matches!(self, AttributeType::Array(_))
    }

    /// Whether `min`/`max` apply.
    fn has_bounds(&self) -> bool {
        self.measures_length() || matches!(self, AttributeType::Number | AttributeType::Integer)
    }
}

/// One attribute of a resource: its name and the parsed rule.
///
/// Two attributes are equal when their names and rule texts are equal (and, for nested objects,
/// their nested schemas); everything else is derived from the rule text.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// The attribute name (the last segment of its path).
    pub name: String,
    /// Its type.
    pub kind: AttributeType,
    /// Whether a document must hold a non-null value (`required`).
    pub required: bool,
    /// The value given to a missing attribute on insert/replace (`default:<value>`), already
    /// parsed according to the type.
    pub default: Option<Value>,
    /// `min:<n>`: least length in characters (strings), value (numbers) or items (arrays).
    pub min: Option<f64>,
    /// `max:<n>`: greatest length in characters (strings), value (numbers) or items (arrays).
    pub max: Option<f64>,
    /// `pattern:<regex>`: a regex the string must match (unanchored: write `^…$` to match the
    /// whole value). Its source text is `pattern.as_str()`.
    pub pattern: Option<Regex>,
    /// `trim`: strings are trimmed before validation and stored trimmed.
    pub trim: bool,
    /// `lowercase`: strings are lower-cased before validation and stored lower-cased.
    pub lowercase: bool,
    /// The rule text as given (for nested objects: their `$$type` rule, `object` when absent).
    pub rule: String,
}

impl PartialEq for Attribute {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.rule == other.rule && self.kind == other.kind
    }
}

impl Eq for Attribute {}

/// Builds the error of one rule.
fn bad(path: &str, rule: &str, reason: impl Into<String>) -> Error {
    Error::BadSchema {
        attribute: path.to_owned(),
        rule: rule.to_owned(),
        reason: reason.into(),
    }
}

/// Splits `rule` into the part before the first modifier starting with `pattern:` and the regex
/// source after it (taken verbatim up to the end of the rule).
fn split_pattern(rule: &str) -> (&str, Option<&str>) {
    let mut offset = 0;
    for token in rule.split('|') {
        let trimmed = token.trim_start();
        if trimmed.starts_with("pattern:") {
            let start = offset + (token.len() - trimmed.len()) + "pattern:".len();
            let head = rule[..offset].strip_suffix('|').unwrap_or(&rule[..offset]);
            return (head, Some(&rule[start..]));
        }
        offset += token.len() + 1;
    }
    (rule, None)
}

/// Whether one `|`-separated piece of a regex looks like a modifier that was meant to follow the
/// pattern (so `pattern:` was not last).
fn looks_like_modifier(piece: &str) -> bool {
    let piece = piece.trim();
    if matches!(piece, "required" | "optional" | "trim" | "lowercase") {
        return true;
    }
    if piece.starts_with("default:") || piece.starts_with("items:") {
        return true;
    }
    ["min:", "max:"].iter().any(|prefix| {
        piece
            .strip_prefix(prefix)
            .is_some_and(|n| n.trim().parse::<f64>().is_ok())
    })
}

/// Parses the type token of a rule.
fn parse_type(path: &str, rule: &str, token: &str) -> Result<AttributeType> {
    Ok(match token {
        "string" => AttributeType::String,
        "number" => AttributeType::Number,
        "integer" => AttributeType::Integer,
        "boolean" => AttributeType::Boolean,
        "date" => AttributeType::Date,
        "email" => AttributeType::Email,
        "array" => AttributeType::Array(None),
        "object" => AttributeType::Object(None),
        "json" => AttributeType::Json,
        "secret" => AttributeType::Secret,
        "" => {
            return Err(bad(
                path,
                rule,
                format!("the rule is empty; start it with a type: {KNOWN_TYPES}"),
            ));
        }
        "enum" => {
            return Err(bad(
                path,
                rule,
                "an enum needs its values after a colon, e.g. enum:draft,published",
            ));
        }
        _ => {
            let Some(values) = token.strip_prefix("enum:") else {
                let hint = if is_modifier_name(token) {
                    " (a rule starts with its type, modifiers follow: e.g. string|required)"
                } else {
                    ""
                };
                return Err(bad(
                    path,
                    rule,
                    format!("unknown type {token:?}{hint}; known types: {KNOWN_TYPES}"),
                ));
            };
            let mut list: Vec<String> = Vec::new();
            for value in values.split(',') {
                let value = value.trim();
                if value.is_empty() {
                    return Err(bad(
                        path,
                        rule,
                        "enum values must not be empty; list them separated by commas, \
                         e.g. enum:draft,published",
                    ));
                }
                if list.iter().any(|v| v == value) {
                    return Err(bad(
                        path,
                        rule,
                        format!("enum value {value:?} is listed twice; list each value once"),
                    ));
                }
                list.push(value.to_owned());
            }
            AttributeType::Enum(list)
        }
    })
}

/// Whether `token` is the name (or `name:`-prefix) of a modifier.
fn is_modifier_name(token: &str) -> bool {
    let name = token.split(':').next().unwrap_or(token);
    matches!(
        name,
        "required"
            | "optional"
            | "default"
            | "min"
            | "max"
            | "trim"
            | "lowercase"
            | "items"
            | "pattern"
    )
}

/// Parses a `min:`/`max:` bound.
fn parse_bound(
    path: &str,
    rule: &str,
    which: &str,
    text: &str,
    kind: &AttributeType,
) -> Result<f64> {
    let n: f64 = text.trim().parse().map_err(|_| {
        bad(
            path,
            rule,
            format!("{which}:{text} is not a number; write e.g. {which}:3"),
        )
    })?;
    if !n.is_finite() {
        return Err(bad(
            path,
            rule,
            format!("{which}:{text} must be a finite number"),
        ));
    }
    if kind.measures_length() && (n < 0.0 || n.fract() != 0.0) {
        let unit = if matches!(kind, AttributeType::Array(_)) {
            "items"
        } else {
            "characters"
        };
        return Err(bad(
            path,
            rule,
            format!(
                "{which}:{text} counts {unit} of a {}, so it must be a whole number >= 0",
                kind.name()
            ),
        ));
    }
    Ok(n)
}

/// Parses the text of `default:` according to the attribute type (the value is checked against
/// the other modifiers later).
fn parse_default(path: &str, rule: &str, text: &str, kind: &AttributeType) -> Result<Value> {
    let json = |expected: &str, example: &str| -> Result<Value> {
        serde_json::from_str::<Value>(text).map_err(|_| {
            bad(
                path,
                rule,
                format!("default:{text} is not {expected}; write e.g. default:{example}"),
            )
        })
    };
    Ok(match kind {
        AttributeType::String | AttributeType::Email | AttributeType::Date => {
            Value::String(text.to_owned())
        }
        AttributeType::Enum(values) => {
            if !values.iter().any(|v| v == text) {
                return Err(bad(
                    path,
                    rule,
                    format!(
                        "default:{text} is not one of the enum values: {}",
                        values.join(", ")
                    ),
                ));
            }
            Value::String(text.to_owned())
        }
        AttributeType::Number | AttributeType::Integer => {
            let value = json("a number", "0")?;
            if !value.is_number() {
                return Err(bad(
                    path,
                    rule,
                    format!("default:{text} is not a number; write e.g. default:0"),
                ));
            }
            value
        }
        AttributeType::Boolean => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                return Err(bad(
                    path,
                    rule,
                    format!("default:{text} is not a boolean; write default:true or default:false"),
                ));
            }
        },
        AttributeType::Array(_) => {
            let value = json("a JSON array", "[]")?;
            if !value.is_array() {
                return Err(bad(
                    path,
                    rule,
                    format!("default:{text} is not a JSON array; write e.g. default:[]"),
                ));
            }
            value
        }
        AttributeType::Object(_) => {
            let value = json("a JSON object", "{}")?;
            if !value.is_object() {
                return Err(bad(
                    path,
                    rule,
                    format!("default:{text} is not a JSON object; write e.g. default:{{}}"),
                ));
            }
            value
        }
        AttributeType::Json => json("a JSON value", "\"text\"")?,
        AttributeType::Secret => {
            return Err(bad(
                path,
                rule,
                "a secret cannot have a default: it would be stored in plain text in the \
                 schema; remove default:",
            ));
        }
    })
}

impl Attribute {
    /// Parses a rule string for a top-level attribute `name` (the name itself is not checked:
    /// [`Schema::parse`] does that).
    ///
    /// # Errors
    ///
    /// [`Error::BadSchema`] when the rule is malformed: unknown type or modifier, a modifier
    /// given twice or on a type without it, `min` > `max`, a default of the wrong type or that
    /// breaks the rule, a bad regex or `pattern:` not last, an empty enum.
    pub fn parse(name: &str, rule: &str) -> Result<Attribute> {
        Self::parse_at(name, name, rule)
    }

    /// Parses a rule string; `path` is the dotted path used in errors.
    pub(crate) fn parse_at(path: &str, name: &str, rule: &str) -> Result<Attribute> {
        let (head, pattern_src) = split_pattern(rule);
        if pattern_src.is_some() && head.trim().is_empty() {
            return Err(bad(
                path,
                rule,
                format!("the rule must start with a type, then modifiers: {KNOWN_TYPES}"),
            ));
        }
        let mut tokens = head.split('|');
        let type_token = tokens.next().unwrap_or("").trim();
        let mut kind = parse_type(path, rule, type_token)?;

        let mut presence: Option<&str> = None;
        let mut default_text: Option<&str> = None;
        let mut min_text: Option<&str> = None;
        let mut max_text: Option<&str> = None;
        let mut items_text: Option<&str> = None;
        let mut trim = false;
        let mut lowercase = false;

        for token in tokens {
            let token = token.trim();
            let twice = || {
                bad(
                    path,
                    rule,
                    format!("modifier {token:?} is given twice; give each modifier once"),
                )
            };
            match token {
                "" => {
                    return Err(bad(
                        path,
                        rule,
                        "empty modifier (two `|` in a row or a trailing `|`); remove it",
                    ));
                }
                "required" | "optional" => {
                    if let Some(previous) = presence {
                        return Err(if previous == token {
                            twice()
                        } else {
                            bad(path, rule, "both required and optional are given; keep one")
                        });
                    }
                    presence = Some(token);
                }
                "trim" => {
                    if std::mem::replace(&mut trim, true) {
                        return Err(twice());
                    }
                }
                "lowercase" => {
                    if std::mem::replace(&mut lowercase, true) {
                        return Err(twice());
                    }
                }
                _ => {
                    let slot = match token.split_once(':').map(|(k, v)| (k, v.trim())) {
                        Some(("default", value)) => Some((&mut default_text, value)),
                        Some(("min", value)) => Some((&mut min_text, value)),
                        Some(("max", value)) => Some((&mut max_text, value)),
                        Some(("items", value)) => Some((&mut items_text, value)),
                        _ => None,
                    };
                    let Some((slot, value)) = slot else {
                        let hint = if parse_type(path, rule, token).is_ok() {
                            " (the type must come first, and only once)"
                        } else {
                            ""
                        };
                        return Err(bad(
                            path,
                            rule,
                            format!(
                                "unknown modifier {token:?}{hint}; known modifiers: \
                                 {KNOWN_MODIFIERS}"
                            ),
                        ));
                    };
                    if slot.replace(value).is_some() {
                        return Err(twice());
                    }
                }
            }
        }

        if let Some(items) = items_text {
            let AttributeType::Array(item_type) = &mut kind else {
                return Err(bad(
                    path,
                    rule,
                    format!(
                        "items: applies to arrays only, not to a {}; use array|items:{items}",
                        kind.name()
                    ),
                ));
            };
            let items = items.trim();
            let Some(scalar) = ScalarType::from_name(items) else {
                return Err(bad(
                    path,
                    rule,
                    format!(
                        "unknown item type {items:?}; array items can be: string, number, \
                         integer, boolean, date, email"
                    ),
                ));
            };
            *item_type = Some(scalar);
        }

        if (min_text.is_some() || max_text.is_some()) && !kind.has_bounds() {
            return Err(bad(
                path,
                rule,
                format!(
                    "min/max do not apply to a {}; they apply to string, email, secret \
                     (length), number, integer (value) and array (item count)",
                    kind.name()
                ),
            ));
        }
        let min = min_text
            .map(|text| parse_bound(path, rule, "min", text, &kind))
            .transpose()?;
        let max = max_text
            .map(|text| parse_bound(path, rule, "max", text, &kind))
            .transpose()?;
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(bad(
                path,
                rule,
                format!("min ({lo}) is greater than max ({hi}); no value could pass"),
            ));
        }

        let text_only = |modifier: &str| {
            bad(
                path,
                rule,
                format!(
                    "{modifier} applies to strings (string, email, secret{}), not to a {}",
                    if modifier == "pattern" { "" } else { ", enum" },
                    kind.name()
                ),
            )
        };
        let pattern = match pattern_src {
            None => None,
            Some(src) => {
                if !kind.is_text() {
                    return Err(text_only("pattern"));
                }
                if src.split('|').skip(1).any(looks_like_modifier) {
                    return Err(bad(
                        path,
                        rule,
                        "pattern: must be the last modifier: everything after it is part of the \
                         regex; move pattern: to the end (to match such text literally, group \
                         the alternatives: (?:a|b))",
                    ));
                }
                Some(Regex::new(src).map_err(|e| {
                    bad(
                        path,
                        rule,
                        format!("the pattern {src:?} is not a valid regex: {e}"),
                    )
                })?)
            }
        };

        for (on, modifier) in [(trim, "trim"), (lowercase, "lowercase")] {
            if on && !kind.is_text() && !matches!(kind, AttributeType::Enum(_)) {
                return Err(text_only(modifier));
            }
        }
        if let AttributeType::Enum(values) = &kind
            && lowercase
            && let Some(value) = values.iter().find(|v| v.to_lowercase() != **v)
        {
            return Err(bad(
                path,
                rule,
                format!(
                    "enum value {value:?} has upper-case letters, but lowercase makes every \
                     input lower-case, so it could never match; write it in lower case"
                ),
            ));
        }

        let default = default_text
            .map(|text| parse_default(path, rule, text, &kind))
            .transpose()?;

        let mut attribute = Attribute {
            name: name.to_owned(),
            kind,
            required: presence == Some("required"),
            default: None,
            min,
            max,
            pattern,
            trim,
            lowercase,
            rule: rule.to_owned(),
        };
        if let Some(value) = default {
            let mut checked = value.clone();
            let errors = super::validate::check_default(&attribute, path, &mut checked);
            if !errors.is_empty() {
                let why = errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(bad(
                    path,
                    rule,
                    format!("the default value breaks the rule: it {why}; fix default:"),
                ));
            }
            attribute.default = Some(value);
        }
        Ok(attribute)
    }

    /// Whether this attribute is a nested object with its own attributes.
    #[must_use]
    pub fn nested(&self) -> Option<&Schema> {
        match &self.kind {
            AttributeType::Object(Some(schema)) => Some(schema),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(rule: &str) -> Attribute {
        match Attribute::parse("a", rule) {
            Ok(a) => a,
            Err(e) => panic!("{rule:?} should parse: {e}"),
        }
    }

    /// The reason of a refused rule (panics if the rule is accepted).
    fn refused(rule: &str) -> String {
        match Attribute::parse("a", rule) {
            Ok(a) => panic!("{rule:?} should be refused, parsed as {a:?}"),
            Err(Error::BadSchema {
                attribute,
                rule: text,
                reason,
            }) => {
                assert_eq!(attribute, "a");
                assert_eq!(text, rule);
                reason
            }
            Err(other) => panic!("{rule:?}: wrong error {other:?}"),
        }
    }

    #[test]
    fn types() {
        assert_eq!(parse("string").kind, AttributeType::String);
        assert_eq!(parse("number").kind, AttributeType::Number);
        assert_eq!(parse("integer").kind, AttributeType::Integer);
        assert_eq!(parse("boolean").kind, AttributeType::Boolean);
        assert_eq!(parse("date").kind, AttributeType::Date);
        assert_eq!(parse("email").kind, AttributeType::Email);
        assert_eq!(parse("array").kind, AttributeType::Array(None));
        assert_eq!(
            parse("array|items:integer").kind,
            AttributeType::Array(Some(ScalarType::Integer))
        );
        assert_eq!(parse("object").kind, AttributeType::Object(None));
        assert_eq!(parse("json").kind, AttributeType::Json);
        assert_eq!(parse("secret").kind, AttributeType::Secret);
        assert_eq!(
            parse("enum:a, b ,c").kind,
            AttributeType::Enum(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn modifiers() {
        let a = parse("string|required|min:2|max:10|trim|lowercase");
        assert!(a.required && a.trim && a.lowercase);
        assert_eq!((a.min, a.max), (Some(2.0), Some(10.0)));
        assert_eq!(a.rule, "string|required|min:2|max:10|trim|lowercase");
        assert_eq!(a.name, "a");
        assert!(!parse("string").required);
        assert!(!parse("string|optional").required);
        assert!(parse(" string | required ").required);
        assert_eq!(parse("number|min:-1.5").min, Some(-1.5));
    }

    #[test]
    fn defaults_are_typed() {
        assert_eq!(parse("boolean|default:false").default, Some(json!(false)));
        assert_eq!(parse("number|default:0").default, Some(json!(0)));
        assert_eq!(parse("number|default:2.5").default, Some(json!(2.5)));
        assert_eq!(parse("integer|default:7").default, Some(json!(7)));
        assert_eq!(parse("string|default:hello").default, Some(json!("hello")));
        assert_eq!(parse("string|default:").default, Some(json!("")));
        assert_eq!(parse("enum:a,b|default:b").default, Some(json!("b")));
        assert_eq!(parse("array|default:[1,2]").default, Some(json!([1, 2])));
        assert_eq!(parse("object|default:{}").default, Some(json!({})));
        assert_eq!(parse("json|default:null").default, Some(json!(null)));
        assert_eq!(
            parse("date|default:2024-05-01").default,
            Some(json!("2024-05-01"))
        );
    }

    #[test]
    fn pattern_takes_the_rest_of_the_rule() {
        let a = parse("string|required|pattern:^(a|b)+$");
        assert!(a.required);
        let Some(re) = &a.pattern else {
            panic!("no pattern")
        };
        assert_eq!(re.as_str(), "^(a|b)+$");
        assert!(re.is_match("abba") && !re.is_match("abc"));
        // An alternation at the top level of the regex is fine too.
        let a = parse("string|pattern:^x$|^y$");
        assert_eq!(a.pattern.as_ref().map(Regex::as_str), Some("^x$|^y$"));
        // The regex is kept verbatim, spaces included.
        let a = parse("string|pattern: a b ");
        assert_eq!(a.pattern.as_ref().map(Regex::as_str), Some(" a b "));
    }

    #[test]
    fn bad_rules() {
        assert!(refused("").contains("empty"));
        assert!(refused("text").contains("unknown type \"text\""));
        assert!(refused("String").contains("unknown type"));
        assert!(refused("required|string").contains("starts with its type"));
        assert!(refused("string|string").contains("type must come first"));
        assert!(refused("string|requird").contains("unknown modifier \"requird\""));
        assert!(refused("string|required|required").contains("twice"));
        assert!(refused("string|required|optional").contains("keep one"));
        assert!(refused("string|min:1|min:2").contains("twice"));
        assert!(refused("string||required").contains("empty modifier"));
        assert!(refused("string|").contains("empty modifier"));
        assert!(refused("string|min:5|max:2").contains("greater than max"));
        assert!(refused("string|min:x").contains("not a number"));
        assert!(refused("string|min:1.5").contains("whole number"));
        assert!(refused("array|max:-1").contains("whole number"));
        assert!(refused("number|max:inf").contains("finite"));
        assert!(refused("boolean|min:1").contains("do not apply to a boolean"));
        assert!(refused("date|max:3").contains("do not apply"));
        assert!(refused("enum:a,b|min:1").contains("do not apply"));
        assert!(refused("number|pattern:^1$").contains("pattern applies to strings"));
        assert!(refused("number|trim").contains("trim applies to strings"));
        assert!(refused("array|lowercase").contains("lowercase applies"));
        assert!(refused("string|pattern:(").contains("not a valid regex"));
        assert!(refused("string|pattern:^a$|required").contains("must be the last"));
        assert!(refused("string|pattern:^a$|min:3").contains("must be the last"));
        assert!(refused("pattern:^a$").contains("must start with a type"));
        assert!(refused("enum").contains("needs its values"));
        assert!(refused("enum:").contains("must not be empty"));
        assert!(refused("enum:a,,b").contains("must not be empty"));
        assert!(refused("enum:a,b,a").contains("listed twice"));
        assert!(refused("enum:A,b|lowercase").contains("lower case"));
        assert!(refused("string|items:string").contains("arrays only"));
        assert!(refused("array|items:object").contains("unknown item type"));
        assert!(refused("array|items:enum:a").contains("unknown item type"));
    }

    #[test]
    fn bad_defaults() {
        assert!(refused("boolean|default:no").contains("not a boolean"));
        assert!(refused("number|default:abc").contains("not a number"));
        assert!(refused("number|default:\"1\"").contains("not a number"));
        assert!(refused("integer|default:1.5").contains("integer"));
        assert!(refused("enum:a,b|default:c").contains("not one of"));
        assert!(refused("array|default:{}").contains("not a JSON array"));
        assert!(refused("object|default:[]").contains("not a JSON object"));
        assert!(refused("json|default:not json").contains("not a JSON value"));
        assert!(refused("secret|default:x").contains("plain text"));
        assert!(refused("string|min:3|default:ab").contains("at least 3 characters"));
        assert!(refused("number|max:3|default:4").contains("at most 3"));
        assert!(refused("email|default:nope").contains("email"));
        assert!(refused("date|default:tomorrow").contains("date"));
        assert!(refused("string|default:abc|pattern:^x").contains("must match"));
        assert!(refused("array|items:string|default:[1]").contains("must be a string"));
    }

    #[test]
    fn default_is_checked_after_transforms() {
        // " AB " is trimmed and lower-cased to "ab" before the length and pattern checks.
        let a = parse("string|trim|lowercase|max:2|default: AB |pattern:^[a-z]+$");
        assert_eq!(a.default, Some(json!("AB")));
    }

    #[test]
    fn equality_is_by_name_and_rule() {
        assert_eq!(parse("string|min:1"), parse("string|min:1"));
        assert_ne!(parse("string|min:1"), parse("string|min:1|optional"));
        let b = match Attribute::parse("b", "string|min:1") {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        assert_ne!(parse("string|min:1"), b);
    }
}
