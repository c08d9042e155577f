//! The SQS target against the SQS test server (moto): one message per change with the
//! `{resource, action, data, before}` body and attributes. Skipped with a printed reason when no
//! server is configured, except under `CI=true` where that fails.
#![cfg(feature = "sqs")]

mod common;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::{Credentials, Region};
use common::*;
use s3db_core::Database;
use s3db_core::testing::sqs_endpoint;
use s3db_replicator::{Replicator, ReplicatorPlugin, ResourceRule, SqsTarget};
use serde_json::{Value, json};

async fn client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

fn sqs_error(e: impl std::fmt::Display) -> s3db_core::Error {
    s3db_core::Error::Refused {
        operation: "sqs test",
        reason: e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_one_message_per_change() -> TestResult {
    let Some(endpoint) = sqs_endpoint() else {
        return Ok(());
    };
    let sqs = client(&endpoint).await;
    let name = format!("repl-{:x}", rand_suffix());
    let queue_url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .map_err(sqs_error)?
        .queue_url
        .unwrap_or_default();
    let target = SqsTarget::new(&queue_url)
        .endpoint(&endpoint)
        .credentials("test", "very-secret-key");
    assert!(!format!("{target:?}").contains("very-secret-key"));
    let db = Database::connect(&format!("memory://repl-sqs/{name}")).await?;
    let plugin = db
        .use_plugin(
            ReplicatorPlugin::builder()
                .replicator(
                    Replicator::new("queue", target)
                        .resource(ResourceRule::new("users").rename("customers")),
                )
                .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    users.insert(json!({"id": "q1", "name": "Q"})).await?;
    users.update("q1", json!({"age": 9})).await?;
    users.delete("q1").await?;
    assert_eq!(plugin.stats()["queue"].replicated, 3);

    let mut bodies: Vec<Value> = Vec::new();
    for _ in 0..10 {
        if bodies.len() >= 3 {
            break;
        }
        let got = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(sqs_error)?;
        for m in got.messages.unwrap_or_default() {
            let attrs = m.message_attributes.clone().unwrap_or_default();
            assert_eq!(
                attrs
                    .get("resource")
                    .and_then(|a| a.string_value.as_deref()),
                Some("customers")
            );
            bodies.push(
                serde_json::from_str(m.body.as_deref().unwrap_or("null")).unwrap_or(Value::Null),
            );
        }
    }
    bodies.sort_by_key(|b| match b["action"].as_str() {
        Some("insert") => 0,
        Some("update") => 1,
        _ => 2,
    });
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert_eq!(bodies[0]["action"], json!("insert"));
    assert_eq!(bodies[0]["resource"], json!("customers"));
    assert_eq!(bodies[0]["source_resource"], json!("users"));
    assert_eq!(bodies[0]["data"], json!({"name": "Q"}));
    assert_eq!(bodies[1]["before"], json!({"name": "Q"}));
    assert_eq!(bodies[1]["data"], json!({"name": "Q", "age": 9}));
    assert_eq!(bodies[2]["action"], json!("delete"));
    assert_eq!(bodies[2]["before"], json!({"name": "Q", "age": 9}));
    assert_eq!(bodies[2]["data"], json!(null));
    sqs.delete_queue()
        .queue_url(&queue_url)
        .send()
        .await
        .map_err(sqs_error)?;
    db.disconnect().await?;
    Ok(())
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}
