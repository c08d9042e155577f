//! Running triggers: the background tasks started by the plugin's `start`, and the firing of one
//! trigger for one entity.
//!
//! - **Cron**: one task per cron trigger sleeps until the next tick, then *claims* it: the object
//!   `plugin=state-machine/ticks/<machine>/<trigger>` holds the last tick claimed, and is moved
//!   forward with a conditional write, so with several processes running the plugin exactly one
//!   of them handles each tick.
//! - **Date**: one task checks every `trigger_check_interval` the entities in each date
//!   trigger's state whose date is reached.
//! - **Event**: one task follows the database's events (inserts and updates) in the process that
//!   made the write, so each write is seen once.
//!
//! Firing for an entity happens under the entity's lock: its state is read again (an entity no
//! longer in the trigger's state is skipped, and its stale index marker removed), the count of
//! firings during its stay in the state is checked and, with `max_triggers`, incremented by a
//! conditional write on the entity's state — so a date trigger fires once per stay even when
//! every process sees the date — then the event is sent (in the same locked section) or the action
//! is run.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use s3db_core::plugin::{Event, SetOptions};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use crate::action::TriggerContext;
use crate::entity;
use crate::error::{Result, StateMachineError};
use crate::events::StateMachineEvent;
use crate::machine::Machine;
use crate::transition::{Fired, Runtime, release, renewing};
use crate::trigger::{CompiledKind, CompiledTrigger, DateSource, Effect, WriteKind, date_of};

/// How often background loops check that their database still exists.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
/// How many entities of one tick are handled at once.
const FIRE_CONCURRENCY: usize = 8;

/// Starts the trigger tasks of every machine.
pub(crate) fn start(runtime: &Arc<Runtime>) -> s3db_core::Result<()> {
    let cx = runtime.cx.clone();
    let mut dates = Vec::new();
    let mut events = Vec::new();
    for m in runtime.machines.values() {
        for (i, t) in m.inner.triggers.iter().enumerate() {
            match &t.kind {
                CompiledKind::Cron(_) => {
                    cx.spawn(cron_loop(
                        Arc::clone(runtime),
                        m.clone(),
                        i,
                        cx.shutdown_signal(),
                    ));
                }
                CompiledKind::Date(_) => dates.push((m.clone(), i)),
                CompiledKind::Event(_) => events.push((m.clone(), i)),
            }
        }
    }
    if !dates.is_empty() {
        cx.spawn(date_loop(Arc::clone(runtime), dates, cx.shutdown_signal()));
    }
    if !events.is_empty() {
        // Subscribed now, so no write after `start` returns is missed.
        let receiver = cx.subscribe()?;
        cx.spawn(event_loop(
            Arc::clone(runtime),
            events,
            receiver,
            cx.shutdown_signal(),
        ));
    }
    Ok(())
}

/// Sleeps `duration`; `false` if the plugin stops or the database goes away meanwhile.
async fn pause(
    runtime: &Runtime,
    duration: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        if *shutdown.borrow() {
            return false;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return true;
        }
        let step = (deadline - now).min(LIVENESS_CHECK);
        tokio::select! {
            () = tokio::time::sleep(step) => {
                if runtime.cx.database().is_err() {
                    return false;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return false;
                }
            }
        }
    }
}

fn trigger_of(m: &Machine, index: usize) -> Option<&CompiledTrigger> {
    m.inner.triggers.get(index)
}

async fn cron_loop(
    runtime: Arc<Runtime>,
    m: Machine,
    index: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(trigger) = trigger_of(&m, index) else {
        return;
    };
    let CompiledKind::Cron(cron) = &trigger.kind else {
        return;
    };
    loop {
        let now = Utc::now();
        // Ticks are whole seconds, the same instant in every process (the claim compares them).
        let next = match cron
            .find_next_occurrence(&whole_second(now), false)
            .map(whole_second)
        {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(machine = m.id(), trigger = %trigger.id, error = %e, "cron trigger has no next tick; stopping it");
                return;
            }
        };
        let wait = (next - now).to_std().unwrap_or_default();
        if !pause(&runtime, wait, &mut shutdown).await {
            return;
        }
        let span = tracing::debug_span!("state machine cron tick", machine = m.id(), trigger = %trigger.id, tick = %next);
        async {
            match claim_tick(&runtime, &m, trigger, next).await {
                Ok(true) => fire_state(&runtime, &m, trigger, next).await,
                Ok(false) => tracing::debug!("tick handled by another process"),
                Err(e) => report(&runtime, &m, trigger, None, &e.to_string()),
            }
        }
        .instrument(span)
        .await;
    }
}

/// `t` without its fraction of a second.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Claims a cron tick for this process: moves the trigger's last claimed tick forward with a
/// conditional write. `false` if another process claimed it (or a later one) first.
pub(crate) async fn claim_tick(
    runtime: &Runtime,
    m: &Machine,
    trigger: &CompiledTrigger,
    tick: DateTime<Utc>,
) -> Result<bool> {
    let storage = runtime.cx.storage();
    let key = entity::tick_key(storage, m.id(), &trigger.id)?;
    let tick_ms = tick.timestamp_millis();
    let mut value = Map::new();
    value.insert("tick".to_owned(), json!(tick_ms));
    for _ in 0..100 {
        let written = match storage.get_entry(&key).await? {
            Some(entry) => {
                let last = entry
                    .data
                    .get("tick")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MIN);
                if last >= tick_ms {
                    return Ok(false);
                }
                storage
                    .update_entry(&key, &value, SetOptions::new(), &entry.etag)
                    .await
            }
            None => storage.create(&key, &value, SetOptions::new()).await,
        };
        match written {
            Ok(_) => return Ok(true),
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Fires a cron or date trigger for every entity in its state.
async fn fire_state(runtime: &Runtime, m: &Machine, trigger: &CompiledTrigger, now: DateTime<Utc>) {
    let entities = match entities_in(runtime, m, &trigger.state).await {
        Ok(entities) => entities,
        Err(e) => {
            report(runtime, m, trigger, None, &e.to_string());
            return;
        }
    };
    let db = runtime.cx.database().ok();
    let resource = db.as_ref().and_then(|db| db.resource(m.resource()));
    let fires = entities.into_iter().map(|entity| {
        let resource = resource.clone();
        async move {
            let record = match &resource {
                Some(r) => r.get(&entity).await.ok().map(|r| r.to_json()),
                None => None,
            };
            if let CompiledKind::Date(source) = &trigger.kind {
                let due = match source {
                    DateSource::At(at) => *at <= now,
                    DateSource::Field(field) => record
                        .as_ref()
                        .and_then(|r| r.get(field))
                        .and_then(date_of)
                        .is_some_and(|at| at <= now),
                };
                if !due {
                    return;
                }
            }
            if let Err(e) = fire(runtime, m, trigger, &entity, record, now).await {
                report(runtime, m, trigger, Some(&entity), &e.to_string());
            }
        }
    });
    futures::stream::iter(fires)
        .buffer_unordered(FIRE_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

/// The entities the index lists in `state` (a superset: stale ones are skipped when firing).
pub(crate) async fn entities_in(
    runtime: &Runtime,
    m: &Machine,
    state: &str,
) -> Result<Vec<String>> {
    let keys = runtime
        .cx
        .storage()
        .list_for_resource(
            m.resource(),
            Some(&entity::index_prefix(m.id(), state)),
            None,
        )
        .await?;
    Ok(keys.iter().map(|k| k.last_part().to_owned()).collect())
}

fn report(
    runtime: &Runtime,
    m: &Machine,
    trigger: &CompiledTrigger,
    entity: Option<&str>,
    error: &str,
) {
    tracing::warn!(machine = m.id(), trigger = %trigger.id, entity, error, "trigger failed");
    runtime.emit(&StateMachineEvent::TriggerFailed {
        machine: m.id().to_owned(),
        trigger: trigger.id.clone(),
        entity: entity.map(str::to_owned),
        error: error.to_owned(),
    });
}

/// Fires `trigger` for `entity` if it is (still) in the trigger's state, under its lock.
pub(crate) async fn fire(
    runtime: &Runtime,
    m: &Machine,
    trigger: &CompiledTrigger,
    entity: &str,
    record: Option<Value>,
    now: DateTime<Utc>,
) -> Result<Fired> {
    entity::check_entity(entity)?;
    let mut lock = runtime.lock(m, entity).await?;
    let result = fire_locked(runtime, m, trigger, entity, record, now, &mut lock).await;
    release(lock).await;
    let fired = result?;
    if !matches!(fired, Fired::Skipped) {
        runtime.emit(&StateMachineEvent::TriggerFired {
            machine: m.id().to_owned(),
            trigger: trigger.id.clone(),
            entity: entity.to_owned(),
            sent: match &fired {
                Fired::Sent(t) => Some(t.event.clone()),
                _ => None,
            },
        });
    }
    Ok(fired)
}

async fn fire_locked(
    runtime: &Runtime,
    m: &Machine,
    trigger: &CompiledTrigger,
    entity: &str,
    record: Option<Value>,
    now: DateTime<Utc>,
    lock: &mut s3db_core::plugin::LockGuard,
) -> Result<Fired> {
    let storage = runtime.cx.storage();
    let mut current = runtime.load(m, entity).await?;
    let state = current
        .as_ref()
        .map_or_else(|| m.initial_state().to_owned(), |(s, _)| s.state.clone());
    if state != trigger.state {
        if current.is_some() {
            // Not in the trigger's state: its marker there is stale (no transition is under
            // way: we hold the lock).
            let stale = entity::index_key(storage, m.resource(), m.id(), &trigger.state, entity)?;
            storage.delete(&stale).await?;
        }
        return Ok(Fired::Skipped);
    }
    let count = current
        .as_ref()
        .and_then(|(s, _)| s.fired.get(&trigger.id).copied())
        .unwrap_or(0);
    let reached = trigger.max_triggers.is_some_and(|max| count >= max);
    let effect = match (&trigger.on_max_reached, reached) {
        (_, false) => trigger.effect.clone(),
        (Some(event), true) => Effect::Send(event.clone()),
        (None, true) => return Ok(Fired::Skipped),
    };
    let tc = TriggerContext {
        machine: m.id().to_owned(),
        entity: entity.to_owned(),
        state: state.clone(),
        trigger: trigger.id.clone(),
        record,
        now,
        database: runtime.cx.database()?,
    };
    let ttl = runtime.settings.lock_ttl;
    if !reached && let Some(condition) = &trigger.condition {
        match renewing(lock, ttl, condition.check(&tc)).await {
            Ok(true) => {}
            Ok(false) => return Ok(Fired::Skipped),
            Err(e) => {
                return Err(StateMachineError::TriggerFailed {
                    machine: m.id().to_owned(),
                    trigger: trigger.id.clone(),
                    entity: entity.to_owned(),
                    reason: format!("condition: {e}"),
                });
            }
        }
    }
    if !reached && trigger.max_triggers.is_some() {
        // Count the firing first, by a conditional write on the state read: two processes
        // that both see the entity due cannot both count (and fire) it.
        let (mut stored, etag) = match current.take() {
            Some(c) => c,
            None => runtime.create_initial(m, entity).await?,
        };
        stored.fired.insert(trigger.id.clone(), count + 1);
        let key = runtime.state_key(m, entity)?;
        let etag = match storage
            .update_entry(&key, &stored.to_map(), SetOptions::new(), &etag)
            .await
        {
            Ok(etag) => etag,
            Err(e) if e.is_conflict() => {
                return Err(StateMachineError::Conflict {
                    machine: m.id().to_owned(),
                    entity: entity.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        current = Some((stored, etag));
    }
    match effect {
        Effect::Send(event) => {
            let context = json!({"trigger": trigger.id, "now": now.to_rfc3339()});
            let t = runtime
                .apply(m, entity, &event, context, lock, current)
                .await?;
            Ok(Fired::Sent(t))
        }
        Effect::Action(action) => {
            renewing(lock, ttl, action.run(&tc)).await.map_err(|e| {
                StateMachineError::TriggerFailed {
                    machine: m.id().to_owned(),
                    trigger: trigger.id.clone(),
                    entity: entity.to_owned(),
                    reason: format!("action: {e}"),
                }
            })?;
            Ok(Fired::Ran)
        }
        Effect::Nothing => Ok(Fired::Skipped),
    }
}

async fn date_loop(
    runtime: Arc<Runtime>,
    triggers: Vec<(Machine, usize)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = runtime.settings.trigger_check_interval;
    while pause(&runtime, period, &mut shutdown).await {
        let now = Utc::now();
        for (m, index) in &triggers {
            if let Some(trigger) = trigger_of(m, *index) {
                let span = tracing::debug_span!("state machine date check", machine = m.id(), trigger = %trigger.id);
                fire_state(&runtime, m, trigger, now).instrument(span).await;
            }
        }
    }
}

async fn event_loop(
    runtime: Arc<Runtime>,
    triggers: Vec<(Machine, usize)>,
    mut events: broadcast::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let event = tokio::select! {
            e = events.recv() => e,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        let (resource, record, kind) = match event {
            Ok(Event::Inserted { resource, record }) => (resource, record, WriteKind::Insert),
            Ok(Event::Updated {
                resource, after, ..
            }) => (resource, after, WriteKind::Update),
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "state machine event triggers fell behind; {n} database events were missed"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if s3db_core::plugin::is_internal_resource(&resource) {
            continue;
        }
        for (m, index) in &triggers {
            let Some(trigger) = trigger_of(m, *index) else {
                continue;
            };
            let CompiledKind::Event(source) = &trigger.kind else {
                continue;
            };
            let listened = source.resource.as_deref().unwrap_or(m.resource());
            let kind_matches = source.kind == WriteKind::Any || source.kind == kind;
            if listened != resource || !kind_matches {
                continue;
            }
            let entity = match &source.entity_field {
                Some(field) => match record.get(field) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => continue,
                },
                None => record.id().to_owned(),
            };
            if entity::check_entity(&entity).is_err() {
                continue;
            }
            let span = tracing::debug_span!("state machine event trigger", machine = m.id(), trigger = %trigger.id, entity = %entity);
            async {
                // A cheap look first: most writes concern entities in other states.
                match runtime.load(m, &entity).await {
                    Ok(current) => {
                        let state =
                            current.map_or_else(|| m.initial_state().to_owned(), |(s, _)| s.state);
                        if state != trigger.state {
                            return;
                        }
                    }
                    Err(e) => {
                        report(&runtime, m, trigger, Some(&entity), &e.to_string());
                        return;
                    }
                }
                if let Err(e) = fire(
                    &runtime,
                    m,
                    trigger,
                    &entity,
                    Some(record.to_json()),
                    Utc::now(),
                )
                .await
                {
                    report(&runtime, m, trigger, Some(&entity), &e.to_string());
                }
            }
            .instrument(span)
            .await;
        }
    }
}
