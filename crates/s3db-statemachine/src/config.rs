//! The plugin builder and its validation.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::StateMachinePlugin;
use crate::error::DefinitionError;
use crate::machine::{Machine, MachineBuilder};
use crate::transition::Settings;

/// Default lease of an entity's lock (renewed while guards and actions run).
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);
/// Default wait for an entity's lock in `send`, `initialize` and triggers.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default interval of date-trigger checks.
pub const DEFAULT_TRIGGER_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest lock lease accepted.
pub const MIN_LOCK_TTL: Duration = Duration::from_millis(100);
/// The shortest date-trigger check interval accepted.
pub const MIN_TRIGGER_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// Builds a [`StateMachinePlugin`]; [`StateMachineBuilder::build`] validates every machine.
///
/// ```
/// use std::time::Duration;
/// use s3db_statemachine::{Machine, State, StateMachinePlugin};
///
/// let plugin = StateMachinePlugin::builder()
///     .machine(
///         Machine::builder("order", "orders")
///             .initial("pending")
///             .state(State::new("pending").on("PAY", "paid"))
///             .state(State::final_state("paid")),
///     )
///     .lock_timeout(Duration::from_secs(5))
///     .build()?;
/// # drop(plugin);
/// # Ok::<(), s3db_statemachine::DefinitionError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StateMachineBuilder {
    machines: Vec<MachineBuilder>,
    lock_ttl: Duration,
    lock_timeout: Duration,
    trigger_check_interval: Duration,
}

impl Default for StateMachineBuilder {
    fn default() -> Self {
        Self {
            machines: Vec::new(),
            lock_ttl: DEFAULT_LOCK_TTL,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            trigger_check_interval: DEFAULT_TRIGGER_CHECK_INTERVAL,
        }
    }
}

impl StateMachineBuilder {
    /// Adds a machine.
    pub fn machine(mut self, machine: MachineBuilder) -> Self {
        self.machines.push(machine);
        self
    }

    /// Lease of an entity's lock (default 30 s, at least 100 ms). Keep it well above the clock
    /// skew between processes; it is renewed while guards and actions run.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long `send` waits for an entity's lock before [`crate::StateMachineError::LockTimeout`]
    /// (default 10 s; zero tries once).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How often date triggers are checked (default 60 s, at least 10 ms).
    pub fn trigger_check_interval(mut self, interval: Duration) -> Self {
        self.trigger_check_interval = interval;
        self
    }

    /// Validates and builds the plugin.
    ///
    /// # Errors
    /// A [`DefinitionError`]: no machine, a machine refused by [`MachineBuilder::build`], two
    /// machines with one id or sharing a state field, a duration out of range.
    pub fn build(self) -> Result<StateMachinePlugin, DefinitionError> {
        if self.machines.is_empty() {
            return Err(DefinitionError::NoMachines);
        }
        if self.lock_ttl < MIN_LOCK_TTL {
            return Err(DefinitionError::BadDuration {
                setting: "lock_ttl",
                value: self.lock_ttl,
                reason: format!("at least {MIN_LOCK_TTL:?}"),
            });
        }
        if self.trigger_check_interval < MIN_TRIGGER_CHECK_INTERVAL {
            return Err(DefinitionError::BadDuration {
                setting: "trigger_check_interval",
                value: self.trigger_check_interval,
                reason: format!("at least {MIN_TRIGGER_CHECK_INTERVAL:?}"),
            });
        }
        let mut machines: BTreeMap<String, Machine> = BTreeMap::new();
        for builder in self.machines {
            let machine = builder.build()?;
            if machines.contains_key(machine.id()) {
                return Err(DefinitionError::DuplicateMachine {
                    machine: machine.id().to_owned(),
                });
            }
            if let Some(other) = machines.values().find(|o| {
                o.resource() == machine.resource() && o.state_field() == machine.state_field()
            }) {
                return Err(DefinitionError::SharedStateField {
                    first: other.id().to_owned(),
                    second: machine.id().to_owned(),
                    resource: machine.resource().to_owned(),
                    field: machine.state_field().to_owned(),
                });
            }
            machines.insert(machine.id().to_owned(), machine);
        }
        Ok(StateMachinePlugin::from_parts(
            machines,
            Settings {
                lock_ttl: self.lock_ttl,
                lock_timeout: self.lock_timeout,
                trigger_check_interval: self.trigger_check_interval,
            },
        ))
    }
}
