//! Helpers shared by the full-text tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use s3db_core::{ConnectionString, Database, Record, Resource, ResourceConfig, Result};
use s3db_fulltext::{FullTextBuilder, FullTextPlugin, IndexedResource, Postings, Tokenizer};
use serde_json::Value;

pub type TestResult = Result<()>;

/// Articles: a title, a body and tags.
pub fn articles() -> ResourceConfig {
    ResourceConfig::new("articles")
        .attribute("title", "string|required")
        .attribute("body", "string")
        .attribute("tags", "array")
        .paranoid(false)
}

/// The indexed fields of articles: title (weight 2), body, tags.
pub fn indexed() -> IndexedResource {
    IndexedResource::new("articles")
        .weighted_field("title", 2.0)
        .field("body")
        .field("tags")
}

pub fn builder() -> FullTextBuilder {
    FullTextPlugin::builder().indexed(indexed())
}

pub fn plugin() -> FullTextPlugin {
    builder().build().unwrap_or_else(|e| panic!("plugin: {e}"))
}

/// A database with the plugin and the articles resource.
pub async fn open(conn: &ConnectionString, plugin: FullTextPlugin) -> Result<(Database, Resource)> {
    let db = Database::builder()
        .connection(conn.clone())
        .plugin(plugin)
        .connect()
        .await?;
    let articles = db.create_resource(articles()).await?;
    Ok((db, articles))
}

pub fn fulltext(db: &Database) -> std::sync::Arc<FullTextPlugin> {
    db.plugin::<FullTextPlugin>()
        .unwrap_or_else(|| panic!("installed"))
}

fn texts(value: Option<&Value>, out: &mut Vec<String>) {
    match value {
        Some(Value::String(s)) => out.push(s.clone()),
        Some(Value::Array(items)) => items.iter().for_each(|v| texts(Some(v), out)),
        Some(Value::Number(n)) => out.push(n.to_string()),
        _ => {}
    }
}

/// The postings the index should hold for these records, computed independently.
pub fn expected_postings(records: &[Record], fields: &[&str], tokenizer: &Tokenizer) -> Postings {
    let mut out = Postings::new();
    for record in records {
        for field in fields {
            let mut t = Vec::new();
            texts(record.get(field), &mut t);
            for text in t {
                for term in tokenizer.tokens(&text) {
                    *out.entry(term)
                        .or_default()
                        .entry(record.id().to_owned())
                        .or_default()
                        .entry((*field).to_owned())
                        .or_default() += 1;
                }
            }
        }
    }
    out
}

/// The ids a search must find, by scanning every record.
pub fn brute_force(
    records: &[Record],
    fields: &[&str],
    tokenizer: &Tokenizer,
    query: &str,
    exact: bool,
    all: bool,
) -> BTreeSet<String> {
    let q: BTreeSet<String> = tokenizer.tokens(query).into_iter().collect();
    let mut out = BTreeSet::new();
    if q.is_empty() {
        return out;
    }
    for record in records {
        let mut terms = BTreeSet::new();
        for field in fields {
            let mut t = Vec::new();
            texts(record.get(field), &mut t);
            for text in t {
                terms.extend(tokenizer.tokens(&text));
            }
        }
        let hit = |qt: &String| {
            terms.iter().any(|t| {
                if exact {
                    t == qt
                } else {
                    t.starts_with(qt.as_str())
                }
            })
        };
        let ok = if all {
            q.iter().all(hit)
        } else {
            q.iter().any(hit)
        };
        if ok {
            out.insert(record.id().to_owned());
        }
    }
    out
}

/// Checks the index of `articles` against its records: the raw postings, the record count, and
/// a few searches.
pub async fn assert_index_matches(db: &Database, articles: &Resource) -> TestResult {
    let plugin = fulltext(db);
    let records = articles.list().await?;
    let tokenizer = plugin.tokenizer();
    let fields = ["title", "body", "tags"];
    let expected = expected_postings(&records, &fields, &tokenizer);
    let actual = plugin.postings("articles", None).await?;
    assert_eq!(actual, expected, "postings differ from the records");
    let stats = plugin.stats("articles").await?;
    assert_eq!(stats.records, records.len(), "{stats:?}");
    assert_eq!(stats.terms, expected.len());
    assert_eq!(stats.pending, 0, "no write left unfinished");
    let mut words: BTreeSet<String> = expected.keys().take(3).cloned().collect();
    words.insert("zzz-nothing".into());
    for word in &words {
        for exact in [false, true] {
            let prefix: String = word.chars().take(3).collect();
            for q in [word.as_str(), prefix.as_str()] {
                let mut query = s3db_fulltext::SearchQuery::new(q).limit(10_000);
                if exact {
                    query = query.exact();
                }
                let found: BTreeSet<String> = plugin
                    .search("articles", query)
                    .await?
                    .into_iter()
                    .map(|h| h.record.id().to_owned())
                    .collect();
                assert_eq!(
                    found,
                    brute_force(&records, &fields, &tokenizer, q, exact, false),
                    "search {q:?} exact={exact}"
                );
            }
        }
    }
    Ok(())
}

/// A small vocabulary for random documents.
pub const WORDS: &[&str] = &[
    "rust",
    "rusty",
    "runtime",
    "bucket",
    "buckets",
    "object",
    "objects",
    "crème",
    "brûlée",
    "Émile",
    "zebra",
    "zeal",
    "async",
    "await",
    "tokio",
    "storage",
    "store",
    "stored",
    "index",
    "indexes",
    "search",
    "searching",
    "ab",
    "to",
    "the",
    "ÉTÉ",
    "naïve",
    "東京",
    "データ",
];

pub fn random_text(rng: &mut impl rand::Rng, max_words: usize) -> String {
    let n = rng.random_range(0..=max_words);
    (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(if rng.random_bool(0.5) { " " } else { ", " })
}

pub fn map_of(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}
