//! Helpers shared by the queue's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use s3db_core::{ConnectionString, Database, Key, Metadata, Result, Store};
use s3db_queue::{HandlerError, Message, QueueBuilder, S3Queue};

pub type TestResult = Result<()>;

pub const QUEUE: &str = "jobs";

pub async fn connect(conn: &ConnectionString) -> Result<Database> {
    Database::builder().connection(conn.clone()).connect().await
}

/// A queue builder with test-sized timings.
pub fn fast() -> QueueBuilder {
    S3Queue::builder(QUEUE)
        .poll_interval(Duration::from_millis(20))
        .visibility_timeout(Duration::from_secs(5))
        .retry_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
        .stop_timeout(Duration::from_millis(500))
}

/// A database with `queue` installed.
pub async fn open(conn: &ConnectionString, queue: S3Queue) -> Result<(Database, Arc<S3Queue>)> {
    let db = connect(conn).await?;
    let q = db.use_plugin(queue).await?;
    Ok((db, q))
}

fn key(k: &str) -> Result<Key> {
    Key::parse(k)
}

/// Records one execution of the handler on `msg`: creates `effects/<id>/<n>` for the first free
/// `n` (conditional creates, so concurrent executions each get their own marker).
pub async fn record_effect(store: &Store, msg: &Message, tag: &str) -> Result<()> {
    for n in 1..1000 {
        let meta = Metadata::new()
            .with("token", msg.token())
            .with("attempt", msg.attempt().to_string())
            .with("tag", tag);
        match store
            .create(
                &key(&format!("effects/{}/{n}", msg.id()))?,
                meta,
                "x".into(),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
    }
    Err(s3db_core::Error::Refused {
        operation: "record effect",
        reason: "too many executions".into(),
    })
}

/// A handler that records its effect and optionally sleeps first.
pub fn recording(
    store: Store,
    tag: String,
    sleep: Duration,
) -> impl Fn(Message) -> handler_future::BoxFut + Send + Sync + 'static {
    move |msg: Message| {
        let (store, tag) = (store.clone(), tag.clone());
        Box::pin(async move {
            if !sleep.is_zero() {
                tokio::time::sleep(sleep).await;
            }
            record_effect(&store, &msg, &tag).await?;
            Ok::<(), HandlerError>(())
        })
    }
}

pub mod handler_future {
    use std::future::Future;
    use std::pin::Pin;

    pub type BoxFut =
        Pin<Box<dyn Future<Output = Result<(), s3db_queue::HandlerError>> + Send + 'static>>;
}

/// Every execution marker: message id → the markers' (token, attempt, tag).
pub async fn effects(store: &Store) -> Result<BTreeMap<String, Vec<(String, String, String)>>> {
    let mut out: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for k in store.list_keys(Some(&key("effects")?)).await? {
        let parts: Vec<&str> = k.parts().collect();
        let id = parts.get(1).copied().unwrap_or_default().to_owned();
        let head = store.head(&k).await?;
        let get = |n: &str| head.metadata.get(n).unwrap_or_default().to_owned();
        out.entry(id)
            .or_default()
            .push((get("token"), get("attempt"), get("tag")));
    }
    Ok(out)
}

/// Waits until `cond` holds (checking every 20 ms), or panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await? {
            return Ok(());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
