//! The plugin conformance suite of s3db-core, with data recorded and without.

mod common;

use std::sync::Arc;

use common::users;
use s3db_audit::{AuditExt, AuditOperation, AuditPlugin, AuditUser};
use s3db_core::Error;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use serde_json::json;

fn case(make: fn() -> AuditPlugin) -> PluginCase<AuditPlugin> {
    PluginCase {
        make: Box::new(make),
        resource: users(),
        exercise: Arc::new(|db, users| {
            Box::pin(async move {
                AuditUser::scope("tester", async {
                    users
                        .insert(json!({"id": "c1", "name": "C", "region": "eu"}))
                        .await?;
                    users.update("c1", json!({"region": "us"})).await?;
                    users.delete("c1").await?;
                    Ok::<(), Error>(())
                })
                .await?;
                let audit = db
                    .plugin::<AuditPlugin>()
                    .unwrap_or_else(|| panic!("installed"));
                let history = audit.record_history("users", "c1").await?;
                assert_eq!(
                    history
                        .iter()
                        .map(|e| (e.operation, e.user.as_str()))
                        .collect::<Vec<_>>(),
                    [
                        (AuditOperation::Insert, "tester"),
                        (AuditOperation::Update, "tester"),
                        (AuditOperation::Delete, "tester"),
                    ]
                );
                assert!(users.audit().is_some());
                assert_eq!(audit.counters().failed, 0);
                Ok(())
            })
        }),
    }
}

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> Result<(), Error> {
    check_plugin(&case(AuditPlugin::new)).await
}

#[tokio::test]
async fn passes_without_data() -> Result<(), Error> {
    check_plugin(&case(|| {
        AuditPlugin::builder()
            .include_data(false)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }))
    .await
}
