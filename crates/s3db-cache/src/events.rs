//! Typed events of the plugin, broadcast as `Event::Plugin { event: PluginEvent::Custom { .. } }`.

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

/// Something the cache did. Broadcast through the database's events with the name
/// [`CacheEvent::name`] and the JSON payload of this value; read back with
/// [`CacheEvent::from_event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheEvent {
    /// A driver failed; the read fell through to the next tier or to the store.
    TierFailed {
        /// The driver.
        tier: String,
        /// What it was doing (`get`, `put`, `invalidate`, …).
        operation: String,
        /// The error.
        error: String,
    },
    /// Entries were dropped on request (`invalidate`).
    Invalidated {
        /// The resource.
        resource: String,
        /// The record, or `None` for all of the resource.
        id: Option<String>,
    },
    /// The cache was emptied (of one resource, or all).
    Cleared {
        /// The resource, or `None` for all.
        resource: Option<String>,
    },
    /// A resource was loaded into the cache.
    Warmed {
        /// The resource.
        resource: String,
        /// How many records.
        records: usize,
    },
}

impl CustomEvent for CacheEvent {
    /// The event's name: `cache.tier_failed`, `cache.invalidated`, `cache.cleared`,
    /// `cache.warmed`.
    fn name(&self) -> &'static str {
        match self {
            CacheEvent::TierFailed { .. } => "cache.tier_failed",
            CacheEvent::Invalidated { .. } => "cache.invalidated",
            CacheEvent::Cleared { .. } => "cache.cleared",
            CacheEvent::Warmed { .. } => "cache.warmed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3db_core::plugin::{Event, PluginEvent};

    #[test]
    fn events_round_trip() {
        let e = CacheEvent::Warmed {
            resource: "users".into(),
            records: 3,
        };
        let wrapped = Event::Plugin {
            plugin: "cache".into(),
            event: PluginEvent::Custom {
                name: e.name().into(),
                payload: e.payload(),
            },
        };
        assert_eq!(CacheEvent::from_plugin_event(&wrapped), Some(("cache", e)));
        assert_eq!(CacheEvent::from_event(&Event::Connected), None);
    }
}
