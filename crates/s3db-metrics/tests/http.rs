//! The HTTP endpoint: a real request to the bound address, and a closed port after stop.

mod common;

use s3db_core::plugin::CustomEvent;
use std::time::{Duration, Instant};

use common::{connect, http_request, parse_prometheus, users, workload};
use s3db_core::Error;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
use s3db_core::testing::TestStore;
use s3db_metrics::{CONTENT_TYPE, MetricsEvent, MetricsPlugin};
use tokio::net::TcpStream;

fn plugin() -> MetricsPlugin {
    MetricsPlugin::builder()
        .http_endpoint("127.0.0.1:0")
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether a connection to `addr` is refused (retrying briefly: closing is not instantaneous on
/// every platform).
async fn refused(addr: std::net::SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn serves_get_metrics_and_closes_the_port_at_uninstall() -> TestResult {
    let t = TestStore::memory("metrics_http");
    let db = connect(t.conn.clone()).await?;
    let mut events = db.subscribe();
    let metrics = db.use_plugin(plugin()).await?;
    let addr = metrics
        .local_addr()
        .unwrap_or_else(|| panic!("the endpoint is bound after start"));
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let mut listening = None;
    while let Ok(event) = events.try_recv() {
        if let Some(MetricsEvent::Listening { addr }) = MetricsEvent::from_event(&event) {
            listening = Some(addr);
        }
    }
    assert_eq!(listening, Some(addr), "a typed Listening event");

    let users = db.create_resource(users()).await?;
    workload(&users).await?;
    let (status, head, body) = http_request(addr, "GET", "/metrics").await?;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    let exposition = parse_prometheus(&body);
    assert_eq!(
        exposition.value(
            "s3db_operations_total",
            &[
                ("resource", "users"),
                ("operation", "get"),
                ("status", "error")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        body,
        metrics.render(),
        "the endpoint serves render() (nothing ran in between)"
    );

    let (status, _, body) = http_request(addr, "GET", "/metrics?x=1").await?;
    assert_eq!(status, 200);
    assert!(body.contains("s3db_operations_total"));
    let (status, head, body) = http_request(addr, "HEAD", "/metrics").await?;
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    let (status, _, _) = http_request(addr, "GET", "/other").await?;
    assert_eq!(status, 404);
    let (status, head, _) = http_request(addr, "POST", "/metrics").await?;
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET, HEAD"));

    let cx = db
        .plugin_context("metrics")
        .unwrap_or_else(|| panic!("context"));
    assert_eq!(
        cx.running_tasks(),
        2,
        "the endpoint and the background task"
    );
    db.uninstall_plugin("metrics", false).await?;
    assert_eq!(cx.running_tasks(), 0);
    assert!(metrics.local_addr().is_none());
    assert!(refused(addr).await, "the port is closed after uninstall");
    Ok(())
}

#[tokio::test]
async fn disconnect_closes_the_port_too() -> TestResult {
    let t = TestStore::memory("metrics_http_disconnect");
    let db = s3db_core::Database::builder()
        .connection(t.conn.clone())
        .plugin(plugin())
        .connect()
        .await?;
    let metrics = db
        .plugin::<MetricsPlugin>()
        .unwrap_or_else(|| panic!("installed"));
    let addr = metrics.local_addr().unwrap_or_else(|| panic!("bound"));
    let (status, _, _) = http_request(addr, "GET", "/metrics").await?;
    assert_eq!(status, 200);
    // A client that connects and says nothing does not keep the server from stopping.
    let idle = TcpStream::connect(addr).await?;
    db.disconnect().await?;
    assert!(refused(addr).await, "the port is closed after disconnect");
    drop(idle);
    Ok(())
}

#[tokio::test]
async fn a_port_in_use_fails_the_start_and_rolls_back() -> TestResult {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let t = TestStore::memory("metrics_http_in_use");
    let db = connect(t.conn.clone()).await?;
    let users = db.create_resource(users()).await?;
    let result = db
        .use_plugin(
            MetricsPlugin::builder()
                .http_endpoint(addr.to_string())
                .build()?,
        )
        .await;
    match result {
        Err(Error::Plugin { plugin, source }) => {
            assert_eq!(plugin, "metrics");
            assert!(source.to_string().contains("cannot listen"), "{source}");
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
    assert!(db.plugins().is_empty());
    assert_eq!(users.interceptor_count(), (0, 0), "rolled back");
    Ok(())
}
