#![doc = include_str!("../README.md")]

mod action;
mod config;
mod entity;
mod error;
mod events;
mod handle;
mod machine;
mod scheduler;
mod transition;
mod trigger;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use s3db_core::plugin::{Plugin, PluginContext, async_trait};
use serde_json::Value;

pub use crate::action::{
    Action, Condition, Guard, TransitionContext, TriggerAction, TriggerContext,
};
pub use crate::config::{
    DEFAULT_LOCK_TIMEOUT, DEFAULT_LOCK_TTL, DEFAULT_TRIGGER_CHECK_INTERVAL, MIN_LOCK_TTL,
    MIN_TRIGGER_CHECK_INTERVAL, StateMachineBuilder,
};
pub use crate::error::{BoxError, DefinitionError, Result, StateMachineError};
pub use crate::events::StateMachineEvent;
pub use crate::handle::MachineHandle;
pub use crate::machine::{DEFAULT_STATE_FIELD, Machine, MachineBuilder, State};
pub use crate::transition::{TRANSITIONS_RESOURCE, Transition};
pub use crate::trigger::{DateSource, Trigger, WriteKind};

use crate::transition::{Runtime, Settings};

/// The plugin's name (and storage slug).
pub const PLUGIN_NAME: &str = "state-machine";

/// The state machine plugin. Build it with [`StateMachinePlugin::builder`]; find it again with
/// `db.plugin::<StateMachinePlugin>()`.
pub struct StateMachinePlugin {
    machines: BTreeMap<String, Machine>,
    settings: Settings,
    runtime: Mutex<Option<Arc<Runtime>>>,
}

impl std::fmt::Debug for StateMachinePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachinePlugin")
            .field("machines", &self.machines)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StateMachinePlugin {
    /// A builder with validated configuration.
    pub fn builder() -> StateMachineBuilder {
        StateMachineBuilder::default()
    }

    pub(crate) fn from_parts(machines: BTreeMap<String, Machine>, settings: Settings) -> Self {
        Self {
            machines,
            settings,
            runtime: Mutex::new(None),
        }
    }

    /// The machine ids.
    #[must_use]
    pub fn machines(&self) -> Vec<String> {
        self.machines.keys().cloned().collect()
    }

    /// The handle of machine `id`.
    ///
    /// # Errors
    /// [`StateMachineError::UnknownMachine`]; [`StateMachineError::NotInstalled`] before
    /// install or after uninstall.
    pub fn machine(&self, id: &str) -> Result<MachineHandle> {
        let machine =
            self.machines
                .get(id)
                .cloned()
                .ok_or_else(|| StateMachineError::UnknownMachine {
                    machine: id.to_owned(),
                    defined: self.machines(),
                })?;
        let runtime = lock(&self.runtime)
            .clone()
            .ok_or(StateMachineError::NotInstalled)?;
        Ok(MachineHandle { runtime, machine })
    }

    /// Sends `event` to `entity` of machine `machine` ([`MachineHandle::send`]).
    ///
    /// # Errors
    /// As [`MachineHandle::send`], and [`StateMachinePlugin::machine`]'s.
    pub async fn send(
        &self,
        machine: &str,
        entity: &str,
        event: &str,
        context: Value,
    ) -> Result<Transition> {
        self.machine(machine)?.send(entity, event, context).await
    }

    /// The entity's current state ([`MachineHandle::state`]).
    ///
    /// # Errors
    /// As [`MachineHandle::state`].
    pub async fn state(&self, machine: &str, entity: &str) -> Result<String> {
        self.machine(machine)?.state(entity).await
    }

    /// The events valid for the entity now ([`MachineHandle::valid_events`]).
    ///
    /// # Errors
    /// As [`MachineHandle::valid_events`].
    pub async fn valid_events(&self, machine: &str, entity: &str) -> Result<Vec<String>> {
        self.machine(machine)?.valid_events(entity).await
    }

    /// The entity's transitions ([`MachineHandle::history`]).
    ///
    /// # Errors
    /// As [`MachineHandle::history`].
    pub async fn history(&self, machine: &str, entity: &str) -> Result<Vec<Transition>> {
        self.machine(machine)?.history(entity).await
    }

    /// Initialises the entity ([`MachineHandle::initialize`]).
    ///
    /// # Errors
    /// As [`MachineHandle::initialize`].
    pub async fn initialize(&self, machine: &str, entity: &str, context: Value) -> Result<()> {
        self.machine(machine)?.initialize(entity, context).await
    }

    /// The machine as Graphviz DOT ([`Machine::visualize`]); works before install too.
    ///
    /// # Errors
    /// [`StateMachineError::UnknownMachine`].
    pub fn visualize(&self, machine: &str) -> Result<String> {
        self.machines
            .get(machine)
            .map(Machine::visualize)
            .ok_or_else(|| StateMachineError::UnknownMachine {
                machine: machine.to_owned(),
                defined: self.machines(),
            })
    }
}

#[async_trait]
impl Plugin for StateMachinePlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    async fn install(&self, cx: &PluginContext) -> s3db_core::Result<()> {
        cx.create_resource(transition::log_resource_config())
            .await?;
        let runtime = Runtime::new(cx.clone(), self.settings, self.machines.clone());
        *lock(&self.runtime) = Some(Arc::new(runtime));
        tracing::info!(
            machines = self.machines.len(),
            "state machine plugin installed"
        );
        Ok(())
    }

    async fn start(&self, _cx: &PluginContext) -> s3db_core::Result<()> {
        let runtime = lock(&self.runtime).clone();
        if let Some(runtime) = runtime {
            scheduler::start(&runtime)?;
        }
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> s3db_core::Result<()> {
        if let Some(runtime) = lock(&self.runtime).take() {
            runtime.active.store(false, Ordering::SeqCst);
        }
        Ok(())
    }
}
