//! The stored form of a message, its states, and the layout of a queue in the bucket.
//!
//! ```text
//! plugin=s3-queue-<queue>/live/<id>   one entry per message not finished yet (the only place
//!                                     workers list); its state, attempts, visibility deadline
//!                                     and claim token live in the same object, so one ETag
//!                                     guards all of them
//! plugin=s3-queue-<queue>/done/<id>   the completion receipt of a completed message
//! plg_s3queue_<queue>_dead (resource) one record per dead message, id = message id
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Sub-prefix of live entries.
pub(crate) const LIVE: &str = "live";
/// Sub-prefix of completion receipts.
pub(crate) const DONE: &str = "done";

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// Waiting to be claimed (visible now, or after a retry delay).
    Pending,
    /// Claimed by a worker until its visibility deadline.
    Processing,
    /// Handled: its completion is committed.
    Completed,
    /// Failed its last attempt: moved to the dead-letter resource.
    Dead,
}

impl State {
    /// Whether nothing can change it any more.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, State::Completed | State::Dead)
    }
}

/// A live entry (`live/<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredEntry {
    pub(crate) state: State,
    #[serde(default)]
    pub(crate) data: Value,
    /// Claims so far.
    pub(crate) attempts: u32,
    /// Pending: claimable from then; processing: the claim's deadline (epoch ms).
    pub(crate) visible_at: i64,
    pub(crate) enqueued_at: i64,
    /// The token of the latest claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// Who holds (or held) the latest claim, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
    /// When it became completed or dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) finished_at: Option<i64>,
}

impl StoredEntry {
    pub(crate) fn new(data: Value, now: i64, visible_at: i64) -> Self {
        Self {
            state: State::Pending,
            data,
            attempts: 0,
            visible_at,
            enqueued_at: now,
            token: None,
            worker: None,
            last_error: None,
            finished_at: None,
        }
    }

    pub(crate) fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    pub(crate) fn from_map(map: Map<String, Value>) -> Result<Self, serde_json::Error> {
        serde_json::from_value(Value::Object(map))
    }

    /// Whether a worker may claim it at `now`: pending and visible, or processing with its
    /// deadline passed (its worker died or is too slow).
    pub(crate) fn claimable(&self, now: i64) -> bool {
        matches!(self.state, State::Pending | State::Processing) && self.visible_at <= now
    }

    pub(crate) fn claimed(&self, token: &str, worker: &str, deadline: i64) -> Self {
        Self {
            state: State::Processing,
            attempts: self.attempts.saturating_add(1),
            visible_at: deadline,
            token: Some(token.to_owned()),
            worker: Some(worker.to_owned()),
            ..self.clone()
        }
    }

    pub(crate) fn finished(&self, state: State, error: Option<String>, now: i64) -> Self {
        Self {
            state,
            last_error: error.or_else(|| self.last_error.clone()),
            finished_at: Some(now),
            ..self.clone()
        }
    }

    pub(crate) fn retry_at(&self, error: String, visible_at: i64) -> Self {
        Self {
            state: State::Pending,
            visible_at,
            last_error: Some(error),
            ..self.clone()
        }
    }

    pub(crate) fn holds(&self, token: &str) -> bool {
        self.token.as_deref() == Some(token)
    }
}

/// The completion receipt (`done/<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredReceipt {
    pub(crate) attempts: u32,
    pub(crate) token: String,
    #[serde(default)]
    pub(crate) worker: String,
    pub(crate) enqueued_at: i64,
    pub(crate) completed_at: i64,
}

impl StoredReceipt {
    pub(crate) fn of(entry: &StoredEntry, now: i64) -> Self {
        Self {
            attempts: entry.attempts,
            token: entry.token.clone().unwrap_or_default(),
            worker: entry.worker.clone().unwrap_or_default(),
            enqueued_at: entry.enqueued_at,
            completed_at: entry.finished_at.unwrap_or(now),
        }
    }

    pub(crate) fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// What [`S3Queue::message`](crate::S3Queue::message) tells about one message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MessageInfo {
    /// The message id.
    pub id: String,
    /// Its state.
    pub state: State,
    /// Claims so far.
    pub attempts: u32,
    /// The payload (`Value::Null` for a completed message: receipts do not keep it).
    pub data: Value,
    /// The token of the latest claim.
    pub token: Option<String>,
    /// Who holds or held the latest claim.
    pub worker: Option<String>,
    /// The error of the latest failed attempt.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub enqueued_at: Option<DateTime<Utc>>,
    /// Pending: claimable from then; processing: the claim's deadline.
    pub visible_at: Option<DateTime<Utc>>,
    /// When it was completed or died.
    pub finished_at: Option<DateTime<Utc>>,
}

pub(crate) fn time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

impl MessageInfo {
    pub(crate) fn live(id: &str, e: StoredEntry) -> Self {
        Self {
            id: id.to_owned(),
            state: e.state,
            attempts: e.attempts,
            data: e.data,
            token: e.token,
            worker: e.worker,
            last_error: e.last_error,
            enqueued_at: time(e.enqueued_at),
            visible_at: time(e.visible_at),
            finished_at: e.finished_at.and_then(time),
        }
    }

    pub(crate) fn completed(id: &str, r: StoredReceipt) -> Self {
        Self {
            id: id.to_owned(),
            state: State::Completed,
            attempts: r.attempts,
            data: Value::Null,
            token: Some(r.token),
            worker: Some(r.worker).filter(|w| !w.is_empty()),
            last_error: None,
            enqueued_at: time(r.enqueued_at),
            visible_at: None,
            finished_at: time(r.completed_at),
        }
    }
}

/// Now, in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transitions_keep_what_they_should() {
        let e = StoredEntry::new(json!({"a": 1}), 10, 10);
        assert!(e.claimable(10) && !e.claimable(9));
        let c = e.claimed("t1", "w", 100);
        assert_eq!(
            (c.state, c.attempts, c.visible_at),
            (State::Processing, 1, 100)
        );
        assert!(c.holds("t1") && !c.holds("t2"));
        assert!(!c.claimable(99) && c.claimable(100), "an expired claim");
        let r = c.retry_at("boom".into(), 150);
        assert_eq!(
            (r.state, r.attempts, r.last_error.as_deref()),
            (State::Pending, 1, Some("boom"))
        );
        assert!(r.holds("t1"), "the latest token stays");
        let done = r
            .claimed("t2", "w", 300)
            .finished(State::Completed, None, 200);
        assert_eq!((done.attempts, done.finished_at), (2, Some(200)));
        assert!(!done.claimable(i64::MAX));
        let back = StoredEntry::from_map(done.to_map()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, done);
        assert_eq!(StoredReceipt::of(&done, 0).token, "t2");
    }
}
