//! Typed events of the plugin, broadcast as `Event::Plugin { event: PluginEvent::Custom { .. } }`.

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

/// Something the full-text plugin did. Broadcast through the database's events with the name
/// [`FullTextEvent::name`] and the JSON payload of this value; read back with
/// [`FullTextEvent::from_event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FullTextEvent {
    /// The index of a resource was rebuilt from its records.
    Rebuilt {
        /// The resource.
        resource: String,
        /// How many records were indexed.
        records: usize,
    },
    /// The index of a resource was emptied.
    Cleared {
        /// The resource.
        resource: String,
    },
    /// Unfinished index changes (of writers that crashed) were redone.
    Recovered {
        /// The resource.
        resource: String,
        /// How many records were re-applied.
        records: usize,
    },
    /// The index change of a write failed (the write itself happened; its pending marker stays
    /// and the change is redone by recovery).
    IndexFailed {
        /// The resource.
        resource: String,
        /// The record.
        id: String,
        /// The error.
        error: String,
    },
}

impl CustomEvent for FullTextEvent {
    /// The event's name: `fulltext.rebuilt`, `fulltext.cleared`, `fulltext.recovered`,
    /// `fulltext.index_failed`.
    fn name(&self) -> &'static str {
        match self {
            FullTextEvent::Rebuilt { .. } => "fulltext.rebuilt",
            FullTextEvent::Cleared { .. } => "fulltext.cleared",
            FullTextEvent::Recovered { .. } => "fulltext.recovered",
            FullTextEvent::IndexFailed { .. } => "fulltext.index_failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3db_core::plugin::{Event, PluginEvent};

    #[test]
    fn round_trips_through_a_database_event() {
        let event = FullTextEvent::Rebuilt {
            resource: "docs".into(),
            records: 3,
        };
        let wrapped = Event::Plugin {
            plugin: "fulltext".into(),
            event: PluginEvent::Custom {
                name: event.name().into(),
                payload: event.payload(),
            },
        };
        assert_eq!(
            FullTextEvent::from_plugin_event(&wrapped),
            Some(("fulltext", event))
        );
    }
}
