//! The plugin conformance suite of s3db-core.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, users};
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_queue_consumer::{Consumer, MemoryQueue, QueueConsumerPlugin, QueueMessage};
use serde_json::json;

fn make() -> QueueConsumerPlugin {
    let queue = MemoryQueue::builder("conformance")
        .visibility_timeout(Duration::from_secs(1))
        .wait_time(Duration::from_millis(50))
        .build();
    QueueConsumerPlugin::builder()
        .consumer(Consumer::new("users", queue).resources(["users"]))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> s3db_core::Result<()> {
    check_plugin(&PluginCase {
        make: Box::new(make),
        resource: users(),
        exercise: Arc::new(|db, users| {
            Box::pin(async move {
                let plugin = db
                    .plugin::<QueueConsumerPlugin>()
                    .unwrap_or_else(|| panic!("installed"));
                plugin
                    .publish(
                        "users",
                        &QueueMessage::insert("users", json!({"id": "c1", "name": "C"})),
                    )
                    .await?;
                plugin
                    .publish(
                        "users",
                        &QueueMessage::update("users", "c1", json!({"age": 4})),
                    )
                    .await?;
                eventually(Duration::from_secs(10), "both applied", || async {
                    plugin.stats("users").is_some_and(|s| s.applied == 2)
                })
                .await;
                assert_eq!(users.get("c1").await?.get("age"), Some(&json!(4)));
                assert_eq!(plugin.running_consumers(), 1);
                Ok(())
            })
        }),
    })
    .await
}
