//! Tests of the document codec: behaviors at the limit, hashing, determinism, and round-trip
//! properties.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

use super::*;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

const SYSTEM: &str = "_v";

fn system() -> Vec<(&'static str, String)> {
    vec![(SYSTEM, "3".to_owned())]
}

fn doc(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Encodes, checks the metadata S3 would get, decodes.
fn round(
    d: &Map<String, Value>,
    fields: &FieldMap,
    behavior: Behavior,
) -> Result<(Encoded, Decoded)> {
    let encoded = encode(d, fields, behavior, &system())?;
    encoded.metadata.check()?;
    let decoded = decode(&encoded.metadata, &encoded.body, fields, "k")?;
    Ok((encoded, decoded))
}

fn body_json(encoded: &Encoded) -> Value {
    serde_json::from_slice(&encoded.body).unwrap_or(Value::Null)
}

fn system_size() -> usize {
    SYSTEM.len() + 1
}

/// A one-field document whose metadata (with [`system`]) totals exactly `total` bytes, the field
/// being the unmapped string `big` (`x-big` + `s` + text).
fn sized_doc(total: usize) -> Map<String, Value> {
    let text_len = total - system_size() - "x-big".len() - 1;
    doc(json!({ "big": "a".repeat(text_len) }))
}

fn expect_limit(result: Result<Encoded>, expected: usize) {
    match result {
        Err(Error::MetadataLimit { size, limit }) => {
            assert_eq!((size, limit), (expected, METADATA_LIMIT));
        }
        other => panic!("expected MetadataLimit, got {other:?}"),
    }
}

#[test]
fn enforce_limits_at_the_boundary() -> TestResult {
    let fits = sized_doc(METADATA_LIMIT);
    let (encoded, decoded) = round(&fits, &FieldMap::new(), Behavior::EnforceLimits)?;
    assert_eq!(encoded.metadata.size(), METADATA_LIMIT);
    assert_eq!(decoded.doc, fits);
    assert_eq!(decoded.system.get(SYSTEM).map(String::as_str), Some("3"));
    let body = body_json(&encoded);
    assert_eq!(body.as_object().map(Map::len), Some(1), "only _h: {body}");
    assert!(body.get(HASH_KEY).is_some_and(Value::is_string));

    let over = sized_doc(METADATA_LIMIT + 1);
    expect_limit(
        encode(&over, &FieldMap::new(), Behavior::EnforceLimits, &system()),
        METADATA_LIMIT + 1,
    );
    Ok(())
}

#[test]
fn user_managed_overflows_to_body() -> TestResult {
    let fits = sized_doc(METADATA_LIMIT);
    let (encoded, decoded) = round(&fits, &FieldMap::new(), Behavior::UserManaged)?;
    assert!(!encoded.overflowed);
    assert_eq!(encoded.metadata.size(), METADATA_LIMIT);
    assert_eq!(decoded.doc, fits);

    let over = sized_doc(METADATA_LIMIT + 1);
    let (encoded, decoded) = round(&over, &FieldMap::new(), Behavior::UserManaged)?;
    assert!(encoded.overflowed);
    assert_eq!(encoded.metadata.len(), 1, "only the system entry");
    assert_eq!(encoded.metadata.get(SYSTEM), Some("3"));
    assert!(body_json(&encoded).get("x-big").is_some());
    assert_eq!(decoded.doc, over);
    assert!(decoded.truncated.is_empty());
    Ok(())
}

#[test]
fn body_only_keeps_metadata_for_system_entries() -> TestResult {
    let d = doc(json!({"name": "Ada", "n": 1, "tags": ["x"]}));
    let fields = FieldMap::from_names(["name", "n"]);
    let (encoded, decoded) = round(&d, &fields, Behavior::BodyOnly)?;
    assert_eq!(encoded.metadata.iter().collect::<Vec<_>>(), [(SYSTEM, "3")]);
    assert_eq!(
        body_json(&encoded),
        json!({"0": "Ada", "1": 1, "x-tags": ["x"], "_h": metadata_hash(&encoded.metadata)})
    );
    assert_eq!(decoded.doc, d);

    // Without metadata there is nothing to hash.
    let bare = encode(&d, &fields, Behavior::BodyOnly, &[])?;
    assert!(bare.metadata.is_empty());
    assert_eq!(
        std::str::from_utf8(&bare.body)?,
        r#"{"0":"Ada","1":1,"x-tags":["x"]}"#
    );
    let empty = encode(&Map::new(), &fields, Behavior::BodyOnly, &[])?;
    assert_eq!(&empty.body[..], b"{}");
    Ok(())
}

#[test]
fn a_body_of_only_the_hash_is_the_serializers_text() -> TestResult {
    // When every field fits in the metadata the body is written by hand: it must be exactly the
    // canonical text of `{"_h": …}` (and `{}` without metadata).
    let d = doc(json!({"name": "Ada", "n": 1}));
    let fields = FieldMap::from_names(["name", "n"]);
    for behavior in [
        Behavior::BodyOverflow,
        Behavior::EnforceLimits,
        Behavior::UserManaged,
        Behavior::TruncateData,
    ] {
        let (encoded, decoded) = round(&d, &fields, behavior)?;
        let hash = json!({ HASH_KEY: metadata_hash(&encoded.metadata) });
        assert_eq!(
            &encoded.body[..],
            canonical::to_vec(&canonical::Sorted(&hash), false).as_slice(),
            "{behavior:?}"
        );
        assert_eq!(decoded.doc, d);
    }
    let empty = encode(&Map::new(), &fields, Behavior::BodyOverflow, &[])?;
    assert_eq!(&empty.body[..], b"{}");
    Ok(())
}

#[test]
fn body_overflow_puts_smallest_first() -> TestResult {
    // Sizes (name + value): x-a: 3+1+1000, x-b: 3+1+500, x-c: 3+1+600, x-d: 3 + "t".
    let d = doc(json!({
        "a": "a".repeat(1000),
        "b": "b".repeat(500),
        "c": "c".repeat(600),
        "d": true,
    }));
    let (encoded, decoded) = round(&d, &FieldMap::new(), Behavior::BodyOverflow)?;
    let in_meta: Vec<&str> = encoded.metadata.iter().map(|(n, _)| n).collect();
    assert_eq!(in_meta, ["_v", "x-b", "x-c", "x-d"]);
    let body = body_json(&encoded);
    assert!(body.get("x-a").is_some());
    assert_eq!(body.as_object().map(Map::len), Some(2));
    assert_eq!(decoded.doc, d);
    assert!(!encoded.overflowed && encoded.truncated.is_empty());

    // Exactly at the limit the field goes to metadata, one byte over to the body.
    let fits = sized_doc(METADATA_LIMIT);
    let (encoded, decoded) = round(&fits, &FieldMap::new(), Behavior::BodyOverflow)?;
    assert_eq!(encoded.metadata.size(), METADATA_LIMIT);
    assert_eq!(decoded.doc, fits);
    let over = sized_doc(METADATA_LIMIT + 1);
    let (encoded, decoded) = round(&over, &FieldMap::new(), Behavior::BodyOverflow)?;
    assert_eq!(encoded.metadata.len(), 1);
    assert_eq!(decoded.doc, over);
    Ok(())
}

#[test]
fn body_overflow_ties_by_name() -> TestResult {
    let d = doc(json!({"b": "x".repeat(1500), "a": "y".repeat(1500)}));
    let (encoded, _) = round(&d, &FieldMap::new(), Behavior::BodyOverflow)?;
    assert!(encoded.metadata.get("x-a").is_some());
    assert!(encoded.metadata.get("x-b").is_none());
    Ok(())
}

#[test]
fn truncate_data_at_the_boundary() -> TestResult {
    let fits = sized_doc(METADATA_LIMIT);
    let (encoded, decoded) = round(&fits, &FieldMap::new(), Behavior::TruncateData)?;
    assert!(encoded.truncated.is_empty());
    assert!(encoded.metadata.get(TRUNCATED_ENTRY).is_none());
    assert_eq!(decoded.doc, fits);

    let over = sized_doc(METADATA_LIMIT + 1);
    let (encoded, decoded) = round(&over, &FieldMap::new(), Behavior::TruncateData)?;
    assert_eq!(encoded.truncated, ["big"]);
    assert_eq!(encoded.metadata.get(TRUNCATED_ENTRY), Some("x-big"));
    assert_eq!(encoded.metadata.size(), METADATA_LIMIT);
    assert_eq!(decoded.truncated, ["big"]);
    let (Some(Value::String(short)), Some(Value::String(long))) =
        (decoded.doc.get("big"), over.get("big"))
    else {
        panic!("big should be a string: {decoded:?}");
    };
    assert!(long.starts_with(short.as_str()) && short.len() < long.len());
    // `_t` (2 + 5 bytes) took the room.
    assert_eq!(
        short.len(),
        long.len() - 1 - TRUNCATED_ENTRY.len() - "x-big".len()
    );
    Ok(())
}

#[test]
fn truncate_data_cuts_on_char_boundaries_and_drops_the_rest() -> TestResult {
    let fields = FieldMap::from_names(["title", "text", "blob", "n"]);
    let text: String = "é😀a".repeat(400); // 2 + 4 + 1 bytes each, not header-safe
    let d = doc(json!({
        "title": "hello",
        "n": 12,
        "text": text,
        "blob": {"k": "v".repeat(5000)},
    }));
    let (encoded, decoded) = round(&d, &fields, Behavior::TruncateData)?;
    // text (base64) is smaller than blob, so it is the one cut; blob is dropped.
    assert_eq!(encoded.truncated, ["text", "blob"]);
    assert_eq!(encoded.metadata.get(TRUNCATED_ENTRY), Some("1,2"));
    assert_eq!(decoded.truncated, encoded.truncated);
    assert_eq!(decoded.doc.get("title"), d.get("title"));
    assert_eq!(decoded.doc.get("n"), d.get("n"));
    assert!(!decoded.doc.contains_key("blob"));
    let Some(Value::String(short)) = decoded.doc.get("text") else {
        panic!("text should be a truncated string: {decoded:?}");
    };
    assert!(text.starts_with(short.as_str()) && short.len() < text.len());
    assert!(short.len() > 1000, "the room is used: {}", short.len());
    // No room for even one more character.
    let next = text.get(short.len()..).and_then(|rest| rest.chars().next());
    let longer = format!("{short}{}", next.map(String::from).unwrap_or_default());
    assert!(
        encoded.metadata.size() - encoded.metadata.get("1").map_or(0, str::len)
            + value::encode_string(&longer).len()
            > METADATA_LIMIT
    );
    // Body: only the hash.
    assert_eq!(body_json(&encoded).as_object().map(Map::len), Some(1));
    Ok(())
}

#[test]
fn truncate_data_drops_non_strings() -> TestResult {
    let d = doc(json!({"small": 1, "list": vec!["x".repeat(100); 30]}));
    let (encoded, decoded) = round(&d, &FieldMap::new(), Behavior::TruncateData)?;
    assert_eq!(encoded.truncated, ["list"]);
    assert_eq!(decoded.doc, doc(json!({"small": 1})));
    assert_eq!(decoded.truncated, ["list"]);
    Ok(())
}

#[test]
fn truncated_prefix_prefers_the_longest_fit() {
    // A printable prefix ending in a space must use base64, so a shorter one may be longer.
    assert_eq!(longest_prefix("ab cd", 4), "ab");
    assert_eq!(longest_prefix("ab cd", 5), "ab c");
    assert_eq!(longest_prefix("abc", 0), "");
    assert_eq!(longest_prefix("abc", 1), "");
    assert_eq!(longest_prefix("éé", 4), "é"); // u + 3 base64 chars
    assert_eq!(longest_prefix("😀", 5), "", "never split a char");
    assert_eq!(longest_prefix("😀", 7), "😀");
    assert_eq!(longest_prefix(" x", 3), " ");
}

#[test]
fn hash_follows_metadata_only() -> TestResult {
    let fields = FieldMap::new();
    let hash_of =
        |d: &Map<String, Value>, system: &[(&'static str, String)]| -> Result<Option<Value>> {
            let encoded = encode(d, &fields, Behavior::BodyOverflow, system)?;
            Ok(body_json(&encoded).get(HASH_KEY).cloned())
        };
    let base = doc(json!({"small": "x", "big": "y".repeat(3000)}));
    let h = hash_of(&base, &system())?;
    assert!(h.as_ref().and_then(Value::as_str).is_some_and(|h| {
        h.len() == 16
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }));

    let body_changed = doc(json!({"small": "x", "big": "z".repeat(3000)}));
    assert_eq!(hash_of(&body_changed, &system())?, h, "body-only change");

    let meta_changed = doc(json!({"small": "w", "big": "y".repeat(3000)}));
    assert_ne!(
        hash_of(&meta_changed, &system())?,
        h,
        "metadata field change"
    );
    let system_changed = [(SYSTEM, "4".to_owned())];
    assert_ne!(hash_of(&base, &system_changed)?, h, "system entry change");

    // Under enforce-limits the body is the hash alone, so it changes exactly with the metadata.
    let a = encode(&doc(json!({"k": 1})), &fields, Behavior::EnforceLimits, &[])?;
    let b = encode(&doc(json!({"k": 2})), &fields, Behavior::EnforceLimits, &[])?;
    let c = encode(&doc(json!({"k": 1})), &fields, Behavior::EnforceLimits, &[])?;
    assert_ne!(a.body, b.body);
    assert_eq!(a.body, c.body);
    Ok(())
}

#[test]
fn deterministic_bytes() -> TestResult {
    let mut one = Map::new();
    one.insert("z".into(), json!({"b": [1, {"y": 1, "x": 2}], "a": "é"}));
    one.insert("a".into(), json!(1.5));
    let mut two = Map::new();
    two.insert("a".into(), json!(1.5));
    two.insert("z".into(), json!({"a": "é", "b": [1, {"x": 2, "y": 1}]}));
    for behavior in Behavior::ALL {
        let e1 = encode(&one, &FieldMap::new(), behavior, &system())?;
        let e2 = encode(&two, &FieldMap::new(), behavior, &system())?;
        assert_eq!(e1, e2, "{behavior}");
    }
    let body = encode(&one, &FieldMap::new(), Behavior::BodyOnly, &[])?.body;
    assert_eq!(
        std::str::from_utf8(&body)?,
        r#"{"x-a":1.5,"x-z":{"a":"é","b":[1,{"x":2,"y":1}]}}"#
    );
    Ok(())
}

#[test]
fn name_escaping() {
    assert_eq!(escape_name("firstName"), "x-first_4eame");
    assert_eq!(escape_name("a b"), "x-a_20b");
    assert_eq!(escape_name(""), "x-");
    assert_eq!(escape_name("é"), "x-_c3_a9");
    for name in ["firstName", "", "x-", "_v", "é😀", "a,b", "A_Z-09", "x"] {
        let escaped = escape_name(name);
        assert!(
            Metadata::new().with(escaped.as_str(), "z").check().is_ok(),
            "{escaped}"
        );
        assert_eq!(unescape_name(&escaped).as_deref(), Some(name));
    }
    for bad in ["x-_61", "x-_4E", "x-A", "x-_4", "x-_c3", "a", "x-a-b"] {
        assert_eq!(unescape_name(bad), None, "{bad}");
    }
}

#[test]
fn field_map_is_stable() -> TestResult {
    let mut map = FieldMap::from_names(["id", "name", "id", "email"]);
    assert_eq!(
        map.iter().collect::<Vec<_>>(),
        [("email", "2"), ("id", "0"), ("name", "1")]
    );
    let before: Vec<(String, String)> = map
        .iter()
        .map(|(n, k)| (n.to_owned(), k.to_owned()))
        .collect();
    assert!(map.extend(["zip", "name", "age"]));
    assert!(!map.extend(["id", "zip"]));
    for (name, key) in &before {
        assert_eq!(map.key_of(name), Some(key.as_str()));
    }
    assert_eq!(map.key_of("zip"), Some("3"));
    assert_eq!(map.key_of("age"), Some("4"));
    assert_eq!(map.name_of("4"), Some("age"));
    assert_eq!(map.key_of("nope"), None);

    let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
    map.extend(&names);
    assert_eq!(map.key_of("f0"), Some("5"));
    assert_eq!(map.key_of("f4"), Some("9"));
    assert_eq!(map.key_of("f5"), Some("a"));
    assert_eq!(map.key_of("f30"), Some("z"));
    assert_eq!(map.key_of("f31"), Some("10"));
    assert!(
        map.iter()
            .all(|(_, k)| !k.contains('-') && !k.starts_with('_'))
    );

    let json = serde_json::to_string(&map)?;
    let back: FieldMap = serde_json::from_str(&json)?;
    assert_eq!(back, map);
    back.key_of("age")
        .map(|k| assert_eq!(k, "4"))
        .ok_or("age lost")?;
    // The counter survives: a name added after a reload gets a fresh key.
    let mut reloaded = back;
    reloaded.extend(["new"]);
    assert_eq!(reloaded.key_of("new"), Some("19")); // 45 in base 36

    for bad in [
        r#"{"next":2,"keys":{"a":"0","b":"0"}}"#,
        r#"{"next":1,"keys":{"a":"1"}}"#,
        r#"{"next":5,"keys":{"a":"01"}}"#,
        r#"{"next":5,"keys":{"a":"x-"}}"#,
        r#"{"keys":{}}"#,
    ] {
        assert!(serde_json::from_str::<FieldMap>(bad).is_err(), "{bad}");
    }
    Ok(())
}

#[test]
fn decode_errors_name_the_problem() {
    let fields = FieldMap::from_names(["a"]);
    let corrupt = |metadata: Metadata, body: &[u8]| match decode(&metadata, body, &fields, "res/id")
    {
        Err(Error::Corrupt { key, reason }) => {
            assert_eq!(key, "res/id");
            reason
        }
        other => panic!("expected Corrupt, got {other:?}"),
    };
    assert!(corrupt(Metadata::new().with("7", "t"), b"{}").contains("\"7\""));
    assert!(corrupt(Metadata::new().with("0", "q"), b"{}").contains("\"0\""));
    assert!(corrupt(Metadata::new().with("x-_zz", "t"), b"{}").contains("x-_zz"));
    assert!(corrupt(Metadata::new(), b"{\"9\":1}").contains("\"9\""));
    corrupt(Metadata::new(), b"[1]");
    corrupt(Metadata::new(), b"{");
    corrupt(Metadata::new(), b"{\"_x\":1}");
    corrupt(Metadata::new(), &[0xff]);
    corrupt(Metadata::new().with("0", "t"), b"{\"0\":1}");
    corrupt(Metadata::new().with(TRUNCATED_ENTRY, "0,zz"), b"{}");

    // Unknown system entries come back; `_h` is ignored; an empty body has no fields.
    let metadata = Metadata::new().with("_v", "1").with("0", "n5");
    let ok = decode(&metadata, b"{\"_h\":\"whatever\",\"x-b\":[]}", &fields, "k");
    assert!(
        ok.as_ref()
            .is_ok_and(|d| d.doc == doc(json!({"a": 5, "b": []}))
                && d.system.get("_v").map(String::as_str) == Some("1")),
        "{ok:?}"
    );
    let empty = decode(&Metadata::new(), b"", &fields, "k");
    assert!(empty.is_ok_and(|d| d.doc.is_empty()));
}

#[test]
fn system_entries_are_checked() -> TestResult {
    let d = Map::new();
    for (name, value) in [
        ("v", "1"),
        ("_V", "1"),
        ("_t", "1"),
        ("_h", "1"),
        ("_v", " 1"),
        ("_v", "é"),
    ] {
        let err = encode(
            &d,
            &FieldMap::new(),
            Behavior::BodyOnly,
            &[(name, value.to_owned())],
        );
        assert!(
            matches!(err, Err(Error::BadMetadata { .. })),
            "{name}={value}"
        );
    }
    let twice = [("_v", "1".to_owned()), ("_v", "2".to_owned())];
    assert!(matches!(
        encode(&d, &FieldMap::new(), Behavior::BodyOnly, &twice),
        Err(Error::BadMetadata { .. })
    ));
    let huge = [("_x", "y".repeat(METADATA_LIMIT))];
    for behavior in Behavior::ALL {
        expect_limit(
            encode(&d, &FieldMap::new(), behavior, &huge),
            METADATA_LIMIT + 2,
        );
    }
    let (encoded, decoded) = round(&d, &FieldMap::new(), Behavior::UserManaged)?;
    assert_eq!(encoded.metadata.len(), 1);
    assert_eq!(
        decoded.system,
        BTreeMap::from([(SYSTEM.to_owned(), "3".to_owned())])
    );
    Ok(())
}

/// Deeply nested values (beyond `serde_json`'s default limit of 128) come back from metadata and
/// from the body; a body with a duplicated key is corrupt.
#[test]
fn deep_values_and_duplicate_body_keys() -> TestResult {
    let mut deep = json!("é");
    for i in 0..300 {
        deep = if i % 2 == 0 {
            json!([deep])
        } else {
            json!({ "k": deep })
        };
    }
    let d = doc(json!({ "deep": deep }));
    for behavior in [Behavior::EnforceLimits, Behavior::BodyOnly] {
        let (encoded, decoded) = round(&d, &FieldMap::new(), behavior)?;
        assert_eq!(
            encoded.metadata.len(),
            1 + usize::from(behavior != Behavior::BodyOnly)
        );
        assert_eq!(decoded.doc, d, "{behavior:?}");
    }
    let duplicated = decode(
        &Metadata::new(),
        b"{\"x-a\":1,\"x-a\":1}",
        &FieldMap::new(),
        "k",
    );
    assert!(
        matches!(duplicated, Err(Error::Corrupt { ref reason, .. }) if reason.contains("duplicate")),
        "{duplicated:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        2 => "[ -~]{0,16}",
        1 => " [a-z ]{0,6} ",
        1 => "[a-zA-Z_]{1,10}",
        1 => prop::collection::vec(prop::char::range('\u{10000}', '\u{10ffff}'), 0..4)
            .prop_map(String::from_iter),
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO)
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            0.1,
            -0.0,
            1e300,
            -1e-300,
            f64::MAX,
            f64::MIN,
            1e16,
            2.5
        ])
        .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(arb_string(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_doc() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(arb_string(), arb_json(), 0..=30)
        .prop_map(|m| m.into_iter().collect())
}

/// Checks one document through one behavior and field map.
fn check_property(
    d: &Map<String, Value>,
    fields: &FieldMap,
    behavior: Behavior,
) -> std::result::Result<(), TestCaseError> {
    let encoded = match encode(d, fields, behavior, &system()) {
        Ok(encoded) => encoded,
        Err(Error::MetadataLimit { size, limit }) if behavior == Behavior::EnforceLimits => {
            prop_assert!(size > limit);
            return Ok(());
        }
        Err(e) => return Err(TestCaseError::fail(format!("{behavior}: {e}"))),
    };
    prop_assert!(encoded.metadata.check().is_ok(), "{:?}", encoded.metadata);
    prop_assert!(!encoded.overflowed || behavior == Behavior::UserManaged);
    if encoded.overflowed {
        prop_assert_eq!(encoded.metadata.len(), 1);
    }
    let decoded = decode(&encoded.metadata, &encoded.body, fields, "k")
        .map_err(|e| TestCaseError::fail(format!("{behavior}: {e}")))?;
    prop_assert_eq!(decoded.system.len(), 1);
    prop_assert_eq!(&decoded.truncated, &encoded.truncated);
    if encoded.truncated.is_empty() {
        prop_assert_eq!(&decoded.doc, d, "{}", behavior);
        return Ok(());
    }
    prop_assert_eq!(behavior, Behavior::TruncateData);
    for (name, value) in d {
        let position = encoded.truncated.iter().position(|t| t == name);
        match (position, decoded.doc.get(name)) {
            (None, got) => prop_assert_eq!(got, Some(value)),
            (Some(_), None) => {}
            (Some(i), Some(Value::String(short))) => {
                prop_assert_eq!(i, 0, "only the first listed field is cut");
                let Value::String(long) = value else {
                    return Err(TestCaseError::fail("a non-string came back truncated"));
                };
                prop_assert!(long.starts_with(short.as_str()) && short.len() < long.len());
            }
            (Some(_), Some(other)) => {
                return Err(TestCaseError::fail(format!(
                    "truncated {name:?} came back as {other}"
                )));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn documents_round_trip(d in arb_doc()) {
        let mapped = FieldMap::from_names(d.keys());
        for fields in [&mapped, &FieldMap::new()] {
            for behavior in Behavior::ALL {
                check_property(&d, fields, behavior)?;
            }
        }
    }

    #[test]
    fn values_round_trip(v in arb_json()) {
        let text = encode_value(&v);
        prop_assert!(is_header_safe(&text) && !text.is_empty(), "{}", text);
        prop_assert_eq!(decode_value(&text), Ok(v));
    }

    #[test]
    fn names_round_trip(name in arb_string()) {
        let escaped = escape_name(&name);
        prop_assert!(Metadata::new().with(escaped.as_str(), "z").check().is_ok(), "{}", escaped);
        prop_assert_eq!(unescape_name(&escaped), Some(name));
    }

    #[test]
    fn big_documents_stay_in_bounds(
        d in prop::collection::btree_map(arb_string(), arb_string().prop_map(|s| Value::String(s.repeat(40))), 0..30)
            .prop_map(|m| m.into_iter().collect::<Map<String, Value>>())
    ) {
        for behavior in Behavior::ALL {
            check_property(&d, &FieldMap::new(), behavior)?;
        }
    }
}
