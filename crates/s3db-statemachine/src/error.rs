//! Typed errors: [`DefinitionError`] for a machine or plugin configuration refused at
//! construction, [`StateMachineError`] for what `send` and the other operations refuse at run time.

use std::time::Duration;

use crate::PLUGIN_NAME;

/// A machine definition or plugin configuration refused at construction. Each variant names the
/// machine, state, event or setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DefinitionError {
    /// The plugin has no machine.
    #[error(
        "no state machine configured: add one with .machine(Machine::builder(\"id\", \"resource\")…)"
    )]
    NoMachines,
    /// Two machines share an id.
    #[error("state machine {machine:?} is defined twice")]
    DuplicateMachine {
        /// The machine id.
        machine: String,
    },
    /// Two machines write the same state field of the same resource.
    #[error(
        "machines {first:?} and {second:?} both keep their state in {resource}.{field}: give one another state_field"
    )]
    SharedStateField {
        /// The first machine.
        first: String,
        /// The second machine.
        second: String,
        /// The resource.
        resource: String,
        /// The field.
        field: String,
    },
    /// A name (machine id, resource, state field, state, event, trigger) is unusable.
    #[error("state machine {machine:?}: bad {what} {name:?}: {reason}")]
    BadName {
        /// The machine id.
        machine: String,
        /// What the name is of (`"machine id"`, `"state"`, `"event"`, …).
        what: &'static str,
        /// The name given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The machine has no state.
    #[error("state machine {machine:?} has no state: add some with .state(State::new(\"name\")…)")]
    NoStates {
        /// The machine id.
        machine: String,
    },
    /// No initial state was set.
    #[error("state machine {machine:?} has no initial state: set one with .initial(\"state\")")]
    NoInitialState {
        /// The machine id.
        machine: String,
    },
    /// The initial state is not one of the machine's states.
    #[error("state machine {machine:?}: the initial state {state:?} is not defined")]
    UnknownInitialState {
        /// The machine id.
        machine: String,
        /// The initial state given.
        state: String,
    },
    /// Two states share a name.
    #[error("state machine {machine:?}: state {state:?} is defined twice")]
    DuplicateState {
        /// The machine id.
        machine: String,
        /// The state.
        state: String,
    },
    /// A state handles the same event twice.
    #[error("state machine {machine:?}: state {state:?} handles event {event:?} twice")]
    DuplicateEvent {
        /// The machine id.
        machine: String,
        /// The state.
        state: String,
        /// The event.
        event: String,
    },
    /// A transition leads to a state that is not defined.
    #[error(
        "state machine {machine:?}: event {event:?} of state {state:?} leads to unknown state {target:?}"
    )]
    UnknownTarget {
        /// The machine id.
        machine: String,
        /// The state the transition leaves.
        state: String,
        /// The event.
        event: String,
        /// The undefined target.
        target: String,
    },
    /// No path of transitions leads from the initial state to this state.
    #[error(
        "state machine {machine:?}: state {state:?} cannot be reached from the initial state {initial:?}"
    )]
    UnreachableState {
        /// The machine id.
        machine: String,
        /// The unreachable state.
        state: String,
        /// The initial state.
        initial: String,
    },
    /// A final state has outgoing transitions.
    #[error("state machine {machine:?}: final state {state:?} has outgoing transitions {events:?}")]
    FinalStateWithTransitions {
        /// The machine id.
        machine: String,
        /// The final state.
        state: String,
        /// Its events.
        events: Vec<String>,
    },
    /// A state that is not final has no way out.
    #[error(
        "state machine {machine:?}: state {state:?} has no transition: mark it final with State::final_state"
    )]
    DeadEnd {
        /// The machine id.
        machine: String,
        /// The state.
        state: String,
    },
    /// A guard or trigger names an event its state does not handle.
    #[error(
        "state machine {machine:?}: {what} of state {state:?} names event {event:?}, which the state does not handle (it handles {valid:?})"
    )]
    UnknownEvent {
        /// The machine id.
        machine: String,
        /// The state.
        state: String,
        /// What names the event (`"guard"`, `"trigger"`).
        what: &'static str,
        /// The event.
        event: String,
        /// The events the state handles.
        valid: Vec<String>,
    },
    /// A cron pattern does not parse.
    #[error(
        "state machine {machine:?}: trigger {trigger:?} of state {state:?} has a bad cron pattern {pattern:?}: {reason}"
    )]
    BadCron {
        /// The machine id.
        machine: String,
        /// The state.
        state: String,
        /// The trigger id.
        trigger: String,
        /// The pattern.
        pattern: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A trigger is incomplete or contradictory.
    #[error("state machine {machine:?}: trigger {trigger:?} of state {state:?}: {reason}")]
    BadTrigger {
        /// The machine id.
        machine: String,
        /// The state.
        state: String,
        /// The trigger id.
        trigger: String,
        /// What to fix.
        reason: String,
    },
    /// A duration setting is out of range.
    #[error("{setting} {value:?} is out of range: {reason}")]
    BadDuration {
        /// The setting.
        setting: &'static str,
        /// What was given.
        value: Duration,
        /// The accepted range.
        reason: String,
    },
}

impl From<DefinitionError> for s3db_core::Error {
    fn from(e: DefinitionError) -> Self {
        s3db_core::Error::Refused {
            operation: "state machine plugin configuration",
            reason: e.to_string(),
        }
    }
}

/// What a guard, an action or a trigger condition may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An operation of the state machine plugin refused or failed at run time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateMachineError {
    /// No machine has this id.
    #[error("unknown state machine {machine:?} (defined: {defined:?})")]
    UnknownMachine {
        /// The id asked for.
        machine: String,
        /// The ids defined.
        defined: Vec<String>,
    },
    /// The machine has no such state.
    #[error("state machine {machine:?} has no state {state:?} (defined: {defined:?})")]
    UnknownState {
        /// The machine id.
        machine: String,
        /// The state asked for.
        state: String,
        /// The states defined.
        defined: Vec<String>,
    },
    /// The plugin is not installed in a database (or was uninstalled).
    #[error("the state machine plugin is not installed: db.use_plugin(plugin) first")]
    NotInstalled,
    /// The event is not valid in the entity's current state.
    #[error(
        "state machine {machine:?}: event {event:?} is not valid for entity {entity:?} in state {state:?}; valid events: {valid:?}"
    )]
    InvalidEvent {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// Its current state.
        state: String,
        /// The event sent.
        event: String,
        /// The events valid in `state`.
        valid: Vec<String>,
    },
    /// The guard of the transition said no.
    #[error(
        "state machine {machine:?}: the guard of event {event:?} refused entity {entity:?} in state {state:?}"
    )]
    GuardRejected {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// Its current state.
        state: String,
        /// The event.
        event: String,
    },
    /// The guard of the transition failed.
    #[error(
        "state machine {machine:?}: the guard of event {event:?} failed for entity {entity:?} in state {state:?}: {reason}"
    )]
    GuardFailed {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// Its current state.
        state: String,
        /// The event.
        event: String,
        /// The guard's error.
        reason: String,
    },
    /// The exit action of the current state failed: nothing was written.
    #[error(
        "state machine {machine:?}: the exit action of state {state:?} failed for entity {entity:?}: {reason}"
    )]
    ExitActionFailed {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// The state being left.
        state: String,
        /// The action's error.
        reason: String,
    },
    /// A trigger's condition or action failed.
    #[error(
        "state machine {machine:?}: trigger {trigger:?} failed for entity {entity:?}: {reason}"
    )]
    TriggerFailed {
        /// The machine id.
        machine: String,
        /// The trigger id.
        trigger: String,
        /// The entity.
        entity: String,
        /// What failed.
        reason: String,
    },
    /// The entity already has a state.
    #[error(
        "state machine {machine:?}: entity {entity:?} is already initialised (state {state:?})"
    )]
    AlreadyInitialized {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// Its state.
        state: String,
    },
    /// The entity's lock could not be taken in time.
    #[error(
        "state machine {machine:?}: entity {entity:?} is locked by another transition; gave up after {waited:?}"
    )]
    LockTimeout {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The entity's state changed under the transition (its lock lease expired and another
    /// transition won): nothing was written by this one.
    #[error(
        "state machine {machine:?}: the state of entity {entity:?} changed during the transition (lock lease expired?); nothing was written"
    )]
    Conflict {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
    },
    /// The entity id cannot be used as a key part.
    #[error("bad entity id {entity:?}: {reason}")]
    BadEntity {
        /// The entity id.
        entity: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored state does not decode.
    #[error("corrupt state of entity {entity:?} of machine {machine:?}: {reason}")]
    Corrupt {
        /// The machine id.
        machine: String,
        /// The entity.
        entity: String,
        /// What is wrong.
        reason: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] s3db_core::Error),
}

impl From<StateMachineError> for s3db_core::Error {
    fn from(e: StateMachineError) -> Self {
        match e {
            StateMachineError::Storage(e) => e,
            other => s3db_core::Error::Plugin {
                plugin: PLUGIN_NAME.to_owned(),
                source: Box::new(s3db_core::Error::Refused {
                    operation: "state machine",
                    reason: other.to_string(),
                }),
            },
        }
    }
}

/// Result of the plugin's run-time operations.
pub type Result<T, E = StateMachineError> = std::result::Result<T, E>;
