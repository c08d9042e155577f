//! One claim of a message by this process, and every write made under it.
//!
//! A claim remembers the ETag of the entry version it wrote. Every later write (extend, complete,
//! retry, dead) is a conditional update on that ETag; when it is refused, the entry is read
//! again and the claim's token decides: still ours and processing (only our own earlier write
//! can have changed it) → retry on the new ETag; already in the target state with our token (our
//! write landed but its answer was lost) → done; anything else → the claim is lost and nothing is
//! written.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use s3db_core::Key;
use s3db_core::plugin::{Error, Result};
use s3db_core::store::ETag;

use crate::entry::{State, StoredEntry, now_ms, time};
use crate::queue::QueueCore;

/// How many times a write under a claim is tried through transient failures.
const WRITE_TRIES: u32 = 6;

/// One claim held by this process.
pub(crate) struct Claim {
    pub(crate) core: Arc<QueueCore>,
    pub(crate) id: String,
    pub(crate) key: Key,
    pub(crate) token: String,
    /// The version this claim last wrote, and what it wrote.
    state: Mutex<(ETag, StoredEntry)>,
}

/// How a write under a claim ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Written {
    /// The entry now holds this (written by us, now or by an earlier try).
    Done(StoredEntry),
    /// Another worker claimed the message: nothing was written.
    Lost,
}

impl Claim {
    pub(crate) fn new(
        core: Arc<QueueCore>,
        id: String,
        key: Key,
        token: String,
        etag: ETag,
        entry: StoredEntry,
    ) -> Self {
        Self {
            core,
            id,
            key,
            token,
            state: Mutex::new((etag, entry)),
        }
    }

    fn current(&self) -> (ETag, StoredEntry) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, etag: ETag, entry: StoredEntry) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (etag, entry);
    }

    pub(crate) fn entry(&self) -> StoredEntry {
        self.current().1
    }

    pub(crate) fn deadline(&self) -> DateTime<Utc> {
        time(self.current().1.visible_at).unwrap_or_else(Utc::now)
    }

    /// Moves the deadline to `by` from now.
    pub(crate) async fn extend(&self, by: Duration) -> Result<()> {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        match self
            .write(|e| {
                let mut next = e.clone();
                next.visible_at = now_ms().saturating_add(by);
                next
            })
            .await?
        {
            Written::Done(_) => Ok(()),
            Written::Lost => Err(Error::PreconditionFailed {
                key: self.key.to_string(),
            }),
        }
    }

    /// Writes `change(current)` under the claim. Only a processing entry holding our token is
    /// changed.
    pub(crate) async fn write(
        &self,
        change: impl Fn(&StoredEntry) -> StoredEntry,
    ) -> Result<Written> {
        let storage = self.core.cx.storage();
        let mut tries = 0;
        loop {
            tries += 1;
            let (etag, current) = self.current();
            if current.state != State::Processing || !current.holds(&self.token) {
                return Ok(Written::Lost);
            }
            let next = change(&current);
            let failure = match storage
                .update_entry(&self.key, &next.to_map(), Default::default(), &etag)
                .await
            {
                Ok(etag) => {
                    self.remember(etag, next.clone());
                    return Ok(Written::Done(next));
                }
                Err(e) => e,
            };
            // Refused or unknown outcome: look at what is there.
            let seen = match storage.get_entry(&self.key).await {
                Ok(seen) => seen,
                Err(e) if tries < WRITE_TRIES && e.is_transient() => {
                    tokio::time::sleep(pause(tries)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(seen) = seen else {
                // Gone: a final state of ours was written and then cleaned up, or the queue was
                // purged.
                return Ok(
                    if next.state.is_final() && self.core.receipt_is(&self.id, &self.token).await {
                        Written::Done(next)
                    } else {
                        Written::Lost
                    },
                );
            };
            let Ok(entry) = StoredEntry::from_map(seen.data) else {
                return Ok(Written::Lost);
            };
            if !entry.holds(&self.token) {
                return Ok(Written::Lost);
            }
            if entry.state == next.state && entry.visible_at == next.visible_at {
                // Our write landed; its answer was lost.
                self.remember(seen.etag, entry.clone());
                return Ok(Written::Done(entry));
            }
            if entry.state != State::Processing || tries >= WRITE_TRIES {
                if entry.state == State::Processing {
                    return Err(failure);
                }
                return Ok(Written::Lost);
            }
            if failure.is_transient() {
                tokio::time::sleep(pause(tries)).await;
            }
            self.remember(seen.etag, entry);
        }
    }
}

fn pause(tries: u32) -> Duration {
    Duration::from_millis(20u64.saturating_mul(1 << tries.min(6)))
}
