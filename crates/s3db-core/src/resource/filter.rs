//! Query filters: exact matches and simple comparisons, combined with `and`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use super::record::Record;

/// A filter over records. Comparisons order numbers numerically and strings lexicographically;
/// values of different kinds never match a comparison.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Filter {
    /// `field == value` (`id` is a field too).
    Eq(String, Value),
    /// `field != value`.
    Ne(String, Value),
    /// `field > value`.
    Gt(String, Value),
    /// `field >= value`.
    Gte(String, Value),
    /// `field < value`.
    Lt(String, Value),
    /// `field <= value`.
    Lte(String, Value),
    /// `field` equals one of the values.
    In(String, Vec<Value>),
    /// Every filter matches.
    And(Vec<Filter>),
}

impl Filter {
    /// `field == value`.
    pub fn eq(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Eq(field.into(), value.into())
    }
    /// `field != value`.
    pub fn ne(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Ne(field.into(), value.into())
    }
    /// `field > value`.
    pub fn gt(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Gt(field.into(), value.into())
    }
    /// `field >= value`.
    pub fn gte(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Gte(field.into(), value.into())
    }
    /// `field < value`.
    pub fn lt(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Lt(field.into(), value.into())
    }
    /// `field <= value`.
    pub fn lte(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Lte(field.into(), value.into())
    }
    /// `field` in `values`.
    pub fn is_in(
        field: impl Into<String>,
        values: impl IntoIterator<Item = impl Into<Value>>,
    ) -> Self {
        Filter::In(field.into(), values.into_iter().map(Into::into).collect())
    }

    /// This filter and another.
    #[must_use]
    pub fn and(self, other: Filter) -> Self {
        match self {
            Filter::And(mut all) => {
                all.push(other);
                Filter::And(all)
            }
            first => Filter::And(vec![first, other]),
        }
    }

    /// Whether a record matches.
    #[must_use]
    pub fn matches(&self, record: &Record) -> bool {
        let field = |name: &str| -> Option<Value> {
            if name == "id" {
                Some(Value::String(record.id().to_owned()))
            } else {
                record.get(name).cloned()
            }
        };
        match self {
            Filter::Eq(f, v) => field(f).unwrap_or(Value::Null) == *v,
            Filter::Ne(f, v) => field(f).unwrap_or(Value::Null) != *v,
            Filter::Gt(f, v) => compare(field(f).as_ref(), v) == Some(Ordering::Greater),
            Filter::Gte(f, v) => matches!(
                compare(field(f).as_ref(), v),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Filter::Lt(f, v) => compare(field(f).as_ref(), v) == Some(Ordering::Less),
            Filter::Lte(f, v) => matches!(
                compare(field(f).as_ref(), v),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Filter::In(f, vs) => {
                let have = field(f).unwrap_or(Value::Null);
                vs.contains(&have)
            }
            Filter::And(all) => all.iter().all(|f| f.matches(record)),
        }
    }

    /// The fields this filter fixes to one value (top-level `Eq`s, also inside `And`).
    #[must_use]
    pub fn exact_values(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        self.collect_exact(&mut out);
        out
    }

    fn collect_exact(&self, out: &mut BTreeMap<String, Value>) {
        match self {
            Filter::Eq(f, v) => {
                out.insert(f.clone(), v.clone());
            }
            Filter::And(all) => all.iter().for_each(|f| f.collect_exact(out)),
            _ => {}
        }
    }
}

fn compare(have: Option<&Value>, want: &Value) -> Option<Ordering> {
    match (have?, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}
