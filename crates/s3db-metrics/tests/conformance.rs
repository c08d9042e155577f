//! The plugin conformance suite of s3db-core: defaults, and with the HTTP endpoint and flushing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{EXPECTED, http_request, users, workload};
use s3db_core::Error;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_metrics::{MetricsExt, MetricsPlugin};

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> Result<(), Error> {
    check_plugin(&PluginCase {
        make: Box::new(MetricsPlugin::new),
        resource: users(),
        exercise: Arc::new(|db, users| {
            Box::pin(async move {
                workload(&users).await?;
                let p = db
                    .plugin::<MetricsPlugin>()
                    .unwrap_or_else(|| panic!("installed"));
                let get = p.snapshot().operation("users", "get").cloned();
                assert_eq!(get.map(|g| (g.count, g.errors)), Some((7, 2)));
                assert!(users.metrics().is_some());
                Ok(())
            })
        }),
    })
    .await
}

#[tokio::test]
async fn passes_with_the_http_endpoint_and_flushing() -> Result<(), Error> {
    check_plugin(&PluginCase {
        make: Box::new(|| {
            MetricsPlugin::builder()
                .http_endpoint("127.0.0.1:0")
                .flush_every(Duration::from_millis(30))
                .slow_threshold(Duration::ZERO)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        }),
        resource: users(),
        exercise: Arc::new(|db, users| {
            Box::pin(async move {
                workload(&users).await?;
                let p = db
                    .plugin::<MetricsPlugin>()
                    .unwrap_or_else(|| panic!("installed"));
                let addr = p.local_addr().unwrap_or_else(|| panic!("listening"));
                let (status, _, body) = http_request(addr, "GET", "/metrics")
                    .await
                    .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
                assert_eq!(status, 200);
                assert!(body.contains(
                    r#"s3db_operations_total{resource="users",operation="get",status="error"} 2"#
                ));
                // Flush what is left, so that stopping has nothing more to write.
                p.flush().await?;
                let flushed: u64 = p.history().await?.iter().map(|r| r.count).sum();
                assert_eq!(flushed, EXPECTED.iter().map(|(_, c, _)| c).sum::<u64>());
                assert!(!p.slow_history().await?.is_empty());
                Ok(())
            })
        }),
    })
    .await
}
