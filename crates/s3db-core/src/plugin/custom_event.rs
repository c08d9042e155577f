//! A plugin's own typed events, broadcast as [`PluginEvent::Custom`] and read back typed.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resource::hooks::{Event, PluginEvent};

/// A plugin's own events: usually a serde enum (internally tagged), each variant named
/// `<plugin>.<what>`. [`PluginContext::emit_event`](super::PluginContext::emit_event) broadcasts
/// one as an [`Event::Plugin`] carrying a [`PluginEvent::Custom`] with that name and the event's
/// JSON as payload; [`CustomEvent::from_event`] reads it back from a subscription.
///
/// ```
/// use s3db_core::plugin::CustomEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// #[serde(tag = "type", rename_all = "snake_case")]
/// enum ExportEvent {
///     Exported { records: u64 },
///     Failed { error: String },
/// }
///
/// impl CustomEvent for ExportEvent {
///     fn name(&self) -> &'static str {
///         match self {
///             ExportEvent::Exported { .. } => "export.exported",
///             ExportEvent::Failed { .. } => "export.failed",
///         }
///     }
/// }
///
/// let event = ExportEvent::Exported { records: 3 };
/// assert_eq!(event.payload()["records"], 3);
/// ```
pub trait CustomEvent: Serialize + DeserializeOwned {
    /// The event's name, `<plugin>.<what>`.
    fn name(&self) -> &'static str;

    /// The payload broadcast with it: the event as JSON.
    fn payload(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The event inside a database event, with the name of the plugin that sent it: a custom
    /// plugin event whose payload reads as this type under the name it was sent with.
    fn from_plugin_event(event: &Event) -> Option<(&str, Self)> {
        let Event::Plugin {
            plugin,
            event: PluginEvent::Custom { name, payload },
        } = event
        else {
            return None;
        };
        let parsed = Self::deserialize(payload).ok()?;
        (parsed.name() == name).then_some((plugin.as_str(), parsed))
    }

    /// [`CustomEvent::from_plugin_event`] without the plugin's name.
    fn from_event(event: &Event) -> Option<Self> {
        Self::from_plugin_event(event).map(|(_, event)| event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Sample {
        Done { n: u32 },
        Other,
    }

    impl CustomEvent for Sample {
        fn name(&self) -> &'static str {
            match self {
                Sample::Done { .. } => "sample.done",
                Sample::Other => "sample.other",
            }
        }
    }

    fn wrapped(plugin: &str, name: &str, payload: Value) -> Event {
        Event::Plugin {
            plugin: plugin.to_owned(),
            event: PluginEvent::Custom {
                name: name.to_owned(),
                payload,
            },
        }
    }

    #[test]
    fn round_trips_and_refuses_what_is_not_its_own() {
        let event = Sample::Done { n: 2 };
        let sent = wrapped("sampler", event.name(), event.payload());
        assert_eq!(
            Sample::from_plugin_event(&sent),
            Some(("sampler", Sample::Done { n: 2 }))
        );
        assert_eq!(Sample::from_event(&sent), Some(Sample::Done { n: 2 }));
        // A payload under another name, a payload of another shape, another kind of event.
        let renamed = wrapped("sampler", "sample.other", event.payload());
        assert_eq!(Sample::from_event(&renamed), None);
        let foreign = wrapped("x", "sample.done", serde_json::json!({"type": "nope"}));
        assert_eq!(Sample::from_event(&foreign), None);
        assert_eq!(Sample::from_event(&Event::Connected), None);
    }
}
