//! Store-level metrics: every request of the database's store (through the core's request
//! accounting), by owner (resource, plugin storage, database metadata) and request kind.

use std::sync::Arc;

use s3db_core::RequestKind;
use s3db_core::store::{RequestEvent, RequestObserver};
use serde::{Deserialize, Serialize};

use crate::stats::{Agg, LatencySummary};
use crate::{FACADE_METADATA, Shared};

/// Who a store request was for, from its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "name", rename_all = "snake_case")]
pub enum StoreOwner {
    /// A resource's records, partitions or history (`resource=<name>/…`; internal `plg_*`
    /// resources too).
    Resource(String),
    /// A plugin's storage (`plugin=<slug>/…` or `resource=<r>/plugin=<slug>/…`).
    Plugin(String),
    /// The database's metadata (`s3db.json`).
    Database,
    /// Anything else (keys outside the database's prefix, listings of no namespace).
    Other,
}

impl StoreOwner {
    /// The owner of `key` (a full key, database prefix included) in the database under `prefix`.
    #[must_use]
    pub fn of(prefix: &str, key: &str) -> StoreOwner {
        OwnerRef::of(prefix, key).to_owned()
    }

    /// The `scope` label: `resource`, `plugin`, `database` or `other`.
    #[must_use]
    pub fn scope(&self) -> &'static str {
        match self {
            StoreOwner::Resource(_) => "resource",
            StoreOwner::Plugin(_) => "plugin",
            StoreOwner::Database => "database",
            StoreOwner::Other => "other",
        }
    }

    /// The `name` label: the resource or plugin slug (empty for the others).
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            StoreOwner::Resource(n) | StoreOwner::Plugin(n) => n,
            StoreOwner::Database | StoreOwner::Other => "",
        }
    }
}

/// [`StoreOwner`] borrowed from a key: found for every request without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum OwnerRef<'a> {
    Resource(&'a str),
    Plugin(&'a str),
    Database,
    Other,
}

impl<'a> OwnerRef<'a> {
    /// See [`StoreOwner::of`].
    pub(crate) fn of(prefix: &str, key: &'a str) -> Self {
        let rest = if prefix.is_empty() {
            Some(key)
        } else if key == prefix {
            Some("")
        } else {
            key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'))
        };
        let Some(rest) = rest else {
            return OwnerRef::Other;
        };
        if rest.is_empty() || rest == s3db_core::database::METADATA_KEY {
            return OwnerRef::Database;
        }
        let mut parts = rest.split('/');
        let first = parts.next().unwrap_or_default();
        if let Some(slug) = first.strip_prefix("plugin=").filter(|s| !s.is_empty()) {
            return OwnerRef::Plugin(slug);
        }
        if let Some(resource) = first.strip_prefix("resource=").filter(|r| !r.is_empty()) {
            if let Some(slug) = parts
                .next()
                .and_then(|p| p.strip_prefix("plugin="))
                .filter(|s| !s.is_empty())
            {
                return OwnerRef::Plugin(slug);
            }
            return OwnerRef::Resource(resource);
        }
        OwnerRef::Other
    }

    fn to_owned(self) -> StoreOwner {
        match self {
            OwnerRef::Resource(r) => StoreOwner::Resource(r.to_owned()),
            OwnerRef::Plugin(p) => StoreOwner::Plugin(p.to_owned()),
            OwnerRef::Database => StoreOwner::Database,
            OwnerRef::Other => StoreOwner::Other,
        }
    }
}

impl StoreOwner {
    /// The borrowed view (ordered as the owned one).
    fn as_ref(&self) -> OwnerRef<'_> {
        match self {
            StoreOwner::Resource(r) => OwnerRef::Resource(r),
            StoreOwner::Plugin(p) => OwnerRef::Plugin(p),
            StoreOwner::Database => OwnerRef::Database,
            StoreOwner::Other => OwnerRef::Other,
        }
    }
}

/// Requests of one kind for one owner.
#[derive(Debug, Clone, Default)]
pub(crate) struct KindStats {
    pub(crate) failures: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    /// Count and latency of every request (failed ones too).
    pub(crate) latency: Agg,
}

/// Per owner, per kind (in [`RequestKind::ALL`] order), sorted by owner; with the facade keys of
/// each (owner, kind, status), made once.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreTable {
    entries: Vec<OwnerEntry>,
}

#[derive(Debug, Clone)]
struct OwnerEntry {
    owner: StoreOwner,
    kinds: [KindStats; 7],
    facade: [Option<Arc<StoreKeys>>; 7],
}

/// The facade metric keys of one (owner, kind): built once, then handed to the recorder by
/// reference (no labels allocated per request).
#[derive(Debug)]
pub(crate) struct StoreKeys {
    requests: [metrics::Key; 2],
    duration: metrics::Key,
    sent: metrics::Key,
    received: metrics::Key,
}

impl StoreTable {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `(owner, kinds)` in owner order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&StoreOwner, &[KindStats; 7])> {
        self.entries.iter().map(|e| (&e.owner, &e.kinds))
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    fn entry(&mut self, owner: OwnerRef<'_>) -> &mut OwnerEntry {
        let at = match self
            .entries
            .binary_search_by(|e| e.owner.as_ref().cmp(&owner))
        {
            Ok(at) => at,
            Err(at) => {
                self.entries.insert(
                    at,
                    OwnerEntry {
                        owner: owner.to_owned(),
                        kinds: Default::default(),
                        facade: Default::default(),
                    },
                );
                at
            }
        };
        &mut self.entries[at]
    }
}

fn kind_index(kind: RequestKind) -> usize {
    RequestKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// The observer added to the store's request accounting.
pub(crate) struct Observer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) prefix: String,
}

impl RequestObserver for Observer {
    fn on_request(&self, event: &RequestEvent<'_>) {
        let owner = OwnerRef::of(&self.prefix, event.key);
        let nanos = u64::try_from(event.duration.as_nanos()).unwrap_or(u64::MAX);
        let kind = kind_index(event.kind);
        let keys = {
            let mut table = self.shared.store_table();
            let entry = table.entry(owner);
            let stats = &mut entry.kinds[kind];
            stats.latency.record(nanos, false);
            stats.failures += u64::from(!event.ok);
            stats.bytes_sent += event.bytes_sent;
            stats.bytes_received += event.bytes_received;
            self.shared.config.facade.then(|| {
                let slot = &mut entry.facade[kind];
                Arc::clone(slot.get_or_insert_with(|| {
                    Arc::new(self.shared.store_keys(&entry.owner, event.kind))
                }))
            })
        };
        if let Some(keys) = keys {
            emit_store_facade(&keys, event);
        }
    }
}

fn emit_store_facade(keys: &StoreKeys, event: &RequestEvent<'_>) {
    metrics::with_recorder(|recorder| {
        recorder
            .register_counter(&keys.requests[usize::from(!event.ok)], &FACADE_METADATA)
            .increment(1);
        recorder
            .register_histogram(&keys.duration, &FACADE_METADATA)
            .record(event.duration.as_secs_f64());
        if event.bytes_sent > 0 {
            recorder
                .register_counter(&keys.sent, &FACADE_METADATA)
                .increment(event.bytes_sent);
        }
        if event.bytes_received > 0 {
            recorder
                .register_counter(&keys.received, &FACADE_METADATA)
                .increment(event.bytes_received);
        }
    });
}

/// Store requests of one kind for one owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreRequestMetrics {
    /// Who the requests were for.
    pub owner: StoreOwner,
    /// The request kind.
    pub kind: RequestKind,
    /// How many.
    pub count: u64,
    /// Of which failed (not-found, already-exists and precondition answers included).
    pub failures: u64,
    /// Bytes sent to the store.
    pub bytes_sent: u64,
    /// Bytes received from the store.
    pub bytes_received: u64,
    /// Latency (pages of a listing after the first count as zero).
    pub latency: LatencySummary,
}

pub(crate) fn summarize(table: &StoreTable) -> Vec<StoreRequestMetrics> {
    table
        .iter()
        .flat_map(|(owner, kinds)| {
            kinds
                .iter()
                .zip(RequestKind::ALL)
                .filter(|(s, _)| s.latency.count > 0)
                .map(|(s, kind)| StoreRequestMetrics {
                    owner: owner.clone(),
                    kind,
                    count: s.latency.count,
                    failures: s.failures,
                    bytes_sent: s.bytes_sent,
                    bytes_received: s.bytes_received,
                    latency: s.latency.latency(),
                })
        })
        .collect()
}

impl Shared {
    pub(crate) fn store_table(&self) -> std::sync::MutexGuard<'_, StoreTable> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The facade keys of one (owner, kind).
    fn store_keys(&self, owner: &StoreOwner, kind: RequestKind) -> StoreKeys {
        use metrics::{Key, Label};
        let names = &self.metric_names;
        let base = || {
            vec![
                Label::new("scope", owner.scope()),
                Label::new("name", owner.name().to_owned()),
                Label::new("kind", kind.as_str()),
            ]
        };
        let with_status = |status: &'static str| {
            let mut labels = base();
            labels.push(Label::new("status", status));
            Key::from_parts(names.store_requests.clone(), labels)
        };
        StoreKeys {
            requests: [with_status("ok"), with_status("error")],
            duration: Key::from_parts(names.store_duration.clone(), base()),
            sent: Key::from_parts(names.store_sent.clone(), base()),
            received: Key::from_parts(names.store_received.clone(), base()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_of_keys() {
        let of = StoreOwner::of;
        assert_eq!(
            of("db", "db/resource=users/data/id=1"),
            StoreOwner::Resource("users".into())
        );
        assert_eq!(
            of("db", "db/resource=plg_metrics/data/id=1"),
            StoreOwner::Resource("plg_metrics".into())
        );
        assert_eq!(
            of("db", "db/plugin=cache/x"),
            StoreOwner::Plugin("cache".into())
        );
        assert_eq!(
            of("db", "db/resource=users/plugin=cache/x"),
            StoreOwner::Plugin("cache".into())
        );
        assert_eq!(of("db", "db/s3db.json"), StoreOwner::Database);
        assert_eq!(of("db", "db"), StoreOwner::Database);
        assert_eq!(of("db", "dbx/resource=u/data"), StoreOwner::Other);
        assert_eq!(of("", "resource=u"), StoreOwner::Resource("u".into()));
        assert_eq!(of("db", "db/resource="), StoreOwner::Other);
        assert_eq!(StoreOwner::Plugin("c".into()).scope(), "plugin");
        assert_eq!(StoreOwner::Database.name(), "");
    }
}
