//! Transitions: `send`, `initialize`, `state`, `history`, and the transition log
//! (`plg_state_transitions`).
//!
//! A transition runs under the entity's PluginStorage lock: read the stored state, check the
//! event, run the guard and the exit action, write the index marker of the new state, **write the
//! new state with a conditional write on the version read** (the commit point: of two senders
//! that read the same state, only one can write), append the log entry, delete the old index
//! marker, run the entry action, update the record's state field, emit the event.
//!
//! The log entry's id is `<machine>~<entity>~<seq>` and the stored state keeps the last
//! transition, so an entry lost to a crash right after the commit is written again by the next
//! operation on the entity (idempotently).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use s3db_core::plugin::{LockGuard, LockOptions, PluginContext, SetOptions};
use s3db_core::{Behavior, ErrorKind, Key, ResourceConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::action::TransitionContext;
use crate::entity::{self, EntityState};
use crate::error::{Result, StateMachineError};
use crate::events::StateMachineEvent;
use crate::machine::Machine;

/// The internal resource of the transition log.
pub const TRANSITIONS_RESOURCE: &str = "plg_state_transitions";
/// Its partition by machine and entity (what `history` reads).
const BY_ENTITY: &str = "by_entity";
/// At most this many entities remembered as "last transition logged" (forgotten all at once).
const LOGGED_CACHE: usize = 10_000;

/// One transition: what `send` returns and what the log keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Transition {
    /// The machine id.
    pub machine: String,
    /// The entity.
    pub entity: String,
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// The event.
    pub event: String,
    /// When the new state was stored.
    pub timestamp: DateTime<Utc>,
    /// The entity's transition number (1 for its first).
    pub seq: u64,
    /// The context given to `send`.
    #[serde(default)]
    pub context: Value,
}

impl Transition {
    fn log_id(&self) -> String {
        log_id(&self.machine, &self.entity, self.seq)
    }
}

fn log_id(machine: &str, entity: &str, seq: u64) -> String {
    format!("{machine}~{entity}~{seq:010}")
}

pub(crate) fn log_resource_config() -> ResourceConfig {
    ResourceConfig::new(TRANSITIONS_RESOURCE)
        .attribute("machine", "string|required")
        .attribute("entity", "string|required")
        .attribute("from", "string|required")
        .attribute("to", "string|required")
        .attribute("event", "string|required")
        .attribute("timestamp", "string|required")
        .attribute("seq", "number|required")
        .attribute("context", "json")
        .partition(BY_ENTITY, ["machine", "entity"])
        .behavior(Behavior::BodyOverflow)
}

/// Settings shared by every machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) trigger_check_interval: Duration,
}

/// What a trigger did for one entity.
#[derive(Debug)]
pub(crate) enum Fired {
    Sent(Transition),
    Ran,
    Skipped,
}

/// The installed plugin's machinery.
pub(crate) struct Runtime {
    pub(crate) cx: PluginContext,
    pub(crate) settings: Settings,
    pub(crate) machines: BTreeMap<String, Machine>,
    pub(crate) active: AtomicBool,
    /// (machine, entity) → seq of the last transition this process logged.
    logged: Mutex<HashMap<(String, String), u64>>,
}

impl Runtime {
    pub(crate) fn new(
        cx: PluginContext,
        settings: Settings,
        machines: BTreeMap<String, Machine>,
    ) -> Self {
        Self {
            cx,
            settings,
            machines,
            active: AtomicBool::new(true),
            logged: Mutex::new(HashMap::new()),
        }
    }

    fn check_active(&self) -> Result<()> {
        if self.active.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StateMachineError::NotInstalled)
        }
    }

    pub(crate) fn emit(&self, event: &StateMachineEvent) {
        self.cx.emit_event(event);
    }

    /// Takes the entity's lock (waiting up to the lock timeout).
    pub(crate) async fn lock(&self, m: &Machine, entity: &str) -> Result<LockGuard> {
        let opts = LockOptions::new()
            .ttl(self.settings.lock_ttl)
            .timeout(self.settings.lock_timeout)
            .max_backoff(Duration::from_millis(50));
        self.cx
            .storage()
            .acquire_lock(&entity::lock_name(m.id(), entity), opts)
            .await?
            .ok_or_else(|| StateMachineError::LockTimeout {
                machine: m.id().to_owned(),
                entity: entity.to_owned(),
                waited: self.settings.lock_timeout,
            })
    }

    pub(crate) fn state_key(&self, m: &Machine, entity: &str) -> Result<Key> {
        entity::state_key(self.cx.storage(), m.resource(), m.id(), entity)
    }

    /// The entity's stored state and version (`None` when it never had one).
    pub(crate) async fn load(
        &self,
        m: &Machine,
        entity: &str,
    ) -> Result<Option<(EntityState, s3db_core::ETag)>> {
        let key = self.state_key(m, entity)?;
        entity::load(self.cx.storage(), &key, m.id(), entity).await
    }

    // ----- public operations -----

    pub(crate) async fn send(
        &self,
        m: &Machine,
        entity: &str,
        event: &str,
        context: Value,
    ) -> Result<Transition> {
        self.check_active()?;
        entity::check_entity(entity)?;
        let span = tracing::info_span!("state machine send", machine = m.id(), entity, event);
        async {
            let mut lock = self.lock(m, entity).await?;
            let result = async {
                let current = self.load(m, entity).await?;
                self.repair_log(m, entity, current.as_ref().map(|c| &c.0))
                    .await;
                self.apply(m, entity, event, context, &mut lock, current)
                    .await
            }
            .await;
            release(lock).await;
            result
        }
        .instrument(span)
        .await
    }

    pub(crate) async fn initialize(&self, m: &Machine, entity: &str, context: Value) -> Result<()> {
        self.check_active()?;
        entity::check_entity(entity)?;
        let span = tracing::info_span!("state machine initialize", machine = m.id(), entity);
        async {
            let mut lock = self.lock(m, entity).await?;
            let result = self.initialize_locked(m, entity, context, &mut lock).await;
            release(lock).await;
            result
        }
        .instrument(span)
        .await
    }

    async fn initialize_locked(
        &self,
        m: &Machine,
        entity: &str,
        context: Value,
        lock: &mut LockGuard,
    ) -> Result<()> {
        if let Some((current, _)) = self.load(m, entity).await? {
            return Err(StateMachineError::AlreadyInitialized {
                machine: m.id().to_owned(),
                entity: entity.to_owned(),
                state: current.state,
            });
        }
        let initial = m.initial_state().to_owned();
        self.create_initial(m, entity).await?;
        if let Some(entry) = m.inner.states[&initial].entry.clone() {
            let tc = TransitionContext {
                machine: m.id().to_owned(),
                entity: entity.to_owned(),
                from: String::new(),
                to: initial.clone(),
                event: String::new(),
                context,
                database: self.cx.database()?,
            };
            if let Err(e) = renewing(lock, self.settings.lock_ttl, entry.run(&tc)).await {
                self.entry_failed(m, entity, &initial, &e.to_string());
            }
        }
        self.update_record(m, entity, &initial).await;
        self.emit(&StateMachineEvent::Initialized {
            machine: m.id().to_owned(),
            entity: entity.to_owned(),
            state: initial,
        });
        Ok(())
    }

    /// Stores the initial state of an entity that has none (under its lock).
    pub(crate) async fn create_initial(
        &self,
        m: &Machine,
        entity: &str,
    ) -> Result<(EntityState, s3db_core::ETag)> {
        let storage = self.cx.storage();
        let initial = m.initial_state().to_owned();
        let index = entity::index_key(storage, m.resource(), m.id(), &initial, entity)?;
        storage.set(&index, &Map::new(), SetOptions::new()).await?;
        let state = EntityState {
            state: initial,
            seq: 0,
            updated_at: Utc::now(),
            last: None,
            fired: BTreeMap::new(),
        };
        let key = self.state_key(m, entity)?;
        match storage
            .create(&key, &state.to_map(), SetOptions::new())
            .await
        {
            Ok(etag) => Ok((state, etag)),
            Err(e) if e.is_conflict() => Err(StateMachineError::Conflict {
                machine: m.id().to_owned(),
                entity: entity.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn state(&self, m: &Machine, entity: &str) -> Result<String> {
        self.check_active()?;
        entity::check_entity(entity)?;
        Ok(self
            .load(m, entity)
            .await?
            .map_or_else(|| m.initial_state().to_owned(), |(s, _)| s.state))
    }

    pub(crate) async fn history(&self, m: &Machine, entity: &str) -> Result<Vec<Transition>> {
        self.check_active()?;
        entity::check_entity(entity)?;
        let current = self.load(m, entity).await?;
        self.repair_log(m, entity, current.as_ref().map(|c| &c.0))
            .await;
        let log = self.log_resource()?;
        let records = log
            .list_partition(BY_ENTITY, json!({"machine": m.id(), "entity": entity}))
            .await?;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let mut data = r.to_json();
            if let Some(obj) = data.as_object_mut() {
                obj.remove("id");
            }
            let t: LogRecord =
                serde_json::from_value(data).map_err(|e| StateMachineError::Corrupt {
                    machine: m.id().to_owned(),
                    entity: entity.to_owned(),
                    reason: format!("log entry {}: {e}", r.id()),
                })?;
            out.push(t.into_transition(m.id(), entity)?);
        }
        out.sort_by_key(|t| t.seq);
        Ok(out)
    }

    // ----- the transition itself -----

    /// Runs one transition of an entity whose lock is held and whose stored state was just read.
    pub(crate) async fn apply(
        &self,
        m: &Machine,
        entity: &str,
        event: &str,
        context: Value,
        lock: &mut LockGuard,
        current: Option<(EntityState, s3db_core::ETag)>,
    ) -> Result<Transition> {
        let (from, seq, etag) = match current {
            Some((s, etag)) => (s.state, s.seq, Some(etag)),
            None => (m.initial_state().to_owned(), 0, None),
        };
        let Some(to) = m.target(&from, event).map(str::to_owned) else {
            return Err(StateMachineError::InvalidEvent {
                machine: m.id().to_owned(),
                entity: entity.to_owned(),
                event: event.to_owned(),
                valid: m.events_of(&from),
                state: from,
            });
        };
        let tc = TransitionContext {
            machine: m.id().to_owned(),
            entity: entity.to_owned(),
            from: from.clone(),
            to: to.clone(),
            event: event.to_owned(),
            context,
            database: self.cx.database()?,
        };
        let ttl = self.settings.lock_ttl;
        let def = &m.inner.states[&from];
        if let Some(guard) = def.guards.get(event) {
            let verdict = renewing(lock, ttl, guard.check(&tc)).await;
            match verdict {
                Ok(true) => {}
                Ok(false) => {
                    return Err(StateMachineError::GuardRejected {
                        machine: tc.machine,
                        entity: tc.entity,
                        state: from,
                        event: tc.event,
                    });
                }
                Err(e) => {
                    return Err(StateMachineError::GuardFailed {
                        machine: tc.machine,
                        entity: tc.entity,
                        state: from,
                        event: tc.event,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if let Some(exit) = &def.exit
            && let Err(e) = renewing(lock, ttl, exit.run(&tc)).await
        {
            return Err(StateMachineError::ExitActionFailed {
                machine: tc.machine,
                entity: tc.entity,
                state: from,
                reason: e.to_string(),
            });
        }
        let storage = self.cx.storage();
        // The new state's index marker goes first: the index may hold stale entries (cleaned
        // up by triggers) but never misses an entity.
        let new_index = entity::index_key(storage, m.resource(), m.id(), &to, entity)?;
        storage
            .set(&new_index, &Map::new(), SetOptions::new())
            .await?;
        let transition = Transition {
            machine: m.id().to_owned(),
            entity: entity.to_owned(),
            from: from.clone(),
            to: to.clone(),
            event: event.to_owned(),
            timestamp: now_micros(),
            seq: seq + 1,
            context: tc.context.clone(),
        };
        let stored = EntityState {
            state: to.clone(),
            seq: seq + 1,
            updated_at: transition.timestamp,
            last: Some(transition.clone()),
            fired: BTreeMap::new(),
        };
        let key = self.state_key(m, entity)?;
        let written = match &etag {
            Some(etag) => {
                storage
                    .update_entry(&key, &stored.to_map(), SetOptions::new(), etag)
                    .await
            }
            None => {
                storage
                    .create(&key, &stored.to_map(), SetOptions::new())
                    .await
            }
        };
        match written {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {
                tracing::warn!(
                    machine = m.id(),
                    entity,
                    "state changed under the transition; nothing written"
                );
                return Err(StateMachineError::Conflict {
                    machine: m.id().to_owned(),
                    entity: entity.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        // Committed. What follows is reported, never undone.
        if let Err(e) = self.write_log(&transition).await {
            tracing::warn!(machine = m.id(), entity, error = %e,
                "transition log entry not written; the next operation on the entity writes it");
        }
        if from != to {
            let old_index = entity::index_key(storage, m.resource(), m.id(), &from, entity)?;
            if let Err(e) = storage.delete(&old_index).await {
                tracing::warn!(machine = m.id(), entity, error = %e, "stale index marker left");
            }
        }
        if let Some(entry) = &m.inner.states[&to].entry
            && let Err(e) = renewing(lock, ttl, entry.run(&tc)).await
        {
            self.entry_failed(m, entity, &to, &e.to_string());
        }
        self.update_record(m, entity, &to).await;
        tracing::debug!(machine = m.id(), entity, from = %from, to = %to, event, "transition");
        self.emit(&StateMachineEvent::Transitioned {
            transition: transition.clone(),
        });
        Ok(transition)
    }

    fn entry_failed(&self, m: &Machine, entity: &str, state: &str, error: &str) {
        tracing::warn!(
            machine = m.id(),
            entity,
            state,
            error,
            "entry action failed"
        );
        self.emit(&StateMachineEvent::EntryActionFailed {
            machine: m.id().to_owned(),
            entity: entity.to_owned(),
            state: state.to_owned(),
            error: error.to_owned(),
        });
    }

    /// Writes the state into the record's state field, if the record exists.
    async fn update_record(&self, m: &Machine, entity: &str, state: &str) {
        let Some(resource) = self
            .cx
            .database()
            .ok()
            .and_then(|db| db.resource(m.resource()))
        else {
            return;
        };
        let mut changes = Map::new();
        changes.insert(m.state_field().to_owned(), Value::String(state.to_owned()));
        match resource.update(entity, Value::Object(changes)).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(machine = m.id(), entity, error = %e,
                    "the record's state field was not updated");
            }
        }
    }

    fn log_resource(&self) -> Result<s3db_core::Resource> {
        self.cx
            .database()?
            .resource(TRANSITIONS_RESOURCE)
            .ok_or_else(|| {
                StateMachineError::Storage(s3db_core::Error::Refused {
                    operation: "state machine log",
                    reason: format!("the resource {TRANSITIONS_RESOURCE} is missing"),
                })
            })
    }

    /// Appends a log entry (idempotent: its id is fixed by machine, entity and seq).
    async fn write_log(&self, t: &Transition) -> s3db_core::Result<()> {
        let log = self.log_resource().map_err(s3db_core::Error::from)?;
        let data = json!({
            "machine": t.machine,
            "entity": t.entity,
            "from": t.from,
            "to": t.to,
            "event": t.event,
            "timestamp": t.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "seq": t.seq,
            "context": t.context,
        });
        match log.insert_with_id(&t.log_id(), data).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if logged.len() >= LOGGED_CACHE {
            logged.clear();
        }
        logged.insert((t.machine.clone(), t.entity.clone()), t.seq);
        Ok(())
    }

    /// Writes the entity's last transition to the log if a crash lost it.
    async fn repair_log(&self, m: &Machine, entity: &str, current: Option<&EntityState>) {
        let Some(last) = current.and_then(|c| c.last.as_ref()) else {
            return;
        };
        let known = self
            .logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(m.id().to_owned(), entity.to_owned()))
            .is_some_and(|seq| *seq >= last.seq);
        if known {
            return;
        }
        let exists = match self.log_resource() {
            Ok(log) => log.exists(&last.log_id()).await,
            Err(e) => Err(e.into()),
        };
        let result = match exists {
            Ok(true) => {
                let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
                logged.insert((m.id().to_owned(), entity.to_owned()), last.seq);
                Ok(())
            }
            Ok(false) => {
                tracing::info!(
                    machine = m.id(),
                    entity,
                    seq = last.seq,
                    "writing a lost log entry"
                );
                self.write_log(last).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(machine = m.id(), entity, error = %e, "could not check the transition log");
        }
    }
}

/// A log record as stored.
#[derive(Deserialize)]
struct LogRecord {
    from: String,
    to: String,
    event: String,
    timestamp: String,
    seq: f64,
    #[serde(default)]
    context: Value,
}

impl LogRecord {
    fn into_transition(self, machine: &str, entity: &str) -> Result<Transition> {
        let timestamp = DateTime::parse_from_rfc3339(&self.timestamp)
            .map_err(|e| StateMachineError::Corrupt {
                machine: machine.to_owned(),
                entity: entity.to_owned(),
                reason: format!("log timestamp {:?}: {e}", self.timestamp),
            })?
            .with_timezone(&Utc);
        Ok(Transition {
            machine: machine.to_owned(),
            entity: entity.to_owned(),
            from: self.from,
            to: self.to,
            event: self.event,
            timestamp,
            seq: self.seq as u64,
            context: self.context,
        })
    }
}

/// Now, to the microsecond (what the log keeps), so a returned transition equals its log entry.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Releases a lock, logging a failure (the lease then expires on its own).
pub(crate) async fn release(lock: LockGuard) {
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "state machine: releasing an entity lock failed; it expires on its own");
    }
}

/// Runs `work` while renewing the lock's lease every third of its TTL.
pub(crate) async fn renewing<F: Future>(lock: &mut LockGuard, ttl: Duration, work: F) -> F::Output {
    let period = (ttl / 3).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => {
                if let Err(e) = lock.renew(ttl).await {
                    tracing::warn!(error = %e, "state machine: renewing an entity lock failed");
                }
            }
        }
    }
}
