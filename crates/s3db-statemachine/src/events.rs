//! The plugin's own events, broadcast as `Event::Plugin { plugin: "state-machine", event:
//! PluginEvent::Custom { name, payload } }` and read back typed with
//! [`StateMachineEvent::from_event`].

use s3db_core::plugin::CustomEvent;
use serde::{Deserialize, Serialize};

use crate::transition::Transition;

/// What the state machine plugin reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateMachineEvent {
    /// An entity changed state.
    Transitioned {
        /// The transition.
        transition: Transition,
    },
    /// An entity was initialised.
    Initialized {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// Its (initial) state.
        state: String,
    },
    /// An entry action failed (the transition stays: it was stored before).
    EntryActionFailed {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// The state entered.
        state: String,
        /// The action's error.
        error: String,
    },
    /// A trigger fired for an entity.
    TriggerFired {
        /// The machine id.
        machine: String,
        /// The trigger id.
        trigger: String,
        /// The entity.
        entity: String,
        /// The event it sent, if it sent one (else it ran its action).
        sent: Option<String>,
    },
    /// A trigger failed for an entity (its condition or action failed, or the event it sent
    /// was refused).
    TriggerFailed {
        /// The machine id.
        machine: String,
        /// The trigger id.
        trigger: String,
        /// The entity, when the failure concerns one.
        entity: Option<String>,
        /// The error.
        error: String,
    },
}

impl CustomEvent for StateMachineEvent {
    /// The custom event name (`state_machine.transitioned`, …).
    fn name(&self) -> &'static str {
        match self {
            StateMachineEvent::Transitioned { .. } => "state_machine.transitioned",
            StateMachineEvent::Initialized { .. } => "state_machine.initialized",
            StateMachineEvent::EntryActionFailed { .. } => "state_machine.entry_action_failed",
            StateMachineEvent::TriggerFired { .. } => "state_machine.trigger_fired",
            StateMachineEvent::TriggerFailed { .. } => "state_machine.trigger_failed",
        }
    }
}
