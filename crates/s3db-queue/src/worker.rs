//! The workers of one process: a poller that claims up to `concurrency` messages and a task per
//! claimed message that runs the handler and settles the outcome.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::claim::Claim;
use crate::handler::{Message, SharedHandler};
use crate::queue::QueueCore;

/// Claims and handles messages until `stop` (or the plugin's shutdown) is signalled; then waits
/// up to `stop_timeout` for running handlers, aborts the rest and reports on `done`.
pub(crate) async fn run(
    core: Arc<QueueCore>,
    handler: SharedHandler,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    let mut shutdown = core.cx.shutdown_signal();
    let permits = Arc::new(Semaphore::new(core.config.concurrency));
    let wake = Arc::new(Notify::new());
    let mut running = JoinSet::new();
    let queue = core.config.queue.clone();
    tracing::info!(%queue, concurrency = core.config.concurrency, worker = %core.worker, "s3queue workers started");
    loop {
        if *stop.borrow() || *shutdown.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = permits.available_permits();
        let mut claimed = 0;
        if free > 0 {
            let span = tracing::debug_span!("s3queue claim round", %queue, free);
            match core.claim_some(free).instrument(span).await {
                Ok(claims) => {
                    for claim in claims {
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            break;
                        };
                        claimed += 1;
                        running.spawn(handle(
                            Arc::clone(&core),
                            Arc::clone(&handler),
                            claim,
                            permit,
                            Arc::clone(&wake),
                        ));
                    }
                }
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "s3queue: claiming failed; retrying next poll");
                }
            }
        }
        if claimed > 0 && permits.available_permits() > 0 {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(core.config.poll_interval) => {}
            () = wake.notified() => {}
            _ = stop.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
    let drained = tokio::time::timeout(core.config.stop_timeout, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(%queue, aborted = running.len(),
            "s3queue: handlers still running at stop were aborted; their messages become visible after the visibility timeout");
    }
    running.shutdown().await;
    tracing::info!(%queue, "s3queue workers stopped");
    let _ = done.send(true);
}

/// Runs the handler on one claimed message and settles the outcome under the claim.
async fn handle(
    core: Arc<QueueCore>,
    handler: SharedHandler,
    claim: Arc<Claim>,
    permit: OwnedSemaphorePermit,
    wake: Arc<Notify>,
) {
    let entry = claim.entry();
    let span = tracing::info_span!("s3queue message", queue = %core.config.queue, id = %claim.id, attempt = entry.attempts);
    async {
        let message = Message {
            id: claim.id.clone(),
            data: entry.data.clone(),
            attempt: entry.attempts,
            max_attempts: core.config.max_attempts,
            token: claim.token.clone(),
            enqueued_at: crate::entry::time(entry.enqueued_at).unwrap_or_default(),
            claim: Arc::clone(&claim),
        };
        let outcome = match AssertUnwindSafe(handler.on_message(message))
            .catch_unwind()
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(panic) => Err(format!("the handler panicked: {}", panic_text(&*panic))),
        };
        if let Err(e) = core.settle(&claim, outcome).await {
            tracing::warn!(error = %e,
                "s3queue: writing the outcome failed; the message becomes visible again after its visibility timeout");
        }
    }
    .instrument(span)
    .await;
    drop(permit);
    wake.notify_one();
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
