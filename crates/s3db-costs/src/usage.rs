//! [`Usage`]: counted requests and bytes, and who they belong to ([`Owner`]).

use std::collections::BTreeMap;

use s3db_core::RequestKind;
use s3db_core::store::RequestEvent;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::prices::slot;

/// Requests by kind and bytes moved, as counted (integers: nothing is estimated here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    #[serde(rename = "requests", serialize_with = "counts")]
    counts: [u64; 7],
    /// Requests that failed (counted above too: S3 bills them).
    pub failed: u64,
    /// Bytes sent to the store (request bodies): AWS's "data transfer in".
    pub bytes_in: u64,
    /// Bytes received from the store (response bodies): AWS's "data transfer out".
    pub bytes_out: u64,
}

fn counts<S: Serializer>(counts: &[u64; 7], serializer: S) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(counts.len()))?;
    for kind in RequestKind::ALL {
        map.serialize_entry(kind.as_str(), &counts[slot(kind)])?;
    }
    map.end()
}

impl Usage {
    /// Requests of one kind.
    #[must_use]
    pub fn count(&self, kind: RequestKind) -> u64 {
        self.counts[slot(kind)]
    }

    /// All requests.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.counts.iter().fold(0, |a, b| a.saturating_add(*b))
    }

    /// `(kind, count)` for every kind with a non-zero count, in [`RequestKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (RequestKind, u64)> + '_ {
        RequestKind::ALL
            .into_iter()
            .map(|k| (k, self.count(k)))
            .filter(|(_, n)| *n > 0)
    }

    /// Whether nothing was counted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    /// Adds `n` requests of `kind`.
    pub fn add_requests(&mut self, kind: RequestKind, n: u64) {
        let slot = &mut self.counts[slot(kind)];
        *slot = slot.saturating_add(n);
    }

    /// Adds another usage to this one.
    pub fn merge(&mut self, other: &Usage) {
        for kind in RequestKind::ALL {
            self.add_requests(kind, other.count(kind));
        }
        self.failed = self.failed.saturating_add(other.failed);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
    }

    pub(crate) fn record(&mut self, event: &RequestEvent<'_>) {
        self.add_requests(event.kind, 1);
        if !event.ok {
            self.failed = self.failed.saturating_add(1);
        }
        self.bytes_in = self.bytes_in.saturating_add(event.bytes_sent);
        self.bytes_out = self.bytes_out.saturating_add(event.bytes_received);
    }
}

/// Who a request belongs to, from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// `resource=<r>/…` (records, partitions, history; `plg_*` internal resources too).
    Resource(&'a str),
    /// `plugin=<slug>/…` or `resource=<r>/plugin=<slug>/…`: a plugin's `PluginStorage`.
    Plugin(&'a str),
    /// `s3db.json`, or a listing of the whole database.
    Database,
    /// Anything else: keys outside the database prefix (a store sharing the counters), keys in
    /// no namespace, failed deletes that name no key.
    Other,
}

impl<'a> Owner<'a> {
    /// The owner of `key` (a full key, database prefix included, as
    /// [`RequestEvent::key`] gives it) in the database under `prefix`.
    ///
    /// ```
    /// use s3db_costs::Owner;
    /// assert_eq!(Owner::of("app", "app/resource=users/data/id=1"), Owner::Resource("users"));
    /// assert_eq!(Owner::of("app", "app/plugin=cache/k"), Owner::Plugin("cache"));
    /// assert_eq!(Owner::of("app", "app/resource=users/plugin=cache/k"), Owner::Plugin("cache"));
    /// assert_eq!(Owner::of("app", "app/s3db.json"), Owner::Database);
    /// assert_eq!(Owner::of("app", "app"), Owner::Database);
    /// assert_eq!(Owner::of("app", "other/resource=users/data/id=1"), Owner::Other);
    /// assert_eq!(Owner::of("", "resource=users"), Owner::Resource("users"));
    /// ```
    #[must_use]
    pub fn of(prefix: &str, key: &'a str) -> Owner<'a> {
        let rest = if prefix.is_empty() {
            key
        } else if key == prefix {
            ""
        } else {
            match key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
            {
                Some(rest) => rest,
                None => return Owner::Other,
            }
        };
        if rest.is_empty() || rest == s3db_core::database::METADATA_KEY {
            return Owner::Database;
        }
        let mut parts = rest.split('/');
        let first = parts.next().unwrap_or_default();
        if let Some(slug) = first.strip_prefix("plugin=").filter(|s| !s.is_empty()) {
            return Owner::Plugin(slug);
        }
        if let Some(resource) = first.strip_prefix("resource=").filter(|r| !r.is_empty()) {
            if let Some(slug) = parts
                .next()
                .and_then(|second| second.strip_prefix("plugin="))
                .filter(|s| !s.is_empty())
            {
                return Owner::Plugin(slug);
            }
            return Owner::Resource(resource);
        }
        Owner::Other
    }
}

/// Usage of one window, split by owner. Every request is in `total` and in exactly one of the
/// owners.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) total: Usage,
    pub(crate) by_resource: BTreeMap<String, Usage>,
    pub(crate) by_plugin: BTreeMap<String, Usage>,
    pub(crate) database: Usage,
    pub(crate) other: Usage,
}

impl Tally {
    pub(crate) fn record(&mut self, prefix: &str, event: &RequestEvent<'_>) {
        self.total.record(event);
        // A failed delete that names no key has an empty key, like a listing of a whole database
        // without prefix: it is not the database's.
        let owner = if event.key.is_empty() && event.kind == RequestKind::Delete {
            Owner::Other
        } else {
            Owner::of(prefix, event.key)
        };
        match owner {
            Owner::Resource(name) => record_for(&mut self.by_resource, name, event),
            Owner::Plugin(slug) => record_for(&mut self.by_plugin, slug, event),
            Owner::Database => self.database.record(event),
            Owner::Other => self.other.record(event),
        }
    }
}

/// Records into the entry for `name`, allocating its key only the first time.
fn record_for(map: &mut BTreeMap<String, Usage>, name: &str, event: &RequestEvent<'_>) {
    match map.get_mut(name) {
        Some(usage) => usage.record(event),
        None => {
            let mut usage = Usage::default();
            usage.record(event);
            map.insert(name.to_owned(), usage);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn event(kind: RequestKind, key: &str) -> RequestEvent<'_> {
        RequestEvent {
            kind,
            key,
            bytes_sent: 3,
            bytes_received: 5,
            duration: Duration::ZERO,
            ok: kind != RequestKind::Head,
        }
    }

    #[test]
    fn owners_of_keys() {
        let of = Owner::of;
        assert_eq!(of("db", "db/resource=u/data/id=1"), Owner::Resource("u"));
        assert_eq!(of("db", "db/resource=u"), Owner::Resource("u"));
        assert_eq!(
            of("db", "db/resource=plg_x/data/id=1"),
            Owner::Resource("plg_x")
        );
        assert_eq!(of("db", "db/resource=u/plugin=c/x"), Owner::Plugin("c"));
        assert_eq!(of("db", "db/resource=u/plugin="), Owner::Resource("u"));
        assert_eq!(of("db", "db/plugin=c"), Owner::Plugin("c"));
        assert_eq!(of("db", "db/s3db.json"), Owner::Database);
        assert_eq!(of("db", "db/s3db.json.bak"), Owner::Other);
        assert_eq!(of("db", "db"), Owner::Database);
        assert_eq!(of("db", "dbx/resource=u/data/id=1"), Owner::Other);
        assert_eq!(of("db", "resource=u/data/id=1"), Owner::Other);
        assert_eq!(of("db", "db/resource="), Owner::Other);
        assert_eq!(of("a/b", "a/b/plugin=c/k"), Owner::Plugin("c"));
        assert_eq!(of("", "s3db.json"), Owner::Database);
        assert_eq!(of("", ""), Owner::Database);
        assert_eq!(of("", "misc"), Owner::Other);
    }

    #[test]
    fn every_request_lands_in_exactly_one_owner() {
        let mut tally = Tally::default();
        for (kind, key) in [
            (RequestKind::Put, "resource=u/data/id=1"),
            (RequestKind::Get, "resource=u/data/id=1"),
            (RequestKind::Head, "resource=u/data/id=2"),
            (RequestKind::Put, "plugin=c/k"),
            (RequestKind::List, ""),
            (RequestKind::Delete, ""),
            (RequestKind::Copy, "elsewhere/k"),
        ] {
            tally.record("", &event(kind, key));
        }
        assert_eq!(tally.total.requests(), 7);
        assert_eq!(tally.total.failed, 1);
        assert_eq!(tally.total.bytes_in, 21);
        assert_eq!(tally.total.bytes_out, 35);
        assert_eq!(tally.by_resource["u"].requests(), 3);
        assert_eq!(tally.by_resource["u"].failed, 1);
        assert_eq!(tally.by_plugin["c"].count(RequestKind::Put), 1);
        assert_eq!(
            tally.database.count(RequestKind::List),
            1,
            "a whole listing"
        );
        assert_eq!(
            tally.other.count(RequestKind::Delete),
            1,
            "a delete naming no key is not the database's"
        );
        assert_eq!(tally.other.count(RequestKind::Copy), 1);
        let mut sum = tally.database;
        sum.merge(&tally.other);
        for usage in tally.by_resource.values().chain(tally.by_plugin.values()) {
            sum.merge(usage);
        }
        assert_eq!(sum, tally.total);
    }
}
