//! What the plugin stores per entity, and where.
//!
//! ```text
//! resource=<r>/plugin=state-machine/entities/<machine>/<entity>        the entity's state (CAS)
//! resource=<r>/plugin=state-machine/index/<machine>/<state>/<entity>   "entity is in state"
//! plugin=state-machine/locks/<machine>~<entity>                        the per-entity lock
//! plugin=state-machine/ticks/<machine>/<trigger>                       last cron tick claimed
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use s3db_core::plugin::PluginStorage;
use s3db_core::{ETag, Key};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, StateMachineError};
use crate::transition::Transition;

/// The stored state of one entity in one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EntityState {
    /// The current state.
    pub(crate) state: String,
    /// How many transitions the entity made (0 after `initialize`).
    pub(crate) seq: u64,
    /// When the state was last written.
    pub(crate) updated_at: DateTime<Utc>,
    /// The last transition (so a log entry lost to a crash can be written again).
    #[serde(default)]
    pub(crate) last: Option<Transition>,
    /// How often each trigger fired during this stay in the state.
    #[serde(default)]
    pub(crate) fired: BTreeMap<String, u32>,
}

impl EntityState {
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Checks an entity id (it becomes a key part).
pub(crate) fn check_entity(entity: &str) -> Result<()> {
    let reason = if entity.contains('~') {
        Some("it contains '~'".to_owned())
    } else {
        s3db_core::key::check_part(entity)
            .err()
            .map(|e| e.to_string())
    };
    match reason {
        Some(reason) => Err(StateMachineError::BadEntity {
            entity: entity.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

pub(crate) fn state_key(
    storage: &PluginStorage,
    resource: &str,
    machine: &str,
    entity: &str,
) -> Result<Key> {
    Ok(storage.key(Some(resource), &["entities", machine, entity])?)
}

pub(crate) fn index_key(
    storage: &PluginStorage,
    resource: &str,
    machine: &str,
    state: &str,
    entity: &str,
) -> Result<Key> {
    Ok(storage.key(Some(resource), &["index", machine, state, entity])?)
}

pub(crate) fn index_prefix(machine: &str, state: &str) -> String {
    format!("index/{machine}/{state}")
}

pub(crate) fn lock_name(machine: &str, entity: &str) -> String {
    format!("{machine}~{entity}")
}

pub(crate) fn tick_key(storage: &PluginStorage, machine: &str, trigger: &str) -> Result<Key> {
    Ok(storage.key(None, &["ticks", machine, trigger])?)
}

/// Reads an entity's state with its version.
pub(crate) async fn load(
    storage: &PluginStorage,
    key: &Key,
    machine: &str,
    entity: &str,
) -> Result<Option<(EntityState, ETag)>> {
    let Some(entry) = storage.get_entry(key).await? else {
        return Ok(None);
    };
    let state: EntityState = serde_json::from_value(Value::Object(entry.data)).map_err(|e| {
        StateMachineError::Corrupt {
            machine: machine.to_owned(),
            entity: entity.to_owned(),
            reason: e.to_string(),
        }
    })?;
    Ok(Some((state, entry.etag)))
}
