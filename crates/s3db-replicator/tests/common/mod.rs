//! Helpers shared by the replicator tests: a loopback HTTP server that records webhook requests
//! and answers what it is told, a target that can be switched off, event collection.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use s3db_core::plugin::{CustomEvent, Event, async_trait};
use s3db_core::{ConnectionString, Database, ResourceConfig, Result};
use s3db_replicator::{Change, ReplicationError, ReplicatorEvent, ReplicatorPlugin, Target};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub type TestResult = Result<()>;

/// Users: a name, an optional region and age.
pub fn users() -> ResourceConfig {
    ResourceConfig::new("users")
        .attribute("name", "string|required")
        .attribute("region", "string")
        .attribute("age", "integer")
        .paranoid(false)
}

pub async fn connect(conn: &ConnectionString) -> Result<Database> {
    Database::builder().connection(conn.clone()).connect().await
}

pub fn replicator_of(db: &Database) -> Arc<ReplicatorPlugin> {
    db.plugin::<ReplicatorPlugin>()
        .unwrap_or_else(|| panic!("the replicator plugin is installed"))
}

/// The replicator events received so far.
pub fn replicator_events(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) -> Vec<ReplicatorEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Some(e) = ReplicatorEvent::from_event(&event) {
            out.push(e);
        }
    }
    out
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct ServerState {
    received: Mutex<Vec<Received>>,
    /// Status of the next answers (200 unless set).
    status: AtomicU16,
    /// Answer 500 to this many requests first.
    fail_next: AtomicU32,
    /// Wait this long (ms) before answering.
    delay_ms: AtomicU64,
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records every request (one per connection).
#[derive(Clone)]
pub struct HookServer {
    pub url: String,
    state: Arc<ServerState>,
    stop: Arc<AtomicBool>,
}

impl HookServer {
    pub async fn start() -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the loopback server: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("loopback address: {e}"));
        let url = format!("http://{addr}/hook");
        let state = Arc::new(ServerState::default());
        state.status.store(200, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        tokio::spawn(async move {
            while !sp.load(Ordering::SeqCst) {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let _ = serve(socket, st).await;
                });
            }
        });
        HookServer { url, state, stop }
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The successful deliveries per `x-s3db-id`.
    pub fn delivered_per_id(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.received().iter().filter(|r| r.status < 300) {
            *out.entry(r.headers.get("x-s3db-id").cloned().unwrap_or_default())
                .or_default() += 1;
        }
        out
    }
}

async fn serve(mut socket: tokio::net::TcpStream, state: Arc<ServerState>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[header_end..]).unwrap_or(Value::Null);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing {
        500
    } else {
        state.status.load(Ordering::SeqCst)
    };
    if let Ok(mut r) = state.received.lock() {
        r.push(Received {
            path,
            headers,
            body,
            status,
        });
    }
    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    socket.write_all(answer.as_bytes()).await?;
    socket.shutdown().await
}

impl Drop for HookServer {
    fn drop(&mut self) {
        if Arc::strong_count(&self.stop) == 1 {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// A target that keeps what it receives in memory and can be switched off.
#[derive(Clone, Default)]
pub struct SwitchTarget {
    pub down: Arc<AtomicBool>,
    pub sent: Arc<Mutex<Vec<Change>>>,
}

impl SwitchTarget {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn sent(&self) -> Vec<Change> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Target for SwitchTarget {
    fn kind(&self) -> &'static str {
        "switch"
    }

    async fn send(&self, change: &Change) -> std::result::Result<(), ReplicationError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ReplicationError::Transport("switched off".into()));
        }
        if let Ok(mut s) = self.sent.lock() {
            s.push(change.clone());
        }
        Ok(())
    }
}
