//! Machine definitions: states, transitions, guards, actions and triggers, validated when built.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::action::{
    Action, ActionFn, FnAdapter, Guard, SharedAction, SharedGuard, TransitionContext,
};
use crate::error::{BoxError, DefinitionError};
use crate::trigger::{CompiledKind, CompiledTrigger, Effect, Trigger, TriggerKind, parse_cron};

/// The state field used when none is set (as the original).
pub const DEFAULT_STATE_FIELD: &str = "status";

/// One state of a machine: its transitions (`on: event → target`), guards, entry and exit
/// actions and triggers.
#[derive(Clone)]
pub struct State {
    name: String,
    is_final: bool,
    on: Vec<(String, String)>,
    guards: Vec<(String, SharedGuard)>,
    entry: Option<SharedAction>,
    exit: Option<SharedAction>,
    triggers: Vec<Trigger>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("name", &self.name)
            .field("final", &self.is_final)
            .field("on", &self.on)
            .field(
                "guards",
                &self.guards.iter().map(|(e, _)| e).collect::<Vec<_>>(),
            )
            .field("entry", &self.entry.is_some())
            .field("exit", &self.exit.is_some())
            .field("triggers", &self.triggers)
            .finish()
    }
}

impl State {
    /// A state named `name`.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            is_final: false,
            on: Vec::new(),
            guards: Vec::new(),
            entry: None,
            exit: None,
            triggers: Vec::new(),
        }
    }

    /// A final state: no transition leaves it.
    #[must_use]
    pub fn final_state(name: impl Into<String>) -> Self {
        let mut s = Self::new(name);
        s.is_final = true;
        s
    }

    /// On `event`, go to `target`.
    #[must_use]
    pub fn on(mut self, event: impl Into<String>, target: impl Into<String>) -> Self {
        self.on.push((event.into(), target.into()));
        self
    }

    /// The transition on `event` happens only if `guard` answers `Ok(true)`.
    #[must_use]
    pub fn guard<F, Fut>(self, event: impl Into<String>, guard: F) -> Self
    where
        F: Fn(TransitionContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<bool, BoxError>> + Send + 'static,
    {
        self.guard_with(event, FnAdapter(guard))
    }

    /// The transition on `event` happens only if the [`Guard`] allows it.
    #[must_use]
    pub fn guard_with(mut self, event: impl Into<String>, guard: impl Guard) -> Self {
        self.guards.push((event.into(), Arc::new(guard)));
        self
    }

    /// Runs `action` after the entity entered this state (the transition is already stored: a
    /// failing entry action is reported, not undone).
    #[must_use]
    pub fn entry<F, Fut>(self, action: F) -> Self
    where
        F: Fn(TransitionContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.entry_with(ActionFn(action))
    }

    /// Runs an [`Action`] after the entity entered this state.
    #[must_use]
    pub fn entry_with(mut self, action: impl Action) -> Self {
        self.entry = Some(Arc::new(action));
        self
    }

    /// Runs `action` before the entity leaves this state; if it fails, the transition does not
    /// happen.
    #[must_use]
    pub fn exit<F, Fut>(self, action: F) -> Self
    where
        F: Fn(TransitionContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.exit_with(ActionFn(action))
    }

    /// Runs an [`Action`] before the entity leaves this state.
    #[must_use]
    pub fn exit_with(mut self, action: impl Action) -> Self {
        self.exit = Some(Arc::new(action));
        self
    }

    /// Adds a trigger for the entities in this state.
    #[must_use]
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.triggers.push(trigger);
        self
    }
}

/// Builds a [`Machine`]; [`MachineBuilder::build`] validates.
#[derive(Debug, Clone)]
#[must_use]
pub struct MachineBuilder {
    id: String,
    resource: String,
    state_field: String,
    initial: Option<String>,
    states: Vec<State>,
}

impl MachineBuilder {
    /// Keeps the state in this field of the resource's records (default `status`).
    pub fn state_field(mut self, field: impl Into<String>) -> Self {
        self.state_field = field.into();
        self
    }

    /// The state of new entities.
    pub fn initial(mut self, state: impl Into<String>) -> Self {
        self.initial = Some(state.into());
        self
    }

    /// Adds a state.
    pub fn state(mut self, state: State) -> Self {
        self.states.push(state);
        self
    }

    /// The machine id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Validates the definition.
    ///
    /// # Errors
    /// A [`DefinitionError`] naming the machine and the state, event or trigger to fix: bad
    /// names, no states, no or unknown initial state, duplicate states or events, unknown
    /// targets, unreachable states, final states with transitions, non-final states without,
    /// guards or triggers naming events their state does not handle, bad cron patterns.
    pub fn build(self) -> Result<Machine, DefinitionError> {
        let machine = self.id.clone();
        check_name(&machine, "machine id", &self.id)?;
        check_name(&machine, "resource", &self.resource)?;
        check_name(&machine, "state field", &self.state_field)?;
        if self.states.is_empty() {
            return Err(DefinitionError::NoStates { machine });
        }
        let mut states: BTreeMap<String, StateDef> = BTreeMap::new();
        let mut order = Vec::new();
        for s in &self.states {
            check_name(&machine, "state", &s.name)?;
            if states.contains_key(&s.name) {
                return Err(DefinitionError::DuplicateState {
                    machine,
                    state: s.name.clone(),
                });
            }
            let mut on = BTreeMap::new();
            for (event, target) in &s.on {
                check_name(&machine, "event", event)?;
                if on.insert(event.clone(), target.clone()).is_some() {
                    return Err(DefinitionError::DuplicateEvent {
                        machine,
                        state: s.name.clone(),
                        event: event.clone(),
                    });
                }
            }
            order.push(s.name.clone());
            states.insert(
                s.name.clone(),
                StateDef {
                    is_final: s.is_final,
                    on,
                    guards: BTreeMap::new(),
                    entry: s.entry.clone(),
                    exit: s.exit.clone(),
                },
            );
        }
        let initial = self
            .initial
            .clone()
            .ok_or_else(|| DefinitionError::NoInitialState {
                machine: machine.clone(),
            })?;
        if !states.contains_key(&initial) {
            return Err(DefinitionError::UnknownInitialState {
                machine,
                state: initial,
            });
        }
        for s in &self.states {
            let def = &states[&s.name];
            for (event, target) in &def.on {
                if !states.contains_key(target) {
                    return Err(DefinitionError::UnknownTarget {
                        machine,
                        state: s.name.clone(),
                        event: event.clone(),
                        target: target.clone(),
                    });
                }
            }
            if def.is_final && !def.on.is_empty() {
                return Err(DefinitionError::FinalStateWithTransitions {
                    machine,
                    state: s.name.clone(),
                    events: def.on.keys().cloned().collect(),
                });
            }
            if !def.is_final && def.on.is_empty() {
                return Err(DefinitionError::DeadEnd {
                    machine,
                    state: s.name.clone(),
                });
            }
        }
        let reachable = reachable_from(&initial, &states);
        if let Some(state) = order.iter().find(|s| !reachable.contains(*s)) {
            return Err(DefinitionError::UnreachableState {
                machine,
                state: state.clone(),
                initial,
            });
        }
        let mut triggers = Vec::new();
        let mut trigger_ids = BTreeSet::new();
        for s in &self.states {
            let valid: Vec<String> = states[&s.name].on.keys().cloned().collect();
            let unknown = |what: &'static str, event: &str| DefinitionError::UnknownEvent {
                machine: machine.clone(),
                state: s.name.clone(),
                what,
                event: event.to_owned(),
                valid: valid.clone(),
            };
            let mut guards = BTreeMap::new();
            for (event, guard) in &s.guards {
                if !valid.contains(event) {
                    return Err(unknown("guard", event));
                }
                if guards.insert(event.clone(), Arc::clone(guard)).is_some() {
                    return Err(DefinitionError::DuplicateEvent {
                        machine,
                        state: s.name.clone(),
                        event: format!("{event} (guard)"),
                    });
                }
            }
            if let Some(def) = states.get_mut(&s.name) {
                def.guards = guards;
            }
            for (position, t) in s.triggers.iter().enumerate() {
                let id =
                    t.id.clone()
                        .unwrap_or_else(|| format!("{}~{position}", s.name));
                check_name(&machine, "trigger id", &id)?;
                let bad = |reason: &str| DefinitionError::BadTrigger {
                    machine: machine.clone(),
                    state: s.name.clone(),
                    trigger: id.clone(),
                    reason: reason.to_owned(),
                };
                if !trigger_ids.insert(id.clone()) {
                    return Err(bad("another trigger of the machine has this id"));
                }
                match &t.effect {
                    Effect::Nothing => {
                        return Err(bad(
                            "it does nothing: give it .send(\"EVENT\") or .action(…)",
                        ));
                    }
                    Effect::Send(event) if !valid.contains(event) => {
                        return Err(unknown("trigger", event));
                    }
                    _ => {}
                }
                if t.max_triggers == Some(0) {
                    return Err(bad("max_triggers must be at least 1"));
                }
                if let Some(event) = &t.on_max_reached {
                    if t.max_triggers.is_none() {
                        return Err(bad("on_max_reached needs max_triggers"));
                    }
                    if !valid.contains(event) {
                        return Err(unknown("trigger", event));
                    }
                }
                let kind = match &t.kind {
                    TriggerKind::Cron(pattern) => {
                        CompiledKind::Cron(Box::new(parse_cron(pattern).map_err(|reason| {
                            DefinitionError::BadCron {
                                machine: machine.clone(),
                                state: s.name.clone(),
                                trigger: id.clone(),
                                pattern: pattern.clone(),
                                reason,
                            }
                        })?))
                    }
                    TriggerKind::Date(source) => {
                        if let crate::trigger::DateSource::Field(f) = source {
                            check_name(&machine, "date field", f)?;
                        }
                        CompiledKind::Date(source.clone())
                    }
                    TriggerKind::Event(source) => {
                        if let Some(r) = &source.resource {
                            check_name(&machine, "trigger resource", r)?;
                        }
                        CompiledKind::Event(source.clone())
                    }
                };
                triggers.push(CompiledTrigger {
                    id,
                    state: s.name.clone(),
                    kind,
                    condition: t.condition.clone(),
                    max_triggers: t.max_triggers,
                    on_max_reached: t.on_max_reached.clone(),
                    effect: t.effect.clone(),
                });
            }
        }
        Ok(Machine {
            inner: Arc::new(MachineDef {
                id: self.id,
                resource: self.resource,
                state_field: self.state_field,
                initial,
                order,
                states,
                triggers,
            }),
        })
    }
}

fn reachable_from(initial: &str, states: &BTreeMap<String, StateDef>) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([initial.to_owned()]);
    let mut queue = VecDeque::from([initial.to_owned()]);
    while let Some(state) = queue.pop_front() {
        if let Some(def) = states.get(&state) {
            for target in def.on.values() {
                if seen.insert(target.clone()) {
                    queue.push_back(target.clone());
                }
            }
        }
    }
    seen
}

/// Checks a name used in keys and DOT output: non-empty, at most 200 bytes, no `/`, no `~`
/// (the separator of the plugin's own names), no control characters, not `.` or `..`.
fn check_name(machine: &str, what: &'static str, name: &str) -> Result<(), DefinitionError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 200 {
        Some("it is longer than 200 bytes")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.contains('~') && what != "trigger id" {
        Some("it contains '~'")
    } else if name.contains("..") || name == "." {
        Some("it is or contains a dot segment")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DefinitionError::BadName {
            machine: machine.to_owned(),
            what,
            name: name.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

pub(crate) struct StateDef {
    pub(crate) is_final: bool,
    pub(crate) on: BTreeMap<String, String>,
    pub(crate) guards: BTreeMap<String, SharedGuard>,
    pub(crate) entry: Option<SharedAction>,
    pub(crate) exit: Option<SharedAction>,
}

pub(crate) struct MachineDef {
    pub(crate) id: String,
    pub(crate) resource: String,
    pub(crate) state_field: String,
    pub(crate) initial: String,
    /// State names in definition order.
    pub(crate) order: Vec<String>,
    pub(crate) states: BTreeMap<String, StateDef>,
    pub(crate) triggers: Vec<CompiledTrigger>,
}

/// A validated machine definition. Cheap to clone.
#[derive(Clone)]
pub struct Machine {
    pub(crate) inner: Arc<MachineDef>,
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("id", &self.inner.id)
            .field("resource", &self.inner.resource)
            .field("state_field", &self.inner.state_field)
            .field("initial", &self.inner.initial)
            .field("states", &self.inner.order)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// A builder for machine `id` over the records of `resource`.
    pub fn builder(id: impl Into<String>, resource: impl Into<String>) -> MachineBuilder {
        MachineBuilder {
            id: id.into(),
            resource: resource.into(),
            state_field: DEFAULT_STATE_FIELD.to_owned(),
            initial: None,
            states: Vec::new(),
        }
    }

    /// The machine id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The resource whose records it drives.
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// The record field holding the state.
    #[must_use]
    pub fn state_field(&self) -> &str {
        &self.inner.state_field
    }

    /// The initial state.
    #[must_use]
    pub fn initial_state(&self) -> &str {
        &self.inner.initial
    }

    /// The states, in definition order.
    #[must_use]
    pub fn states(&self) -> &[String] {
        &self.inner.order
    }

    /// Whether `state` is final.
    #[must_use]
    pub fn is_final(&self, state: &str) -> bool {
        self.inner.states.get(state).is_some_and(|s| s.is_final)
    }

    /// The events `state` handles, sorted (empty for an unknown or final state).
    #[must_use]
    pub fn events_of(&self, state: &str) -> Vec<String> {
        self.inner
            .states
            .get(state)
            .map(|s| s.on.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Where `event` leads from `state`, if it is valid there.
    #[must_use]
    pub fn target(&self, state: &str, event: &str) -> Option<&str> {
        self.inner
            .states
            .get(state)
            .and_then(|s| s.on.get(event))
            .map(String::as_str)
    }

    /// The machine as a Graphviz DOT digraph: states as circles (final ones double), an arrow
    /// from a point to the initial state, one labelled edge per transition (`[guarded]` when a
    /// guard decides).
    ///
    /// ```
    /// use s3db_statemachine::{Machine, State};
    ///
    /// let m = Machine::builder("door", "doors")
    ///     .initial("closed")
    ///     .state(State::new("closed").on("OPEN", "open").on("BREAK", "broken"))
    ///     .state(State::new("open").on("CLOSE", "closed"))
    ///     .state(State::final_state("broken"))
    ///     .build()?;
    /// let dot = m.visualize();
    /// assert!(dot.starts_with("digraph \"door\" {"));
    /// assert!(dot.contains("\"closed\" -> \"open\" [label=\"OPEN\"];"));
    /// assert!(dot.contains("\"broken\" [shape=doublecircle];"));
    /// # Ok::<(), s3db_statemachine::DefinitionError>(())
    /// ```
    #[must_use]
    pub fn visualize(&self) -> String {
        let m = &self.inner;
        let mut dot = format!("digraph {} {{\n", quote(&m.id));
        dot.push_str("  rankdir=LR;\n  node [shape=circle];\n");
        dot.push_str("  \"__start\" [shape=point, label=\"\"];\n");
        dot.push_str(&format!("  \"__start\" -> {};\n", quote(&m.initial)));
        for name in &m.order {
            let shape = if m.states[name].is_final {
                "doublecircle"
            } else {
                "circle"
            };
            dot.push_str(&format!("  {} [shape={shape}];\n", quote(name)));
        }
        for name in &m.order {
            let state = &m.states[name];
            for (event, target) in &state.on {
                let label = if state.guards.contains_key(event) {
                    format!("{event} [guarded]")
                } else {
                    event.clone()
                };
                dot.push_str(&format!(
                    "  {} -> {} [label={}];\n",
                    quote(name),
                    quote(target),
                    quote(&label)
                ));
            }
        }
        dot.push_str("}\n");
        dot
    }
}

/// A DOT quoted string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
