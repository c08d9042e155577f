//! The plugin conformance suite, for every driver.

mod common;

use std::sync::Arc;

use common::*;
use s3db_cache::{CacheExt, CachePlugin, MemoryConfig, MultiConfig, S3Config, Strategy};
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_core::{Database, Resource};
use serde_json::json;

/// Writes and reads enough for every driver to store something.
fn exercise() -> Arc<
    dyn Fn(Database, Resource) -> futures::future::BoxFuture<'static, s3db_core::Result<()>>
        + Send
        + Sync,
> {
    Arc::new(|db, users| {
        Box::pin(async move {
            seed_users(&users).await?;
            for _ in 0..2 {
                assert_eq!(users.count().await?, 3);
                assert_eq!(users.list_ids().await?.len(), 3);
                assert_eq!(
                    users
                        .count_partition("byRegion", json!({"region": "eu"}))
                        .await?,
                    2
                );
                users.get("a").await?;
            }
            let cache = db
                .plugin::<CachePlugin>()
                .unwrap_or_else(|| panic!("installed"));
            assert!(cache.stats().hits >= 3, "{:?}", cache.stats());
            assert!(users.cache().is_some(), "the resource handle is attached");
            Ok(())
        })
    })
}

#[tokio::test]
async fn memory_driver_conforms() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(memory_cache),
        resource: users(),
        exercise: exercise(),
    })
    .await
}

#[tokio::test]
async fn s3_driver_conforms() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(|| CachePlugin::s3().build().unwrap_or_else(|e| panic!("{e}"))),
        resource: users(),
        exercise: exercise(),
    })
    .await
}

#[tokio::test]
async fn filesystem_driver_conforms() -> TestResult {
    let root = tempfile::tempdir().map_err(|e| s3db_core::Error::Refused {
        operation: "tempdir",
        reason: e.to_string(),
    })?;
    let base = root.path().to_path_buf();
    check_plugin(&PluginCase {
        make: Box::new(move || {
            // A fresh folder per database of the suite.
            let dir = base.join(format!("{:016x}", rand_id()));
            CachePlugin::filesystem(dir)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        }),
        resource: users(),
        exercise: exercise(),
    })
    .await
}

#[tokio::test]
async fn multi_driver_conforms() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(|| {
            CachePlugin::multi([MemoryConfig::new().into(), S3Config::new().into()])
                .strategy(Strategy::PromoteOnHit)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        }),
        resource: users(),
        exercise: exercise(),
    })
    .await
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn multi_config_is_reexported() {
    let _ = MultiConfig::new([MemoryConfig::new().into()]);
}
