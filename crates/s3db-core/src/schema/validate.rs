//! Validation of documents against a [`Schema`].
//!
//! Every failing field is reported (never only the first), as a [`FieldError`] with the field's
//! path (`name`, `address.zip`, `tags[2]`), the rule it broke and a message that says what to fix.
//! The rules reported are `required`, `type`, `enum`, `min`, `max`, `pattern`, `unknown` and
//! `items` (a bad array item).

use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Number, Value};

use super::{Attribute, AttributeType, ScalarType, Schema, join_path};
use crate::error::{Error, FieldError, Result};

/// What kind of write a document is validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Insert or replace: the document is complete. Required attributes must be present and not
    /// null; missing attributes with a default get it (also inside nested objects that are
    /// present).
    Full,
    /// Patch or update: only the fields present are checked, recursively (a nested object is a
    /// partial nested object too). Missing fields are fine and get no default; setting a required
    /// attribute to null is still refused.
    Partial,
}

impl Schema {
    /// Validates `doc` (a document without its `id` and system fields: those are `unknown`
    /// attributes here) and normalises it: `trim`/`lowercase` are applied, integers written as
    /// `3.0` become `3`, and in [`Mode::Full`] missing attributes with a default get it.
    ///
    /// `null` is accepted for optional attributes and kept as "no value".
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] with every failing field; `doc` is then left unchanged.
    pub fn validate(&self, doc: &mut Map<String, Value>, mode: Mode) -> Result<()> {
        *doc = self.validated(doc.clone(), mode)?;
        Ok(())
    }

    /// [`Schema::validate`] of a document the caller gives up: it is normalised in place, without
    /// a copy, and returned; on error it is dropped.
    ///
    /// # Errors
    /// [`Error::Validation`] with every failing field.
    pub fn validated(&self, mut doc: Map<String, Value>, mode: Mode) -> Result<Map<String, Value>> {
        let mut errors = Vec::new();
        validate_object(self, &mut doc, mode, "", &mut errors);
        if errors.is_empty() {
            Ok(doc)
        } else {
            Err(Error::Validation(errors))
        }
    }
}

/// Where a value sits in the document (`address.zip`), joined only when an error names it.
#[derive(Clone, Copy)]
struct FieldPath<'a> {
    prefix: &'a str,
    name: &'a str,
}

impl FieldPath<'_> {
    fn full(self) -> String {
        join_path(self.prefix, self.name)
    }
}

/// Checks the default of `attribute` (a value already parsed for its type) against its other
/// modifiers; returns what is wrong with it.
pub(super) fn check_default(
    attribute: &Attribute,
    path: &str,
    value: &mut Value,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let path = FieldPath {
        prefix: "",
        name: path,
    };
    check_value(attribute, path, value, Mode::Full, &mut errors);
    errors
}

fn validate_object(
    schema: &Schema,
    object: &mut Map<String, Value>,
    mode: Mode,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) {
    for attribute in schema.attributes() {
        let path = FieldPath {
            prefix,
            name: &attribute.name,
        };
        match object.get_mut(&attribute.name) {
            None => {
                if mode == Mode::Partial {
                    continue;
                }
                if let Some(default) = &attribute.default {
                    let mut value = default.clone();
                    check_value(attribute, path, &mut value, mode, errors);
                    object.insert(attribute.name.clone(), value);
                } else if attribute.required {
                    errors.push(FieldError::new(path.full(), "required", "is required"));
                }
            }
            Some(Value::Null) => {
                if attribute.required {
                    let message = match mode {
                        Mode::Full => "is required",
                        Mode::Partial => "is required and cannot be set to null",
                    };
                    errors.push(FieldError::new(path.full(), "required", message));
                }
            }
            Some(value) => check_value(attribute, path, value, mode, errors),
        }
    }
    for key in object.keys() {
        if schema.get(key).is_none() {
            let known = schema.names().collect::<Vec<_>>().join(", ");
            let message = if known.is_empty() {
                "unknown attribute; this object has no attributes".to_owned()
            } else {
                format!("unknown attribute; known: {known}")
            };
            errors.push(FieldError::new(join_path(prefix, key), "unknown", message));
        }
    }
}

/// The message for a value of the wrong JSON type.
fn type_message(kind: &AttributeType) -> String {
    match kind {
        AttributeType::String | AttributeType::Secret => "must be a string".to_owned(),
        AttributeType::Number => "must be a number".to_owned(),
        AttributeType::Integer => "must be an integer".to_owned(),
        AttributeType::Boolean => "must be true or false".to_owned(),
        AttributeType::Date => {
            "must be a date: an RFC 3339 timestamp (2024-05-01T12:00:00Z) or YYYY-MM-DD".to_owned()
        }
        AttributeType::Email => "must be an email address like name@example.com".to_owned(),
        AttributeType::Enum(values) => {
            format!("must be a string, one of: {}", values.join(", "))
        }
        AttributeType::Array(_) => "must be an array".to_owned(),
        AttributeType::Object(_) => "must be an object".to_owned(),
        AttributeType::Json => "must be a JSON value".to_owned(),
    }
}

fn scalar_kind(scalar: ScalarType) -> AttributeType {
    match scalar {
        ScalarType::String => AttributeType::String,
        ScalarType::Number => AttributeType::Number,
        ScalarType::Integer => AttributeType::Integer,
        ScalarType::Boolean => AttributeType::Boolean,
        ScalarType::Date => AttributeType::Date,
        ScalarType::Email => AttributeType::Email,
    }
}

/// Whether `s` is an RFC 3339 timestamp or a `YYYY-MM-DD` date.
fn is_date(s: &str) -> bool {
    if DateTime::parse_from_rfc3339(s).is_ok() {
        return true;
    }
    let bytes = s.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
        && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// Whether `s` looks like an email address: one `@`, a non-empty local part, a domain with a dot
/// (not at either end) and no whitespace anywhere.
fn is_email(s: &str) -> bool {
    if s.chars().any(char::is_whitespace) {
        return false;
    }
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// Whether `n` has no fractional part.
fn is_integral(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// Largest integer an `f64` holds exactly (2^53).
const MAX_EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// Checks a value against a scalar (or other simple) type, normalising integers written as `3.0`
/// to `3`. Returns the message when the type is wrong.
fn check_type(kind: &AttributeType, value: &mut Value) -> Option<String> {
    let mut normalised = None;
    let ok = match (kind, &*value) {
        (AttributeType::Json, _) => true,
        (AttributeType::String | AttributeType::Secret, Value::String(_)) => true,
        (AttributeType::Email, Value::String(s)) => is_email(s),
        (AttributeType::Date, Value::String(s)) => is_date(s),
        (AttributeType::Enum(_), Value::String(_)) => true,
        (AttributeType::Number, Value::Number(_)) => true,
        (AttributeType::Integer, Value::Number(n)) => {
            if n.is_f64()
                && let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= MAX_EXACT_F64
            {
                // Exact: f is integral and |f| <= 2^53 fits an i64.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                normalised = Some(Value::from(i));
            }
            is_integral(n)
        }
        (AttributeType::Boolean, Value::Bool(_)) => true,
        (AttributeType::Array(_), Value::Array(_)) => true,
        (AttributeType::Object(_), Value::Object(_)) => true,
        _ => false,
    };
    if !ok {
        return Some(type_message(kind));
    }
    if let Some(normalised) = normalised {
        *value = normalised;
    }
    None
}

/// Formats a bound for a message (`2`, `2.5`).
fn bound(n: f64) -> String {
    format!("{n}")
}

/// Checks one non-null value against its attribute, transforming strings in place.
fn check_value(
    attribute: &Attribute,
    path: FieldPath<'_>,
    value: &mut Value,
    mode: Mode,
    errors: &mut Vec<FieldError>,
) {
    if let Value::String(s) = value {
        if attribute.trim {
            let trimmed = s.trim();
            if trimmed.len() != s.len() {
                *s = trimmed.to_owned();
            }
        }
        if attribute.lowercase {
            *s = s.to_lowercase();
        }
    }
    if let Some(message) = check_type(&attribute.kind, value) {
        errors.push(FieldError::new(path.full(), "type", message));
        return;
    }
    let field = |rule: &str, message: String| FieldError::new(path.full(), rule, message);
    match (&attribute.kind, &mut *value) {
        (AttributeType::Enum(values), Value::String(s)) => {
            let known = values.iter().any(|v| v == s);
            errors.extend(
                (!known).then(|| field("enum", format!("must be one of: {}", values.join(", ")))),
            );
        }
        (AttributeType::Number | AttributeType::Integer, Value::Number(n)) => {
            // Always `Some`: serde_json numbers are finite.
            let Some(n) = n.as_f64() else { return };
            if let Some(min) = attribute.min.filter(|min| n < *min) {
                errors.push(field("min", format!("must be at least {}", bound(min))));
            }
            if let Some(max) = attribute.max.filter(|max| n > *max) {
                errors.push(field("max", format!("must be at most {}", bound(max))));
            }
        }
        (AttributeType::Array(items), Value::Array(array)) => {
            #[allow(clippy::cast_precision_loss)]
            let len = array.len() as f64;
            if let Some(min) = attribute.min.filter(|min| len < *min) {
                errors.push(field(
                    "min",
                    format!("must have at least {} items", bound(min)),
                ));
            }
            if let Some(max) = attribute.max.filter(|max| len > *max) {
                errors.push(field(
                    "max",
                    format!("must have at most {} items", bound(max)),
                ));
            }
            if let Some(scalar) = items {
                let kind = scalar_kind(*scalar);
                for (i, item) in array.iter_mut().enumerate() {
                    if let Some(message) = check_type(&kind, item) {
                        errors.push(FieldError::new(
                            format!("{}[{i}]", path.full()),
                            "items",
                            message,
                        ));
                    }
                }
            }
        }
        (AttributeType::Object(Some(nested)), Value::Object(object)) => {
            validate_object(nested, object, mode, &path.full(), errors);
        }
        (_, Value::String(s)) => {
            #[allow(clippy::cast_precision_loss)]
            let len = s.chars().count() as f64;
            if let Some(min) = attribute.min.filter(|min| len < *min) {
                errors.push(field(
                    "min",
                    format!("must be at least {} characters long", bound(min)),
                ));
            }
            if let Some(max) = attribute.max.filter(|max| len > *max) {
                errors.push(field(
                    "max",
                    format!("must be at most {} characters long", bound(max)),
                ));
            }
            if let Some(pattern) = &attribute.pattern
                && !pattern.is_match(s)
            {
                errors.push(field(
                    "pattern",
                    format!("must match the pattern {}", pattern.as_str()),
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(value: Value) -> Schema {
        let Value::Object(map) = value else {
            panic!("not an object")
        };
        match Schema::parse(&map) {
            Ok(s) => s,
            Err(e) => panic!("should parse: {e}"),
        }
    }

    fn doc(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// Validates and returns the normalised document (panics on failure).
    fn valid(s: &Schema, value: Value, mode: Mode) -> Value {
        let mut d = doc(value);
        if let Err(e) = s.validate(&mut d, mode) {
            panic!("should be valid: {e}");
        }
        Value::Object(d)
    }

    /// Validates and returns the (field, rule) pairs of the errors; checks the document is
    /// unchanged.
    fn invalid(s: &Schema, value: Value, mode: Mode) -> Vec<(String, String)> {
        invalid_full(s, value, mode)
            .into_iter()
            .map(|e| (e.field, e.rule))
            .collect()
    }

    fn invalid_full(s: &Schema, value: Value, mode: Mode) -> Vec<FieldError> {
        let mut d = doc(value.clone());
        match s.validate(&mut d, mode) {
            Ok(()) => panic!("should be invalid: {value}"),
            Err(Error::Validation(errors)) => {
                assert_eq!(Value::Object(d), value, "document changed on failure");
                assert!(!errors.is_empty());
                errors
            }
            Err(other) => panic!("wrong error {other:?}"),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(f, r)| ((*f).to_owned(), (*r).to_owned()))
            .collect()
    }

    fn users() -> Schema {
        schema(json!({
            "name": "string|required|min:2|max:5|trim",
            "email": "email|required|lowercase",
            "region": "enum:eu,us|default:eu",
        }))
    }

    #[test]
    fn valid_document_is_normalised() {
        let s = users();
        let out = valid(
            &s,
            json!({"name": "  Ann ", "email": "Ann@Example.COM"}),
            Mode::Full,
        );
        assert_eq!(
            out,
            json!({"name": "Ann", "email": "ann@example.com", "region": "eu"})
        );
    }

    #[test]
    fn collects_every_error() {
        let s = users();
        let mut errors = invalid(
            &s,
            json!({"name": "A", "region": "asia", "extra": 1, "more": true}),
            Mode::Full,
        );
        errors.sort();
        assert_eq!(
            errors,
            pairs(&[
                ("email", "required"),
                ("extra", "unknown"),
                ("more", "unknown"),
                ("name", "min"),
                ("region", "enum"),
            ])
        );
    }

    #[test]
    fn messages_say_what_to_fix() {
        let s = users();
        let errors = invalid_full(
            &s,
            json!({"name": "A", "email": "x@y.z", "region": "asia", "zone": 1}),
            Mode::Full,
        );
        let message = |field: &str| {
            errors
                .iter()
                .find(|e| e.field == field)
                .map(|e| e.message.clone())
                .unwrap_or_default()
        };
        assert_eq!(message("name"), "must be at least 2 characters long");
        assert_eq!(message("region"), "must be one of: eu, us");
        // Known attributes are listed in schema order (that of the definition map).
        let known = s.names().collect::<Vec<_>>().join(", ");
        assert_eq!(
            message("zone"),
            format!("unknown attribute; known: {known}")
        );
        let mut names: Vec<&str> = s.names().collect();
        names.sort_unstable();
        assert_eq!(names, ["email", "name", "region"]);
        let errors = invalid_full(&s, json!({"email": "x@y.z"}), Mode::Full);
        assert_eq!(errors[0].message, "is required");
        let errors = invalid_full(&s, json!({"name": "abcdef"}), Mode::Partial);
        assert_eq!(errors[0].message, "must be at most 5 characters long");
    }

    #[test]
    fn trim_happens_before_length_checks() {
        let s = users();
        assert_eq!(
            invalid(&s, json!({"name": "  a  ", "email": "a@b.c"}), Mode::Full),
            pairs(&[("name", "min")])
        );
        // Length is counted in characters, not bytes.
        let out = valid(&s, json!({"name": "żółw!"}), Mode::Partial);
        assert_eq!(out, json!({"name": "żółw!"}));
    }

    #[test]
    fn partial_checks_only_given_fields() {
        let s = users();
        assert_eq!(valid(&s, json!({}), Mode::Partial), json!({}));
        assert_eq!(
            valid(&s, json!({"email": "A@B.CO"}), Mode::Partial),
            json!({"email": "a@b.co"})
        );
        assert_eq!(
            invalid(&s, json!({"name": null, "nope": 1}), Mode::Partial),
            pairs(&[("name", "required"), ("nope", "unknown")])
        );
        // No default in partial mode, and null keeps an optional field empty.
        assert_eq!(
            valid(&s, json!({"region": null}), Mode::Partial),
            json!({"region": null})
        );
    }

    #[test]
    fn null_for_optional_is_kept_and_not_defaulted() {
        let s = users();
        let out = valid(
            &s,
            json!({"name": "Bob", "email": "b@c.de", "region": null}),
            Mode::Full,
        );
        assert_eq!(out["region"], Value::Null);
        assert_eq!(
            invalid(&s, json!({"name": null, "email": "b@c.de"}), Mode::Full),
            pairs(&[("name", "required")])
        );
    }

    #[test]
    fn type_errors() {
        let s = schema(json!({
            "s": "string", "n": "number", "i": "integer", "b": "boolean", "d": "date",
            "e": "email", "en": "enum:x,y", "a": "array", "o": "object", "j": "json",
            "sec": "secret",
        }));
        let mut errors = invalid(
            &s,
            json!({
                "s": 1, "n": "1", "i": 1.5, "b": "true", "d": "yesterday", "e": "nope",
                "en": 1, "a": {}, "o": [], "j": {"any": [1]}, "sec": false,
            }),
            Mode::Full,
        );
        errors.sort();
        let expected: Vec<(String, String)> = ["a", "b", "d", "e", "en", "i", "n", "o", "s", "sec"]
            .iter()
            .map(|f| ((*f).to_owned(), "type".to_owned()))
            .collect();
        assert_eq!(errors, expected);
        let messages = invalid_full(&s, json!({"i": 2.5}), Mode::Partial);
        assert_eq!(messages[0].message, "must be an integer");
    }

    #[test]
    fn good_values_of_each_type() {
        let s = schema(json!({
            "s": "string", "n": "number", "i": "integer", "b": "boolean", "d": "date",
            "e": "email", "en": "enum:x,y", "a": "array", "o": "object", "j": "json",
            "sec": "secret",
        }));
        let value = json!({
            "s": "", "n": -1.25, "i": -7, "b": false, "d": "2024-02-29T10:00:00+02:00",
            "e": "first.last+tag@mail.example.org", "en": "y", "a": [1, "x", null],
            "o": {"k": {"deep": 1}}, "j": [true], "sec": "hush",
        });
        assert_eq!(valid(&s, value.clone(), Mode::Full), value);
        assert_eq!(
            valid(&s, json!({"j": "text", "d": "2024-02-29"}), Mode::Full),
            json!({"j": "text", "d": "2024-02-29"})
        );
    }

    #[test]
    fn integers_accept_integral_floats() {
        let s = schema(json!({"i": "integer|min:0|max:10", "big": "integer"}));
        let out = valid(&s, json!({"i": 3.0, "big": 1e20}), Mode::Full);
        assert_eq!(out["i"], json!(3));
        assert!(out["i"].is_i64());
        assert_eq!(out["big"], json!(1e20));
        assert_eq!(
            invalid(&s, json!({"i": 11}), Mode::Full),
            pairs(&[("i", "max")])
        );
        assert_eq!(
            invalid(&s, json!({"i": -1}), Mode::Full),
            pairs(&[("i", "min")])
        );
        assert_eq!(
            invalid(&s, json!({"i": 0.5}), Mode::Full),
            pairs(&[("i", "type")])
        );
        let out = valid(&s, json!({"big": u64::MAX}), Mode::Full);
        assert_eq!(out["big"], json!(u64::MAX));
    }

    #[test]
    fn number_bounds() {
        let s = schema(json!({"n": "number|min:-1.5|max:2.5"}));
        valid(&s, json!({"n": -1.5}), Mode::Full);
        valid(&s, json!({"n": 2.5}), Mode::Full);
        let errors = invalid_full(&s, json!({"n": 3}), Mode::Full);
        assert_eq!(errors[0].message, "must be at most 2.5");
        let errors = invalid_full(&s, json!({"n": -2}), Mode::Full);
        assert_eq!(errors[0].message, "must be at least -1.5");
    }

    #[test]
    fn dates() {
        for good in [
            "2024-05-01",
            "2024-02-29",
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.123+02:00",
        ] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-5-1",
            "24-05-01",
            "2024-05-01T12:00:00",
            "2024/05/01",
            "",
            "tomorrow",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "first.last+x@sub.example.org", "ü@exämple.de"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "", "ab.co", "@b.co", "a@b", "a@@b.co", "a@b@c.co", "a b@c.co", "a@b .co", "a@.co",
            "a@b.", "a@b.co\n",
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn patterns() {
        let s = schema(json!({"code": "string|trim|pattern:^[A-Z]{3}$|^[0-9]{4}$"}));
        valid(&s, json!({"code": " ABC "}), Mode::Full);
        valid(&s, json!({"code": "1234"}), Mode::Full);
        let errors = invalid_full(&s, json!({"code": "abc"}), Mode::Full);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].rule, "pattern");
        assert_eq!(
            errors[0].message,
            "must match the pattern ^[A-Z]{3}$|^[0-9]{4}$"
        );
    }

    #[test]
    fn several_rules_of_one_field() {
        let s = schema(json!({"code": "string|min:4|pattern:^[0-9]+$"}));
        let mut errors = invalid(&s, json!({"code": "ab"}), Mode::Full);
        errors.sort();
        assert_eq!(errors, pairs(&[("code", "min"), ("code", "pattern")]));
    }

    #[test]
    fn enums_with_lowercase_and_trim() {
        let s = schema(json!({"r": "enum:eu,us|lowercase|trim"}));
        assert_eq!(
            valid(&s, json!({"r": " EU "}), Mode::Full),
            json!({"r": "eu"})
        );
        let errors = invalid_full(&s, json!({"r": "Asia"}), Mode::Full);
        assert_eq!(errors[0].rule, "enum");
        let errors = invalid_full(&s, json!({"r": 3}), Mode::Full);
        assert_eq!(errors[0].rule, "type");
        assert_eq!(errors[0].message, "must be a string, one of: eu, us");
    }

    #[test]
    fn arrays() {
        let s = schema(json!({
            "tags": "array|items:string|min:1|max:3",
            "nums": "array|items:integer",
            "days": "array|items:date",
            "mails": "array|items:email",
        }));
        let out = valid(
            &s,
            json!({"tags": ["a"], "nums": [1, 2.0], "days": ["2024-01-01"], "mails": []}),
            Mode::Full,
        );
        assert_eq!(out["nums"], json!([1, 2]));
        assert!(out["nums"][1].is_i64());
        let mut errors = invalid(
            &s,
            json!({
                "tags": ["a", 2, "c", null],
                "nums": [1, 1.5, "2"],
                "days": ["2024-01-01", "x"],
                "mails": ["a@b.co", "nope"],
            }),
            Mode::Full,
        );
        errors.sort();
        assert_eq!(
            errors,
            pairs(&[
                ("days[1]", "items"),
                ("mails[1]", "items"),
                ("nums[1]", "items"),
                ("nums[2]", "items"),
                ("tags", "max"),
                ("tags[1]", "items"),
                ("tags[3]", "items"),
            ])
        );
        let errors = invalid_full(&s, json!({"tags": []}), Mode::Full);
        assert_eq!(errors[0].message, "must have at least 1 items");
        let errors = invalid_full(&s, json!({"nums": ["x"]}), Mode::Full);
        assert_eq!(errors[0].field, "nums[0]");
        assert_eq!(errors[0].message, "must be an integer");
    }

    fn people() -> Schema {
        schema(json!({
            "name": "string|required",
            "address": {
                "street": "string|required",
                "zip": "string|pattern:^[0-9]{5}$",
                "country": "string|default:PL",
                "geo": {"$$type": "object|required", "lat": "number|required"},
            },
            "contact": {"$$type": "object|required", "phone": "string|default:none"},
        }))
    }

    #[test]
    fn nested_objects() {
        let s = people();
        let out = valid(
            &s,
            json!({
                "name": "N",
                "address": {"street": "Main", "geo": {"lat": 1}},
                "contact": {},
            }),
            Mode::Full,
        );
        assert_eq!(out["address"]["country"], json!("PL"));
        assert_eq!(out["contact"]["phone"], json!("none"));

        let mut errors = invalid(
            &s,
            json!({
                "name": "N",
                "address": {"zip": "1", "city": "X", "geo": {"lat": "north", "alt": 1}},
            }),
            Mode::Full,
        );
        errors.sort();
        assert_eq!(
            errors,
            pairs(&[
                ("address.city", "unknown"),
                ("address.geo.alt", "unknown"),
                ("address.geo.lat", "type"),
                ("address.street", "required"),
                ("address.zip", "pattern"),
                ("contact", "required"),
            ])
        );
        let errors = invalid_full(
            &s,
            json!({"name": "N", "address": {"x": 1}, "contact": {}}),
            Mode::Full,
        );
        let unknown = errors.iter().find(|e| e.rule == "unknown");
        let message = unknown.map(|e| e.message.as_str()).unwrap_or_default();
        assert!(
            message.starts_with("unknown attribute; known: "),
            "{message}"
        );
        for name in ["street", "zip", "country", "geo"] {
            assert!(message.contains(name), "{message}");
        }
        assert!(!message.contains("name"), "{message}");
    }

    #[test]
    fn missing_optional_nested_object_is_skipped() {
        let s = people();
        let out = valid(&s, json!({"name": "N", "contact": {}}), Mode::Full);
        assert!(out.get("address").is_none());
        let out = valid(
            &s,
            json!({"name": "N", "contact": {}, "address": null}),
            Mode::Full,
        );
        assert_eq!(out["address"], Value::Null);
        assert_eq!(
            invalid(&s, json!({"name": "N", "contact": "x"}), Mode::Full),
            pairs(&[("contact", "type")])
        );
    }

    #[test]
    fn partial_nested_objects() {
        let s = people();
        assert_eq!(
            valid(&s, json!({"address": {"zip": "12345"}}), Mode::Partial),
            json!({"address": {"zip": "12345"}})
        );
        assert_eq!(
            invalid(
                &s,
                json!({"address": {"street": null, "zip": "1"}}),
                Mode::Partial
            ),
            pairs(&[("address.street", "required"), ("address.zip", "pattern")])
        );
    }

    #[test]
    fn free_form_object_and_json_accept_anything_shaped_right() {
        let s = schema(json!({"o": "object", "j": "json|required"}));
        valid(&s, json!({"o": {"_any": {"x": [1]}}, "j": 0}), Mode::Full);
        assert_eq!(
            invalid(&s, json!({"j": null}), Mode::Full),
            pairs(&[("j", "required")])
        );
    }

    #[test]
    fn defaults_of_every_kind_are_applied() {
        let s = schema(json!({
            "b": "boolean|default:false",
            "n": "number|default:0",
            "s": "string|default:hello",
            "a": "array|default:[]",
            "req": "integer|required|default:1",
        }));
        assert_eq!(
            valid(&s, json!({}), Mode::Full),
            json!({"b": false, "n": 0, "s": "hello", "a": [], "req": 1})
        );
        // Given values win over defaults.
        assert_eq!(
            valid(&s, json!({"b": true, "req": 5}), Mode::Full)["b"],
            json!(true)
        );
    }

    #[test]
    fn empty_schema_refuses_every_field() {
        let s = schema(json!({}));
        valid(&s, json!({}), Mode::Full);
        let errors = invalid_full(&s, json!({"x": 1}), Mode::Full);
        assert_eq!(
            errors[0].message,
            "unknown attribute; this object has no attributes"
        );
    }

    #[test]
    fn validation_error_display_lists_fields() {
        let s = users();
        let mut d = doc(json!({"name": "A"}));
        let text = match s.validate(&mut d, Mode::Full) {
            Err(e) => e.to_string(),
            Ok(()) => String::new(),
        };
        assert!(
            text.contains("name: must be at least 2 characters long (min)"),
            "{text}"
        );
        assert!(text.contains("email: is required (required)"), "{text}");
    }
}
