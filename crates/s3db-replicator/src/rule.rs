//! Resource rules: which resource a replicator follows, under which name, which actions, and the
//! filter and transform its records go through.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use chrono::Utc;
use s3db_core::plugin::Document;
use serde_json::Value;

use crate::change::{Action, Change, strip};

/// Decides whether a record is replicated (given its data with its `id`, internal fields and
/// excluded secrets removed).
pub type Filter = Arc<dyn Fn(&Document) -> bool + Send + Sync>;

/// Rewrites a record before it is sent (given its data with its `id`); `None` skips it. An `id`
/// string in the result becomes the record's id on the target's side.
pub type Transform = Arc<dyn Fn(Document) -> Option<Document> + Send + Sync>;

/// What happens to `secret` attributes.
///
/// Secrets are decrypted by the source database when it reads a record; a replica cannot hold
/// them encrypted under the source's passphrase. So by default ([`SecretPolicy::Exclude`]) they
/// are removed from every payload and never leave the database. [`SecretPolicy::Replicate`]
/// sends their **plaintext** values: an `s3db` target whose resource declares them `secret`
/// encrypts them again under its own passphrase; an SQS queue or a webhook receives plaintext.
/// The failure log never stores secret values: a failed change of a resource whose secrets are
/// replicated is logged without them, and replayed from the record as it is then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecretPolicy {
    /// Secret attributes are removed from payloads (the default).
    #[default]
    Exclude,
    /// Secret attributes are sent as plaintext.
    Replicate,
}

/// One resource a replicator follows: `ResourceRule::new("users")`, or just `"users"`.
#[derive(Clone)]
pub struct ResourceRule {
    pub(crate) source: String,
    pub(crate) target: Option<String>,
    pub(crate) actions: BTreeSet<Action>,
    pub(crate) filter: Option<Filter>,
    pub(crate) transform: Option<Transform>,
    pub(crate) secrets: SecretPolicy,
}

impl fmt::Debug for ResourceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceRule")
            .field("source", &self.source)
            .field("target", &self.target)
            .field("actions", &self.actions)
            .field("filter", &self.filter.is_some())
            .field("transform", &self.transform.is_some())
            .field("secrets", &self.secrets)
            .finish()
    }
}

impl From<&str> for ResourceRule {
    fn from(name: &str) -> Self {
        ResourceRule::new(name)
    }
}

impl From<String> for ResourceRule {
    fn from(name: String) -> Self {
        ResourceRule::new(name)
    }
}

impl ResourceRule {
    /// Follows the resource `source`: every action, same name, no filter or transform, secrets
    /// excluded.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            target: None,
            actions: Action::ALL.into_iter().collect(),
            filter: None,
            transform: None,
            secrets: SecretPolicy::Exclude,
        }
    }

    /// Replicates under another resource name on the target's side.
    #[must_use]
    pub fn rename(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Replicates only these actions.
    #[must_use]
    pub fn actions(mut self, actions: impl IntoIterator<Item = Action>) -> Self {
        self.actions = actions.into_iter().collect();
        self
    }

    /// Replicates only records for which `filter` is true. An update of a record that passed
    /// before and no longer does is replicated as a delete, so that a mirror holds exactly the
    /// records that pass.
    #[must_use]
    pub fn filter(mut self, filter: impl Fn(&Document) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Rewrites records before they are sent; `None` skips the record (like a filter).
    #[must_use]
    pub fn transform(
        mut self,
        transform: impl Fn(Document) -> Option<Document> + Send + Sync + 'static,
    ) -> Self {
        self.transform = Some(Arc::new(transform));
        self
    }

    /// What happens to `secret` attributes (see [`SecretPolicy`]).
    #[must_use]
    pub fn secrets(mut self, policy: SecretPolicy) -> Self {
        self.secrets = policy;
        self
    }

    /// The source resource's name.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The resource's name on the target's side.
    #[must_use]
    pub fn target_name(&self) -> &str {
        self.target.as_deref().unwrap_or(&self.source)
    }

    /// A record's data as sent: stripped, with its `id`, filtered and transformed; the id on the
    /// target's side and the data without it. `None` when filtered out.
    fn shape(
        &self,
        id: &str,
        data: &Document,
        secret_paths: &[String],
    ) -> Option<(String, Document)> {
        let mut doc = data.clone();
        strip(
            &mut doc,
            secret_paths,
            self.secrets == SecretPolicy::Replicate,
        );
        doc.insert("id".to_owned(), Value::String(id.to_owned()));
        if let Some(filter) = &self.filter
            && !filter(&doc)
        {
            return None;
        }
        let mut doc = match &self.transform {
            Some(transform) => transform(doc)?,
            None => doc,
        };
        let id = match doc.remove("id") {
            Some(Value::String(new)) if !new.is_empty() => new,
            _ => id.to_owned(),
        };
        Some((id, doc))
    }

    /// The change to send for one operation on a record, if any.
    ///
    /// `before` / `after` are the record's data before and after (`None` when it did not exist
    /// or is not known).
    pub(crate) fn plan(
        &self,
        action: Action,
        id: &str,
        before: Option<&Document>,
        after: Option<&Document>,
        secret_paths: &[String],
    ) -> Option<Change> {
        if !self.actions.contains(&action) {
            return None;
        }
        let old = before.and_then(|d| self.shape(id, d, secret_paths));
        let new = after.and_then(|d| self.shape(id, d, secret_paths));
        let change = |action, id: String, data, before| Change {
            resource: self.target_name().to_owned(),
            source_resource: self.source.clone(),
            action,
            id,
            data,
            before,
            timestamp: Utc::now(),
        };
        match action {
            Action::Insert => new.map(|(id, data)| change(Action::Insert, id, Some(data), None)),
            Action::Update => match (new, old) {
                (Some((id, data)), old) => {
                    Some(change(Action::Update, id, Some(data), old.map(|(_, d)| d)))
                }
                // It passed before and no longer does: it leaves the replica.
                (None, Some((id, old))) => Some(change(Action::Delete, id, None, Some(old))),
                (None, None) => None,
            },
            Action::Delete => match (before, old) {
                (Some(_), Some((id, old))) => Some(change(Action::Delete, id, None, Some(old))),
                (Some(_), None) => None,
                // Not known: the delete goes through, without `before`.
                (None, _) => Some(change(Action::Delete, id.to_owned(), None, None)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Document {
        match v {
            Value::Object(m) => m,
            _ => Document::new(),
        }
    }

    #[test]
    fn plans_rename_filter_transform() {
        let rule = ResourceRule::new("users")
            .rename("people")
            .filter(|d| d.get("active") == Some(&json!(true)))
            .transform(|mut d| {
                d.insert("copied".into(), json!(1));
                Some(d)
            });
        let on = doc(json!({"name": "a", "active": true, "_v": "v1"}));
        let off = doc(json!({"name": "a", "active": false}));
        let c = rule
            .plan(Action::Insert, "u1", None, Some(&on), &[])
            .unwrap_or_else(|| panic!("replicated"));
        assert_eq!((c.resource.as_str(), c.id.as_str()), ("people", "u1"));
        assert_eq!(
            c.data.map(Value::Object),
            Some(json!({"name": "a", "active": true, "copied": 1}))
        );
        assert!(
            rule.plan(Action::Insert, "u1", None, Some(&off), &[])
                .is_none()
        );
        // Leaving the filter: a delete with the old record.
        let c = rule
            .plan(Action::Update, "u1", Some(&on), Some(&off), &[])
            .unwrap_or_else(|| panic!("a delete"));
        assert_eq!(c.action, Action::Delete);
        assert!(
            rule.plan(Action::Update, "u1", Some(&off), Some(&off), &[])
                .is_none()
        );
        // A delete of a record that never passed is not sent; one not known is.
        assert!(
            rule.plan(Action::Delete, "u1", Some(&off), None, &[])
                .is_none()
        );
        assert!(rule.plan(Action::Delete, "u1", None, None, &[]).is_some());
    }

    #[test]
    fn transform_may_skip_and_change_the_id() {
        let rule = ResourceRule::new("users").transform(|mut d| {
            if d.get("skip").is_some() {
                return None;
            }
            let id = format!(
                "x-{}",
                d.get("id").and_then(Value::as_str).unwrap_or_default()
            );
            d.insert("id".into(), json!(id));
            Some(d)
        });
        let c = rule.plan(Action::Insert, "1", None, Some(&doc(json!({"a": 1}))), &[]);
        assert_eq!(c.map(|c| c.id), Some("x-1".to_owned()));
        assert!(
            rule.plan(
                Action::Insert,
                "1",
                None,
                Some(&doc(json!({"skip": 1}))),
                &[]
            )
            .is_none()
        );
        let only_inserts = ResourceRule::new("users").actions([Action::Insert]);
        assert!(
            only_inserts
                .plan(Action::Delete, "1", None, None, &[])
                .is_none()
        );
    }
}
