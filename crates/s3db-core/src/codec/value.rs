//! JSON values ↔ metadata-safe ASCII strings.
//!
//! Every encoding starts with a one-letter type tag:
//!
//! | tag | value |
//! | --- | --- |
//! | `s` | a string that is printable ASCII without leading or trailing space, as is |
//! | `u` | any other string: base64url (no padding) of its UTF-8 |
//! | `n` | a number: its JSON text |
//! | `t` / `f` | `true` / `false` |
//! | `z` | `null` |
//! | `j` | an array or object: compact JSON with sorted keys, non-ASCII escaped as `\uXXXX` |
//! | `b` | an array or object whose `j` text would not be a valid header value: base64url of the JSON |
//!
//! The result is always printable ASCII without leading or trailing space, and decodes to exactly
//! the value that was encoded (numbers keep their `u64` / `i64` / `f64` representation).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Number, Value};

use super::canonical::{self, Sorted};

/// A metadata value that is not a valid encoding of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    /// What is wrong with it.
    pub reason: String,
}

impl DecodeError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Whether `s` can be stored as a metadata value as is: printable ASCII, no leading or trailing
/// space.
#[must_use]
pub fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b)) && !s.starts_with(' ') && !s.ends_with(' ')
}

/// Encodes a JSON value as a metadata-safe ASCII string (see the module docs for the format).
#[must_use]
pub fn encode_value(value: &Value) -> String {
    match value {
        Value::Null => "z".to_owned(),
        Value::Bool(true) => "t".to_owned(),
        Value::Bool(false) => "f".to_owned(),
        Value::Number(n) => format!("n{n}"),
        Value::String(s) => encode_string(s),
        Value::Array(_) | Value::Object(_) => {
            let text = format!("j{}", canonical::to_string(&Sorted(value), true));
            if is_header_safe(&text) {
                text
            } else {
                let plain = canonical::to_string(&Sorted(value), false);
                format!("b{}", URL_SAFE_NO_PAD.encode(plain))
            }
        }
    }
}

/// Encodes a string value (`s` or `u` tag).
pub(crate) fn encode_string(s: &str) -> String {
    if is_header_safe(s) {
        let mut out = String::with_capacity(s.len() + 1);
        out.push('s');
        out.push_str(s);
        out
    } else {
        let mut out = String::with_capacity(base64_len(s.len()) + 1);
        out.push('u');
        URL_SAFE_NO_PAD.encode_string(s, &mut out);
        out
    }
}

/// Length of unpadded base64 of `n` bytes.
pub(crate) fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Decodes what [`encode_value`] produced.
///
/// # Errors
/// [`DecodeError`] if the text is not a valid encoding.
pub fn decode_value(text: &str) -> Result<Value, DecodeError> {
    let mut chars = text.chars();
    let tag = chars
        .next()
        .ok_or_else(|| DecodeError::new("empty value (no type tag)"))?;
    let rest = chars.as_str();
    let simple = |value: Value| {
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(DecodeError::new(format!(
                "unexpected text after type tag '{tag}'"
            )))
        }
    };
    match tag {
        's' => Ok(Value::String(rest.to_owned())),
        'u' => base64_text(rest).map(Value::String),
        'n' => number(rest).map(Value::Number),
        't' => simple(Value::Bool(true)),
        'f' => simple(Value::Bool(false)),
        'z' => simple(Value::Null),
        'j' => structured(rest),
        'b' => structured(&base64_text(rest)?),
        other => Err(DecodeError::new(format!("unknown type tag {other:?}"))),
    }
}

fn base64_text(b64: &str) -> Result<String, DecodeError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|e| DecodeError::new(format!("bad base64: {e}")))?;
    String::from_utf8(bytes).map_err(|_| DecodeError::new("base64 text is not UTF-8"))
}

/// A JSON number, read exactly: integers as `u64` (non-negative) or `i64` (negative) when they
/// fit, everything else as a correctly rounded `f64`.
fn number(text: &str) -> Result<Number, DecodeError> {
    // serde_json allows whitespace around the number; the encoding has none.
    if text.trim_ascii().len() != text.len() {
        return Err(DecodeError::new("invalid number: surrounding whitespace"));
    }
    serde_json::from_str(text).map_err(|e| DecodeError::new(format!("invalid number: {e}")))
}

fn structured(text: &str) -> Result<Value, DecodeError> {
    match canonical::parse(text).map_err(|e| DecodeError::new(e.to_string()))? {
        value @ (Value::Array(_) | Value::Object(_)) => Ok(value),
        _ => Err(DecodeError::new("expected a JSON array or object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags() {
        let cases = [
            (json!(null), "z"),
            (json!(true), "t"),
            (json!(false), "f"),
            (json!(""), "s"),
            (json!("hello world"), "shello world"),
            (json!(" x"), "uIHg"),
            (json!("é"), "uw6k"),
            (json!(42), "n42"),
            (json!(-7), "n-7"),
            (json!(1.5), "n1.5"),
            (json!(1.0), "n1.0"),
            (json!(u64::MAX), "n18446744073709551615"),
            (json!([1, "é"]), "j[1,\"\\u00e9\"]"),
            (json!({"b": 1, "a": " "}), "j{\"a\":\" \",\"b\":1}"),
        ];
        for (value, text) in cases {
            assert_eq!(encode_value(&value), text, "{value}");
            assert_eq!(decode_value(text), Ok(value));
        }
    }

    #[test]
    fn floats_exact() {
        for f in [
            0.1,
            -0.0,
            1e300,
            -1e-300,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e16,
            123_456_789.123_456_79,
            0.300_000_000_000_000_04,
        ] {
            let value = json!(f);
            let decoded = decode_value(&encode_value(&value));
            assert_eq!(
                decoded
                    .as_ref()
                    .ok()
                    .and_then(Value::as_f64)
                    .map(f64::to_bits),
                Some(f.to_bits()),
                "{f:e}"
            );
            assert_eq!(decoded, Ok(value));
        }
    }

    #[test]
    fn base64_fallback_decodes() {
        let text = format!("b{}", URL_SAFE_NO_PAD.encode("[\"é\"]"));
        assert_eq!(decode_value(&text), Ok(json!(["é"])));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "q", "tx", "z ", "n", "nx", "u!", "j[", "j1", "b!!", "n01",
        ] {
            assert!(decode_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_are_strict() {
        for bad in [
            "n 1", "n1 ", "n\n1", "n+1", "n1.", "n.5", "n1e", "n1e400", "n-", "n\"1\"", "n[1]",
        ] {
            assert!(decode_value(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode_value("n-9223372036854775808"),
            Ok(Value::Number(i64::MIN.into()))
        );
        assert_eq!(
            decode_value("n18446744073709551616"),
            Ok(json!(18_446_744_073_709_551_616.0))
        );
        assert!(decode_value("n-0").is_ok_and(|v| v.is_f64()));
    }
}
