//! Canonical JSON text: compact, object keys sorted at every level (the same document always gives
//! the same bytes, whatever the order of `serde_json`'s `Map`, which is insertion-ordered when the
//! `preserve_order` feature is on anywhere in the build), optionally ASCII only; and its strict
//! reading back (duplicate keys refused, nesting bounded).
//!
//! Writing and reading are `serde_json`'s; numbers come back exactly as written thanks to its
//! `float_roundtrip` feature, enabled in the workspace.

use std::{fmt, io};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::{Map, Number, Value};

/// Deepest nesting [`parse`] accepts (the top-level value is at depth 0).
const MAX_DEPTH: usize = 512;

/// Compact JSON text of `value` with sorted object keys. With `ascii`, every character outside
/// printable ASCII is escaped (`\uXXXX`, surrogate pairs beyond the BMP), so the text is printable
/// ASCII.
pub(crate) fn to_string(value: &(impl Serialize + ?Sized), ascii: bool) -> String {
    // `serde_json` writes valid UTF-8 (and `AsciiFormatter` only ASCII escapes), so the lossy
    // conversion never replaces anything; it only avoids an error path that cannot happen.
    match String::from_utf8(to_vec(value, ascii)) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// [`to_string`] as bytes (an object body is written as is, without a UTF-8 check).
pub(crate) fn to_vec(value: &(impl Serialize + ?Sized), ascii: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter(ascii));
    // Writing to a `Vec` cannot fail, and every value given here is JSON (maps with string keys):
    // an error would leave a truncated text, which the caller's round-trip checks would catch.
    if value.serialize(&mut serializer).is_err() {
        out.clear();
    }
    out
}

/// A value that serializes with its object keys sorted, at every level.
pub(crate) struct Sorted<'a>(pub(crate) &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            Value::Object(map) => {
                SortedObject::new(map.iter().map(|(k, v)| (k.as_str(), v))).serialize(serializer)
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// An object made of borrowed entries, serialized sorted by key (values sorted as by [`Sorted`]).
pub(crate) struct SortedObject<'a>(Vec<(&'a str, &'a Value)>);

impl<'a> SortedObject<'a> {
    pub(crate) fn new(entries: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Self {
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        Self(entries)
    }
}

impl Serialize for SortedObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|&(k, v)| (k, Sorted(v))))
    }
}

/// The compact formatter; when its flag is set, it also escapes every character of string
/// fragments outside printable ASCII (`serde_json` already escapes control characters, quotes and
/// backslashes, and leaves the rest to `write_string_fragment`).
struct AsciiFormatter(bool);

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !self.0 {
            return CompactFormatter.write_string_fragment(writer, fragment);
        }
        let mut rest = fragment;
        while let Some(at) = rest.find(|c: char| !(' '..='~').contains(&c)) {
            let (plain, tail) = rest.split_at(at);
            writer.write_all(plain.as_bytes())?;
            let mut chars = tail.chars();
            if let Some(c) = chars.next() {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
            rest = chars.as_str();
        }
        writer.write_all(rest.as_bytes())
    }
}

/// Reads one JSON value spanning all of `text` (surrounding whitespace allowed). Duplicate object
/// keys and nesting deeper than [`MAX_DEPTH`] are refused.
pub(crate) fn parse(text: &str) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // Replaced by `Strict`'s own, higher limit (serde_json's is 128).
    deserializer.disable_recursion_limit();
    let value = Strict { depth: 0 }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a [`Value`] like `serde_json`'s own `Deserialize`, but refuses duplicate keys and
/// bounds the nesting.
struct Strict {
    depth: usize,
}

impl Strict {
    fn child(&self) -> Self {
        Self {
            depth: self.depth + 1,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom("nested too deeply"));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child())?;
            if entries.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            entries.insert(key, value);
        }
        Ok(Value::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_sorted_and_ascii() {
        let v = json!({"b": [1, -2, 1.5, true, null], "a": "é😀\u{7f}\n\"\\\u{1}"});
        assert_eq!(
            to_string(&Sorted(&v), true),
            r#"{"a":"\u00e9\ud83d\ude00\u007f\n\"\\\u0001","b":[1,-2,1.5,true,null]}"#
        );
        assert_eq!(
            to_string(&Sorted(&v), false),
            "{\"a\":\"é😀\u{7f}\\n\\\"\\\\\\u0001\",\"b\":[1,-2,1.5,true,null]}"
        );
        for ascii in [true, false] {
            assert_eq!(
                parse(&to_string(&Sorted(&v), ascii)).map_err(|e| e.to_string()),
                Ok(v.clone())
            );
        }
    }

    /// Sorted whatever the map's order, at every level, keys escaped in ASCII mode too; so the
    /// output does not depend on whether `serde_json`'s `preserve_order` feature is on.
    #[test]
    fn sorts_at_every_level() {
        let mut inner = Map::new();
        inner.insert("z".to_owned(), json!(1));
        inner.insert("é".to_owned(), json!(2));
        inner.insert("a".to_owned(), json!(3));
        let mut outer = Map::new();
        outer.insert("y".to_owned(), json!([Value::Object(inner.clone())]));
        outer.insert("x".to_owned(), Value::Object(inner));
        let v = Value::Object(outer);
        let inner_text = r#"{"a":3,"z":1,"\u00e9":2}"#;
        assert_eq!(
            to_string(&Sorted(&v), true),
            format!(r#"{{"x":{inner_text},"y":[{inner_text}]}}"#)
        );
        let (one, two) = (json!(1), json!(2));
        let object = SortedObject::new([("b", &one), ("a", &two)]);
        assert_eq!(to_string(&object, false), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn reads_numbers_exactly() {
        let cases = [
            ("0", json!(0u64)),
            ("18446744073709551615", json!(u64::MAX)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("1.0", json!(1.0)),
            ("0.30000000000000004", json!(0.300_000_000_000_000_04)),
            ("18446744073709551616", json!(18_446_744_073_709_551_616.0)),
        ];
        for (text, value) in cases {
            assert_eq!(parse(text).map_err(|e| e.to_string()), Ok(value), "{text}");
        }
        assert!(parse("-0").is_ok_and(|v| v.is_f64()));
    }

    #[test]
    fn rejects_bad_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,\"a\":2}",
            "{\"a\":{\"b\":1,\"b\":1}}",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\nb\"",
            "tru",
            "1 2",
            "{\"a\" 1}",
            "01",
            "1e400",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(" [ ] ").is_ok_and(|v| v == json!([])));
    }

    /// Nesting up to [`MAX_DEPTH`] round-trips (`serde_json`'s own limit is 128).
    #[test]
    fn depth_limit() {
        let nested = |levels: usize| "[".repeat(levels) + &"]".repeat(levels);
        let deepest = nested(MAX_DEPTH + 1);
        let value = parse(&deepest);
        assert!(
            value
                .as_ref()
                .is_ok_and(|v| to_string(&Sorted(v), true) == deepest)
        );
        assert!(parse(&nested(MAX_DEPTH + 2)).is_err());
        assert!(
            parse(&format!(
                "{}1{}",
                "[".repeat(MAX_DEPTH),
                "]".repeat(MAX_DEPTH)
            ))
            .is_ok()
        );
        assert!(
            parse(&format!(
                "{}1{}",
                "[".repeat(MAX_DEPTH + 1),
                "]".repeat(MAX_DEPTH + 1)
            ))
            .is_err()
        );
    }
}
