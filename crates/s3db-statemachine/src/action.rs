//! What user code plugs into a machine: [`Guard`]s that allow or refuse a transition, [`Action`]s
//! run on entering or leaving a state, and trigger [`Condition`]s and [`TriggerAction`]s.
//!
//! Each is an async trait for types of your own, and any async closure of the right shape is one
//! too: the builders take closures directly (`.guard("PAY", |t| async move { Ok(true) })`) and
//! trait objects through the `…_with` methods.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use s3db_core::Database;
use serde_json::Value;

use crate::error::BoxError;

/// The transition a guard or action is asked about.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransitionContext {
    /// The machine id.
    pub machine: String,
    /// The entity (usually a record id of the machine's resource).
    pub entity: String,
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// The event (empty for the entry action run by `initialize`).
    pub event: String,
    /// The context given to `send` (or by the trigger that sent the event).
    pub context: Value,
    /// The database, to read or write other resources.
    pub database: Database,
}

impl fmt::Debug for TransitionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransitionContext")
            .field("machine", &self.machine)
            .field("entity", &self.entity)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("event", &self.event)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// What a trigger's condition and action see.
#[derive(Clone)]
#[non_exhaustive]
pub struct TriggerContext {
    /// The machine id.
    pub machine: String,
    /// The entity.
    pub entity: String,
    /// Its state (the trigger's state).
    pub state: String,
    /// The trigger id.
    pub trigger: String,
    /// The entity's record (for event triggers, the record of the event), if it exists.
    pub record: Option<Value>,
    /// When the trigger fired (the cron tick, or the check time).
    pub now: DateTime<Utc>,
    /// The database.
    pub database: Database,
}

impl fmt::Debug for TriggerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerContext")
            .field("machine", &self.machine)
            .field("entity", &self.entity)
            .field("state", &self.state)
            .field("trigger", &self.trigger)
            .field("record", &self.record)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Allows (`Ok(true)`) or refuses (`Ok(false)`) a transition; an error refuses it too and is
/// reported. Runs under the entity's lock: it may take its time (the lease is renewed).
#[async_trait]
pub trait Guard: Send + Sync + 'static {
    /// Whether the transition may happen.
    async fn check(&self, transition: &TransitionContext) -> Result<bool, BoxError>;
}

/// Work done on leaving (exit) or entering (entry) a state.
#[async_trait]
pub trait Action: Send + Sync + 'static {
    /// Runs the action.
    async fn run(&self, transition: &TransitionContext) -> Result<(), BoxError>;
}

/// Whether a trigger fires for an entity.
#[async_trait]
pub trait Condition: Send + Sync + 'static {
    /// `Ok(true)` to fire.
    async fn check(&self, trigger: &TriggerContext) -> Result<bool, BoxError>;
}

/// What a trigger does when it fires, when it does not send an event.
#[async_trait]
pub trait TriggerAction: Send + Sync + 'static {
    /// Runs the action.
    async fn run(&self, trigger: &TriggerContext) -> Result<(), BoxError>;
}

/// Adapts an async closure to one of the traits above.
pub(crate) struct FnAdapter<F>(pub(crate) F);

#[async_trait]
impl<F, Fut> Guard for FnAdapter<F>
where
    F: Fn(TransitionContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, BoxError>> + Send + 'static,
{
    async fn check(&self, transition: &TransitionContext) -> Result<bool, BoxError> {
        (self.0)(transition.clone()).await
    }
}

/// Adapts an async closure returning `()` to [`Action`].
pub(crate) struct ActionFn<F>(pub(crate) F);

#[async_trait]
impl<F, Fut> Action for ActionFn<F>
where
    F: Fn(TransitionContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    async fn run(&self, transition: &TransitionContext) -> Result<(), BoxError> {
        (self.0)(transition.clone()).await
    }
}

/// Adapts an async closure to [`Condition`].
pub(crate) struct ConditionFn<F>(pub(crate) F);

#[async_trait]
impl<F, Fut> Condition for ConditionFn<F>
where
    F: Fn(TriggerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, BoxError>> + Send + 'static,
{
    async fn check(&self, trigger: &TriggerContext) -> Result<bool, BoxError> {
        (self.0)(trigger.clone()).await
    }
}

/// Adapts an async closure to [`TriggerAction`].
pub(crate) struct TriggerActionFn<F>(pub(crate) F);

#[async_trait]
impl<F, Fut> TriggerAction for TriggerActionFn<F>
where
    F: Fn(TriggerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    async fn run(&self, trigger: &TriggerContext) -> Result<(), BoxError> {
        (self.0)(trigger.clone()).await
    }
}

pub(crate) type SharedGuard = Arc<dyn Guard>;
pub(crate) type SharedAction = Arc<dyn Action>;
pub(crate) type SharedCondition = Arc<dyn Condition>;
pub(crate) type SharedTriggerAction = Arc<dyn TriggerAction>;
