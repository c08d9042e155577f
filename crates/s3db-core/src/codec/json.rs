//! A small JSON writer and reader with the guarantees the codec needs and `serde_json` does not
//! give by default: object keys always sorted (deterministic bytes whatever the map's order), an
//! ASCII-only mode, and numbers read back exactly as written (`serde_json` without its
//! `float_roundtrip` feature may be one ulp off on floats).

use serde_json::{Map, Number, Value};

/// Deepest nesting the reader accepts.
const MAX_DEPTH: usize = 512;

/// Writes `value` as compact JSON with sorted object keys. With `ascii`, every character outside
/// printable ASCII is escaped (`\uXXXX`, surrogate pairs beyond the BMP), so the text is printable
/// ASCII.
pub(crate) fn write(out: &mut String, value: &Value, ascii: bool) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, ascii),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item, ascii);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map.iter(), ascii),
    }
}

/// Writes an object from its entries, sorted by key.
pub(crate) fn write_object<'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    ascii: bool,
) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key, ascii);
        out.push(':');
        write(out, value, ascii);
    }
    out.push('}');
}

fn write_string(out: &mut String, s: &str, ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || (ascii && u32::from(c) > 0x7e) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Reads one JSON value spanning all of `text` (surrounding whitespace allowed). Duplicate object
/// keys are refused.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    let mut reader = Reader { text, pos: 0 };
    reader.skip_ws();
    let value = reader.value(0)?;
    reader.skip_ws();
    if reader.pos != text.len() {
        return Err(reader.error("trailing characters after the JSON value"));
    }
    Ok(value)
}

/// Reads a JSON number exactly as `serde_json` represents it: integers as `u64` (non-negative) or
/// `i64` (negative) when they fit, everything else as a correctly rounded `f64`.
pub(crate) fn parse_number(text: &str) -> Result<Number, String> {
    let mut reader = Reader { text, pos: 0 };
    let n = reader.number()?;
    if reader.pos != text.len() {
        return Err(reader.error("trailing characters after the number"));
    }
    Ok(n)
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", char::from(b))))
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self
            .text
            .get(self.pos..)
            .is_some_and(|s| s.starts_with(word))
        {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("unexpected characters"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'n') => self.literal("null", Value::Null),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    self.skip_ws();
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(self.error("expected ',' or ']'")),
                    }
                }
            }
            Some(b'{') => self.object(depth).map(Value::Object),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Map<String, Value>, String> {
        self.expect(b'{')?;
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(map);
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            if map.contains_key(&key) {
                return Err(self.error(&format!("duplicate key {key:?}")));
            }
            map.insert(key, value);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(map);
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // `start` and `pos` are next to ASCII bytes (or the ends), so on char boundaries.
            out.push_str(self.text.get(start..self.pos).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = self.peek().ok_or_else(|| self.error("unexpected end"))?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// The character of a `\u` escape (the `\u` already read), joining surrogate pairs.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if self
                    .text
                    .get(self.pos..)
                    .is_some_and(|s| s.starts_with("\\u"))
                {
                    self.pos += 2;
                } else {
                    return Err(self.error("lone high surrogate"));
                }
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("high surrogate not followed by a low surrogate"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("lone low surrogate")),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid character escape"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("invalid \\u escape"));
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Number, String> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            integer = false;
            if self.digits() == 0 {
                return Err(self.error("invalid number: no digits after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            integer = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number: no digits in the exponent"));
            }
        }
        let text = self.text.get(start..self.pos).unwrap_or_default();
        if integer {
            if negative {
                match text.parse::<i64>() {
                    // `serde_json` reads `-0` as the float -0.0.
                    Ok(0) => {}
                    Ok(i) => return Ok(Number::from(i)),
                    Err(_) => {}
                }
            } else if let Ok(u) = text.parse::<u64>() {
                return Ok(Number::from(u));
            }
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .ok_or_else(|| self.error("number out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: &Value, ascii: bool) -> String {
        let mut out = String::new();
        write(&mut out, value, ascii);
        out
    }

    #[test]
    fn writes_sorted_and_ascii() {
        let v = json!({"b": [1, -2, 1.5, true, null], "a": "é😀\u{7f}\n\"\\"});
        assert_eq!(
            text(&v, true),
            r#"{"a":"\u00e9\ud83d\ude00\u007f\n\"\\","b":[1,-2,1.5,true,null]}"#
        );
        assert_eq!(
            text(&v, false),
            "{\"a\":\"é😀\u{7f}\\n\\\"\\\\\",\"b\":[1,-2,1.5,true,null]}"
        );
        for ascii in [true, false] {
            assert_eq!(parse(&text(&v, ascii)), Ok(v.clone()));
        }
    }

    #[test]
    fn numbers_exact() {
        for (s, n) in [
            ("0", Number::from(0u64)),
            ("18446744073709551615", Number::from(u64::MAX)),
            ("-9223372036854775808", Number::from(i64::MIN)),
            (
                "1.0",
                Number::from_f64(1.0).unwrap_or_else(|| Number::from(0)),
            ),
        ] {
            assert_eq!(parse_number(s), Ok(n));
        }
        let big = parse_number("18446744073709551616").ok();
        assert_eq!(
            big.and_then(|n| n.as_f64()),
            Some(18_446_744_073_709_551_616.0)
        );
        assert!(parse_number("-0").is_ok_and(|n| n.is_f64()));
        for bad in ["01", "1.", ".5", "1e", "+1", "1e400", "-", "1 "] {
            assert!(parse_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,\"a\":2}",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\nb\"",
            "tru",
            "1 2",
            "{\"a\" 1}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(" [ ] "), Ok(Value::Array(vec![])));
    }
}
