//! A tiny HTTP/1.1 responder for `GET /metrics`: one request per connection, then close.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Shared;
use crate::prometheus::CONTENT_TYPE;

/// The path served.
pub const METRICS_PATH: &str = "/metrics";
/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once (a scraper needs one).
const MAX_CONNECTIONS: usize = 64;

/// Accepts connections until shutdown; dropping the listener (when this returns or is aborted)
/// closes the port, and dropping the `JoinSet` aborts connections still open.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if connections.len() < MAX_CONNECTIONS {
                        connections.spawn(respond(stream, Arc::clone(&shared)));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
}

/// Reads one request head and answers it.
async fn respond(mut stream: TcpStream, shared: Arc<Shared>) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            let _ = write(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                b"bad request\n",
                true,
            )
            .await;
            return;
        }
        Ok(Err(_)) | Err(_) => return,
    };
    let mut parts = head.lines().next().unwrap_or_default().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        let _ = write(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            true,
        )
        .await;
        return;
    };
    if !version.starts_with("HTTP/1.") {
        let _ = write(
            &mut stream,
            "505 HTTP Version Not Supported",
            "text/plain",
            b"HTTP/1.x only\n",
            true,
        )
        .await;
        return;
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let result = match (method, path) {
        ("GET" | "HEAD", METRICS_PATH) => {
            let body = shared.render();
            write(
                &mut stream,
                "200 OK",
                CONTENT_TYPE,
                body.as_bytes(),
                method == "GET",
            )
            .await
        }
        (_, METRICS_PATH) => {
            write(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                b"use GET\n",
                true,
            )
            .await
        }
        _ => {
            write(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                true,
            )
            .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "metrics endpoint: writing the response failed");
    }
}

/// Reads up to the end of the request head (`\r\n\r\n`); `None` if the client sent something too
/// large or not UTF-8, or closed before finishing the head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(String::from_utf8(buf).ok());
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

async fn write(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    if with_body {
        bytes.extend_from_slice(body);
    }
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}
