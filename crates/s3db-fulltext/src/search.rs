//! Searching: query options, BM25 scoring with field weights, results with their score.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use s3db_core::Record;
use s3db_core::plugin::{Error, Result};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::analysis::analyze;
use crate::index::{Index, parse_counts};
use crate::layout::encode;

/// BM25 term-frequency saturation.
pub const BM25_K1: f64 = 1.2;
/// BM25 length normalisation.
pub const BM25_B: f64 = 0.75;

/// How query terms combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatchMode {
    /// A record matching any query term is a result (ranked by score). The default.
    #[default]
    Any,
    /// A record must match every query term.
    All,
}

/// A search: the text, and how to match it.
///
/// ```
/// use s3db_fulltext::SearchQuery;
/// let q = SearchQuery::new("rust async").exact().fields(["title"]).limit(10).offset(20);
/// assert!(q.is_exact());
/// let q: SearchQuery = "rust".into(); // prefix match, every indexed field
/// assert!(!q.is_exact());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct SearchQuery {
    pub(crate) text: String,
    pub(crate) exact: bool,
    pub(crate) fields: Option<Vec<String>>,
    pub(crate) limit: Option<usize>,
    pub(crate) offset: usize,
    pub(crate) mode: MatchMode,
}

impl SearchQuery {
    /// A prefix search of `text` in every indexed field: each query term matches the indexed
    /// terms that start with it.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            exact: false,
            fields: None,
            limit: None,
            offset: 0,
            mode: MatchMode::Any,
        }
    }

    /// Query terms match only equal indexed terms.
    pub fn exact(mut self) -> Self {
        self.exact = true;
        self
    }

    /// Query terms match indexed terms that start with them (the default).
    pub fn prefix(mut self) -> Self {
        self.exact = false;
        self
    }

    /// Searches only these fields (each must be indexed).
    pub fn fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    /// At most this many results (default: the plugin's `max_results`).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips this many of the best results first.
    pub fn offset(mut self, n: usize) -> Self {
        self.offset = n;
        self
    }

    /// Every query term must match.
    pub fn match_all(mut self) -> Self {
        self.mode = MatchMode::All;
        self
    }

    /// How query terms combine.
    pub fn mode(mut self, mode: MatchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Whether terms must match exactly.
    #[must_use]
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// The text searched.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl From<&str> for SearchQuery {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for SearchQuery {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

/// One result: the record as it is now, and its score.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SearchHit {
    /// The record.
    pub record: Record,
    /// Its BM25 score (with field weights); higher is better.
    pub score: f64,
    /// The fields where query terms matched, in configuration order.
    pub matched_fields: Vec<String>,
}

/// A scored candidate before its record is read.
struct Candidate {
    id: String,
    score: f64,
}

impl Index {
    /// Runs a search on `resource`.
    pub(crate) async fn search(
        &self,
        resource: &str,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>> {
        let span = tracing::debug_span!("fulltext.search", resource, query = %query.text);
        self.search_in_span(resource, query).instrument(span).await
    }

    async fn search_in_span(&self, resource: &str, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        let config = self.config(resource)?;
        let fields: Vec<(String, f64)> = match &query.fields {
            None => config.fields().to_vec(),
            Some(asked) => {
                let mut out = Vec::new();
                for field in asked {
                    if !config.fields().iter().any(|(f, _)| f == field) {
                        return Err(self.error(Error::Refused {
                            operation: "fulltext search",
                            reason: format!(
                                "field {field} is not indexed for resource {resource} (indexed: {})",
                                config
                                    .fields()
                                    .iter()
                                    .map(|(f, _)| f.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        }));
                    }
                    out.push((field.clone(), config.weight(field)));
                }
                out
            }
        };
        let handle = self.resource(resource)?;
        let mut terms: Vec<String> = Vec::new();
        for t in self.tokenizer.tokens(&query.text) {
            if !terms.contains(&t) {
                terms.push(t);
            }
        }
        let limit = query.limit.unwrap_or(self.settings.max_results);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }

        // Shards to read.
        let mut keys = BTreeSet::new();
        for term in &terms {
            if !query.exact && self.layout.is_short(term) {
                keys.extend(self.shards_starting_with(resource, &encode(term)).await?);
            } else {
                keys.insert(
                    self.layout
                        .postings(resource, &self.layout.shard_of(term))?,
                );
            }
        }
        let keys: Vec<_> = keys.into_iter().collect();
        let (shards, lengths) =
            futures::try_join!(self.read_shards(&keys), self.all_lengths(resource))?;

        let scored = score(&terms, query, &fields, &shards, &lengths);
        let page: Vec<Candidate> = scored.into_iter().skip(query.offset).take(limit).collect();

        // Read the records; drop any the index still lists but that no longer match (a change
        // in flight): results are always records as they are now.
        let ids: Vec<String> = page.iter().map(|c| c.id.clone()).collect();
        let records = handle.get_many(&ids).await;
        let mut hits = Vec::with_capacity(page.len());
        for (candidate, record) in page.into_iter().zip(records) {
            let record = match record {
                Ok(r) => r,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(self.error(e)),
            };
            let analysis = analyze(config, &self.tokenizer, record.data());
            let mut matched_fields = BTreeSet::new();
            let mut matched_terms = 0;
            for q in &terms {
                let mut hit = false;
                for (term, per_field) in &analysis.postings {
                    if matches(term, q, query.exact) {
                        for (field, _) in &fields {
                            if per_field.contains_key(field) {
                                hit = true;
                                matched_fields.insert(field.clone());
                            }
                        }
                    }
                }
                matched_terms += usize::from(hit);
            }
            let ok = match query.mode {
                MatchMode::Any => matched_terms > 0,
                MatchMode::All => matched_terms == terms.len(),
            };
            if ok {
                hits.push(SearchHit {
                    record,
                    score: candidate.score,
                    matched_fields: config
                        .fields()
                        .iter()
                        .filter(|(f, _)| matched_fields.contains(f))
                        .map(|(f, _)| f.clone())
                        .collect(),
                });
            }
        }
        Ok(hits)
    }
}

fn matches(term: &str, query: &str, exact: bool) -> bool {
    if exact {
        term == query
    } else {
        term.starts_with(query)
    }
}

/// BM25 over the matching terms, summed over fields with their weights; best first, ties by id.
fn score(
    terms: &[String],
    query: &SearchQuery,
    fields: &[(String, f64)],
    shards: &[Map<String, Value>],
    lengths: &HashMap<String, BTreeMap<String, u32>>,
) -> Vec<Candidate> {
    #[allow(clippy::cast_precision_loss)]
    let n = lengths.len() as f64;
    let mut average: HashMap<&str, f64> = HashMap::new();
    for (field, _) in fields {
        let total: u64 = lengths
            .values()
            .map(|l| u64::from(l.get(field).copied().unwrap_or(0)))
            .sum();
        #[allow(clippy::cast_precision_loss)]
        let avg = if n > 0.0 { total as f64 / n } else { 0.0 };
        average.insert(field.as_str(), if avg > 0.0 { avg } else { 1.0 });
    }
    let mut scores: HashMap<String, f64> = HashMap::new();
    let mut matched: HashMap<String, usize> = HashMap::new();
    for q in terms {
        let mut docs_of_q: BTreeSet<String> = BTreeSet::new();
        for shard in shards {
            for (term, docs) in shard {
                if !matches(term, q, query.exact) {
                    continue;
                }
                let Some(docs) = docs.as_object() else {
                    continue;
                };
                let postings: Vec<(&String, BTreeMap<String, u32>)> = docs
                    .iter()
                    .map(|(id, per_field)| (id, parse_counts(per_field)))
                    .filter(|(_, per_field)| fields.iter().any(|(f, _)| per_field.contains_key(f)))
                    .collect();
                #[allow(clippy::cast_precision_loss)]
                let df = postings.len() as f64;
                let idf = (1.0 + (n.max(df) - df + 0.5) / (df + 0.5)).ln();
                for (id, per_field) in postings {
                    let mut s = 0.0;
                    for (field, weight) in fields {
                        let Some(tf) = per_field.get(field).copied() else {
                            continue;
                        };
                        let avg = average.get(field.as_str()).copied().unwrap_or(1.0);
                        let len = lengths
                            .get(id)
                            .and_then(|l| l.get(field))
                            .map_or(avg, |l| f64::from(*l));
                        let tf = f64::from(tf);
                        s += weight * idf * tf * (BM25_K1 + 1.0)
                            / (tf + BM25_K1 * (1.0 - BM25_B + BM25_B * len / avg));
                    }
                    *scores.entry(id.clone()).or_default() += s;
                    docs_of_q.insert(id.clone());
                }
            }
        }
        for id in docs_of_q {
            *matched.entry(id).or_default() += 1;
        }
    }
    let mut out: Vec<Candidate> = scores
        .into_iter()
        .filter(|(id, _)| match query.mode {
            MatchMode::Any => true,
            MatchMode::All => matched.get(id).copied().unwrap_or(0) == terms.len(),
        })
        .map(|(id, score)| Candidate { id, score })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    out
}
