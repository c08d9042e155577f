//! [`MachineHandle`]: one machine of an installed plugin, and its operations on entities.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Result, StateMachineError};
use crate::machine::Machine;
use crate::transition::{Runtime, Transition};

/// One machine of an installed [`crate::StateMachinePlugin`]. Cheap to clone; get it with
/// [`crate::StateMachinePlugin::machine`].
#[derive(Clone)]
pub struct MachineHandle {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) machine: Machine,
}

impl fmt::Debug for MachineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineHandle")
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

impl MachineHandle {
    /// The machine's definition.
    #[must_use]
    pub fn definition(&self) -> &Machine {
        &self.machine
    }

    /// Sends `event` to `entity` with `context` (given to guards and actions, kept in the log):
    /// under the entity's lock, checks the event is valid in its current state, runs the guard
    /// and the exit action, stores the new state with a conditional write, logs the transition,
    /// runs the entry action, updates the record's state field and emits
    /// [`crate::StateMachineEvent::Transitioned`]. An entity never initialised is in the initial
    /// state.
    ///
    /// # Errors
    /// [`StateMachineError::InvalidEvent`] (with the valid events), `GuardRejected`,
    /// `GuardFailed`, `ExitActionFailed` (nothing written), `LockTimeout`, `Conflict`,
    /// `BadEntity`, storage errors.
    pub async fn send(&self, entity: &str, event: &str, context: Value) -> Result<Transition> {
        self.runtime
            .send(&self.machine, entity, event, context)
            .await
    }

    /// Stores the initial state of `entity`, runs the initial state's entry action and writes
    /// the record's state field (entities are also in the initial state without this; triggers
    /// only see entities that were initialised or made a transition).
    ///
    /// # Errors
    /// [`StateMachineError::AlreadyInitialized`] if it has a state; `LockTimeout`, storage errors.
    pub async fn initialize(&self, entity: &str, context: Value) -> Result<()> {
        self.runtime
            .initialize(&self.machine, entity, context)
            .await
    }

    /// The entity's current state (the initial state if it never had one).
    ///
    /// # Errors
    /// `BadEntity`, storage errors.
    pub async fn state(&self, entity: &str) -> Result<String> {
        self.runtime.state(&self.machine, entity).await
    }

    /// The events valid in the entity's current state, sorted.
    ///
    /// # Errors
    /// As [`MachineHandle::state`].
    pub async fn valid_events(&self, entity: &str) -> Result<Vec<String>> {
        let state = self.state(entity).await?;
        Ok(self.machine.events_of(&state))
    }

    /// The entity's transitions, oldest first.
    ///
    /// # Errors
    /// `BadEntity`, `Corrupt`, storage errors.
    pub async fn history(&self, entity: &str) -> Result<Vec<Transition>> {
        self.runtime.history(&self.machine, entity).await
    }

    /// The machine as a Graphviz DOT digraph ([`Machine::visualize`]).
    #[must_use]
    pub fn visualize(&self) -> String {
        self.machine.visualize()
    }

    /// The ids of the entities the index lists in `state` (what cron and date triggers visit;
    /// may briefly include an entity that just left it).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn entities_in(&self, state: &str) -> Result<Vec<String>> {
        if !self.machine.states().iter().any(|s| s == state) {
            return Err(StateMachineError::UnknownState {
                machine: self.machine.id().to_owned(),
                state: state.to_owned(),
                defined: self.machine.states().to_vec(),
            });
        }
        crate::scheduler::entities_in(&self.runtime, &self.machine, state).await
    }
}
