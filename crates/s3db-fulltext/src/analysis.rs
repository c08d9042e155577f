//! What a record contributes to the index: per term and field, its occurrences; per field, its
//! length in terms.

use std::collections::BTreeMap;

use s3db_core::Document;
use serde_json::Value;

use crate::config::IndexedResource;
use crate::tokenizer::Tokenizer;

/// term → field → occurrences.
pub(crate) type Postings = BTreeMap<String, BTreeMap<String, u32>>;

/// The analysed content of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Analysis {
    pub(crate) postings: Postings,
    /// field → number of terms (every configured field, 0 when absent).
    pub(crate) lengths: BTreeMap<String, u32>,
}

/// Analyses the configured fields of `data`.
pub(crate) fn analyze(
    config: &IndexedResource,
    tokenizer: &Tokenizer,
    data: &Document,
) -> Analysis {
    let mut analysis = Analysis::default();
    for (field, _) in config.fields() {
        let mut length = 0u32;
        for text in field_texts(data, field) {
            for term in tokenizer.tokens(&text) {
                length = length.saturating_add(1);
                let count = analysis
                    .postings
                    .entry(term)
                    .or_default()
                    .entry(field.clone())
                    .or_default();
                *count = count.saturating_add(1);
            }
        }
        analysis.lengths.insert(field.clone(), length);
    }
    analysis
}

/// The texts of a field (a dotted path) of a document.
pub(crate) fn field_texts(data: &Document, path: &str) -> Vec<String> {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return Vec::new();
    };
    let mut value = data.get(first);
    for part in parts {
        value = value.and_then(|v| v.get(part));
    }
    let mut out = Vec::new();
    if let Some(value) = value {
        collect(value, &mut out);
    }
    out
}

fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push(s.clone()),
        Value::Bool(_) | Value::Number(_) => out.push(value.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect(v, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_terms_per_field() {
        let config = IndexedResource::new("a")
            .field("title")
            .field("tags")
            .field("meta.author");
        let data = json!({
            "title": "Rust rust RUST book",
            "tags": ["rust", "async"],
            "meta": {"author": "Ferris Crab"},
            "other": "ignored words"
        });
        let data = data.as_object().cloned().unwrap_or_default();
        let a = analyze(&config, &Tokenizer::new(3, false), &data);
        assert_eq!(a.postings["rust"]["title"], 3);
        assert_eq!(a.postings["rust"]["tags"], 1);
        assert_eq!(a.postings["ferris"]["meta.author"], 1);
        assert!(!a.postings.contains_key("ignored"));
        assert_eq!(a.lengths["title"], 4);
        assert_eq!(a.lengths["tags"], 2);
        assert_eq!(a.lengths["meta.author"], 2);
    }
}
