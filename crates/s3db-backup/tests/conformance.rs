//! The core plugin conformance suite.

mod common;

use std::sync::Arc;

use s3db_backup::{BackupPlugin, RestoreMode};
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use serde_json::json;

#[tokio::test]
async fn the_plugin_conforms() -> common::TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().display().to_string();
    check_plugin(&PluginCase {
        make: Box::new(move || {
            BackupPlugin::builder()
                .filesystem(path.clone())
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        }),
        resource: common::notes(),
        exercise: Arc::new(|db, notes| {
            Box::pin(async move {
                notes.insert(json!({"id": "a", "text": "x"})).await?;
                let backup = db
                    .plugin::<BackupPlugin>()
                    .unwrap_or_else(|| panic!("installed"));
                let full = backup.full().await?;
                notes.delete("a").await?;
                backup.restore(&full.id, RestoreMode::Merge).await?;
                assert!(notes.exists("a").await?);
                Ok(())
            })
        }),
    })
    .await?;
    Ok(())
}
