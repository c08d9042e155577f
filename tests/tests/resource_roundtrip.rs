//! Property test: arbitrary documents round-trip through every behavior that accepts them, on
//! memory and on a local folder, through the whole resource layer (validation, codec, store).

use proptest::prelude::*;
use s3db_core::testing::TestStore;
use s3db_core::{Behavior, Database, Error, Resource, ResourceConfig};
use serde_json::{Map, Value, json};

/// Free-form values: nested arrays and objects of unicode strings, numbers, booleans and nulls.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        " [ -~]{0,10} ".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Documents over the resource's attributes: text (any unicode), n (number), flag (boolean),
/// blob (any JSON, sometimes large).
fn any_document() -> impl Strategy<Value = Map<String, Value>> {
    (
        proptest::option::of("\\PC{0,300}"),
        proptest::option::of(any::<i32>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any_json()),
        0usize..3,
    )
        .prop_map(|(text, n, flag, blob, big)| {
            let mut doc = Map::new();
            if let Some(t) = text {
                // Sometimes push the document over the 2 KB metadata limit.
                doc.insert(
                    "text".into(),
                    json!(t.repeat(if big == 2 { 12 } else { 1 })),
                );
            }
            if let Some(n) = n {
                doc.insert("n".into(), json!(n));
            }
            if let Some(f) = flag {
                doc.insert("flag".into(), json!(f));
            }
            if let Some(b) = blob {
                doc.insert("blob".into(), b);
            }
            doc
        })
}

async fn resources(t: &TestStore) -> Vec<(Behavior, Resource)> {
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    for behavior in Behavior::ALL {
        let config = ResourceConfig::new(format!("r-{behavior}"))
            .attribute("text", "string")
            .attribute("n", "number")
            .attribute("flag", "boolean")
            .attribute("blob", "json")
            .behavior(behavior);
        let r = db
            .create_resource(config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        out.push((behavior, r));
    }
    out
}

fn check_round_trip(t: &TestStore, docs: Vec<Map<String, Value>>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(async {
        let all = resources(t).await;
        for doc in docs {
            for (behavior, r) in &all {
                match r.insert(Value::Object(doc.clone())).await {
                    Ok(rec) => {
                        let got = r
                            .get(rec.id())
                            .await
                            .map_err(|e| TestCaseError::fail(format!("{behavior}: {e}")))?;
                        if *behavior == Behavior::TruncateData && got.data() != &doc {
                            // Allowed only when something was cut, and then only as a prefix.
                            let kept = got.get("text").and_then(Value::as_str).unwrap_or("");
                            let full = doc.get("text").and_then(Value::as_str).unwrap_or("");
                            prop_assert!(full.starts_with(kept), "{behavior}: not a prefix");
                        } else {
                            prop_assert_eq!(got.data(), &doc, "{} lost data", behavior);
                        }
                    }
                    Err(Error::MetadataLimit { .. }) if *behavior == Behavior::EnforceLimits => {}
                    Err(e) => return Err(TestCaseError::fail(format!("{behavior}: {e}"))),
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn documents_round_trip_on_memory(docs in prop::collection::vec(any_document(), 1..6)) {
        let t = TestStore::memory("roundtrip");
        check_round_trip(&t, docs)?;
    }

    #[test]
    fn documents_round_trip_on_file(docs in prop::collection::vec(any_document(), 1..6)) {
        let t = TestStore::file("roundtrip");
        check_round_trip(&t, docs)?;
    }
}
