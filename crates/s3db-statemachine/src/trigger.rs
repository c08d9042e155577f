//! Trigger definitions: what makes an entity that waits in a state move (or do work) on its own.
//!
//! A trigger belongs to a state and concerns the entities in that state:
//! - [`Trigger::cron`]: at every tick of a cron pattern;
//! - [`Trigger::date_field`] / [`Trigger::at`]: once a date (a field of the entity's record, or a
//!   fixed instant) is reached;
//! - [`Trigger::on_insert`] / [`Trigger::on_update`] / [`Trigger::on_write`]: when a record of
//!   the machine's resource (or [`Trigger::from_resource`]) is written.
//!
//! When it fires it [`Trigger::send`]s an event (which the state must handle) or runs an
//! [`Trigger::action`]; an optional [`Trigger::condition`] decides per entity, and
//! [`Trigger::max_triggers`] caps how often it fires for an entity during one stay in the state
//! (date triggers default to once).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::action::{
    Condition, ConditionFn, SharedCondition, SharedTriggerAction, TriggerAction, TriggerActionFn,
    TriggerContext,
};
use crate::error::BoxError;

/// When a date trigger is due.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DateSource {
    /// A field of the entity's record holding an RFC 3339 date or epoch milliseconds.
    Field(String),
    /// A fixed instant.
    At(DateTime<Utc>),
}

/// Which record writes an event trigger listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteKind {
    /// Inserts only.
    Insert,
    /// Updates only.
    Update,
    /// Inserts and updates.
    Any,
}

/// The source of an event trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventSource {
    pub(crate) kind: WriteKind,
    /// The resource listened to (default: the machine's).
    pub(crate) resource: Option<String>,
    /// The record field holding the entity id (default: the record id).
    pub(crate) entity_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TriggerKind {
    Cron(String),
    Date(DateSource),
    Event(EventSource),
}

#[derive(Clone)]
pub(crate) enum Effect {
    Nothing,
    Send(String),
    Action(SharedTriggerAction),
}

/// A trigger of a state; add it with [`crate::State::trigger`].
///
/// ```
/// use s3db_statemachine::Trigger;
///
/// let expire = Trigger::date_field("expires_at").send("EXPIRE");
/// let remind = Trigger::cron("0 9 * * *")
///     .max_triggers(3)
///     .on_max_reached("GIVE_UP")
///     .action(|t| async move {
///         println!("reminding {}", t.entity);
///         Ok(())
///     });
/// let paid = Trigger::on_update()
///     .condition(|t| async move {
///         Ok(t.record.as_ref().and_then(|r| r.get("paid")) == Some(&serde_json::json!(true)))
///     })
///     .send("PAY");
/// # drop((expire, remind, paid));
/// ```
#[derive(Clone)]
pub struct Trigger {
    pub(crate) id: Option<String>,
    pub(crate) kind: TriggerKind,
    pub(crate) condition: Option<SharedCondition>,
    pub(crate) max_triggers: Option<u32>,
    pub(crate) on_max_reached: Option<String>,
    pub(crate) effect: Effect,
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trigger")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("condition", &self.condition.is_some())
            .field("max_triggers", &self.max_triggers)
            .field("on_max_reached", &self.on_max_reached)
            .field(
                "effect",
                &match &self.effect {
                    Effect::Nothing => "nothing".to_owned(),
                    Effect::Send(e) => format!("send {e}"),
                    Effect::Action(_) => "action".to_owned(),
                },
            )
            .finish()
    }
}

impl Trigger {
    fn new(kind: TriggerKind) -> Self {
        Self {
            id: None,
            kind,
            condition: None,
            max_triggers: None,
            on_max_reached: None,
            effect: Effect::Nothing,
        }
    }

    /// Fires at every tick of a cron pattern, for every entity in the state: 5 fields
    /// (`minute hour day-of-month month day-of-week`, with ranges, steps, lists and names), or 6
    /// with a leading seconds field; `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. UTC.
    /// With several processes running the plugin, each tick is handled by one of them.
    #[must_use]
    pub fn cron(pattern: impl Into<String>) -> Self {
        Self::new(TriggerKind::Cron(pattern.into()))
    }

    /// Fires once the date in the record field `field` is reached (checked every
    /// `trigger_check_interval`). Once per stay in the state unless [`Trigger::max_triggers`]
    /// says more.
    #[must_use]
    pub fn date_field(field: impl Into<String>) -> Self {
        let mut t = Self::new(TriggerKind::Date(DateSource::Field(field.into())));
        t.max_triggers = Some(1);
        t
    }

    /// Fires once `at` is reached, for every entity in the state (checked every
    /// `trigger_check_interval`). Once per stay in the state unless [`Trigger::max_triggers`] says
    /// more.
    #[must_use]
    pub fn at(at: DateTime<Utc>) -> Self {
        let mut t = Self::new(TriggerKind::Date(DateSource::At(at)));
        t.max_triggers = Some(1);
        t
    }

    /// Fires when a record is inserted, for the entity it names, if that entity is in the state.
    #[must_use]
    pub fn on_insert() -> Self {
        Self::on_writes(WriteKind::Insert)
    }

    /// Fires when a record is updated, for the entity it names, if that entity is in the state.
    #[must_use]
    pub fn on_update() -> Self {
        Self::on_writes(WriteKind::Update)
    }

    /// Fires when a record is inserted or updated.
    #[must_use]
    pub fn on_write() -> Self {
        Self::on_writes(WriteKind::Any)
    }

    fn on_writes(kind: WriteKind) -> Self {
        Self::new(TriggerKind::Event(EventSource {
            kind,
            resource: None,
            entity_field: None,
        }))
    }

    /// An event trigger listens to this resource instead of the machine's.
    #[must_use]
    pub fn from_resource(mut self, resource: impl Into<String>) -> Self {
        if let TriggerKind::Event(source) = &mut self.kind {
            source.resource = Some(resource.into());
        }
        self
    }

    /// An event trigger finds the entity id in this field of the written record instead of
    /// the record id.
    #[must_use]
    pub fn entity_field(mut self, field: impl Into<String>) -> Self {
        if let TriggerKind::Event(source) = &mut self.kind {
            source.entity_field = Some(field.into());
        }
        self
    }

    /// Names the trigger (default `<state>~<position>`), for events, logs and its storage.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sends `event` to the entity when the trigger fires (the state must handle it).
    #[must_use]
    pub fn send(mut self, event: impl Into<String>) -> Self {
        self.effect = Effect::Send(event.into());
        self
    }

    /// Runs `action` when the trigger fires.
    #[must_use]
    pub fn action<F, Fut>(self, action: F) -> Self
    where
        F: Fn(TriggerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.action_with(TriggerActionFn(action))
    }

    /// Runs a [`TriggerAction`] when the trigger fires.
    #[must_use]
    pub fn action_with(mut self, action: impl TriggerAction) -> Self {
        self.effect = Effect::Action(Arc::new(action));
        self
    }

    /// Fires only for entities for which `condition` answers `Ok(true)`.
    #[must_use]
    pub fn condition<F, Fut>(self, condition: F) -> Self
    where
        F: Fn(TriggerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<bool, BoxError>> + Send + 'static,
    {
        self.condition_with(ConditionFn(condition))
    }

    /// Fires only for entities the [`Condition`] accepts.
    #[must_use]
    pub fn condition_with(mut self, condition: impl Condition) -> Self {
        self.condition = Some(Arc::new(condition));
        self
    }

    /// Fires at most `n` times per entity and stay in the state (`0` is refused at
    /// construction).
    #[must_use]
    pub fn max_triggers(mut self, n: u32) -> Self {
        self.max_triggers = Some(n);
        self
    }

    /// Once the trigger has fired [`Trigger::max_triggers`] times for an entity, its next firing
    /// sends `event` instead (the state must handle it).
    #[must_use]
    pub fn on_max_reached(mut self, event: impl Into<String>) -> Self {
        self.on_max_reached = Some(event.into());
        self
    }
}

/// A validated trigger of a machine.
#[derive(Clone)]
pub(crate) struct CompiledTrigger {
    pub(crate) id: String,
    pub(crate) state: String,
    pub(crate) kind: CompiledKind,
    pub(crate) condition: Option<SharedCondition>,
    pub(crate) max_triggers: Option<u32>,
    pub(crate) on_max_reached: Option<String>,
    pub(crate) effect: Effect,
}

#[derive(Clone)]
pub(crate) enum CompiledKind {
    Cron(Box<croner::Cron>),
    Date(DateSource),
    Event(EventSource),
}

/// Parses a cron pattern: 5 fields, or 6 with leading seconds, or an `@` alias.
pub(crate) fn parse_cron(pattern: &str) -> Result<croner::Cron, String> {
    let trimmed = pattern.trim();
    if !trimmed.starts_with('@') {
        let fields = trimmed.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found {fields}"
            ));
        }
    }
    trimmed.parse::<croner::Cron>().map_err(|e| e.to_string())
}

/// Reads a date from a record value: an RFC 3339 string or epoch milliseconds.
pub(crate) fn date_of(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    match value {
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .and_then(DateTime::from_timestamp_millis),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_patterns() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("*/2 * * * * *").is_ok());
        assert!(parse_cron("@daily").is_ok());
        assert!(parse_cron("0 9 * * MON-FRI").is_ok());
        assert!(parse_cron("* * *").is_err());
        assert!(parse_cron("0 0 0 1 1 * 2030").is_err());
        assert!(parse_cron("61 * * * *").is_err());
    }

    #[test]
    fn dates() {
        let d = date_of(&serde_json::json!("2030-01-02T03:04:05Z"));
        assert_eq!(d.map(|d| d.timestamp()), Some(1_893_553_445));
        assert_eq!(
            date_of(&serde_json::json!(1_000)).map(|d| d.timestamp_millis()),
            Some(1_000)
        );
        assert_eq!(date_of(&serde_json::json!("tomorrow")), None);
        assert_eq!(date_of(&serde_json::json!(true)), None);
    }
}
