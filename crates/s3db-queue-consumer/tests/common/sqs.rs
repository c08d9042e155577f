//! The SQS test server: an admin client and a fresh queue per test.
//!
//! The endpoint comes from [`s3db_core::testing::sqs_endpoint`]: `S3DB_TEST_SQS_ENDPOINT`, or the
//! same variable in the nearest `target/services/services.env` (written by `cargo xtask services
//! up`). Without one a test skips with a printed reason, unless `CI=true`, where it fails.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use s3db_core::testing::sqs_endpoint;
use s3db_queue_consumer::SqsDriver;

pub const KEY: &str = "test";
pub const SECRET: &str = "test";

/// An admin client for the test server.
pub fn admin(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(KEY, SECRET, None, None, "tests"))
        .build();
    Client::from_conf(config)
}

/// A queue of its own for one test; deleted (with its dead-letter queue) by [`TestQueue::delete`].
pub struct TestQueue {
    pub endpoint: String,
    pub client: Client,
    pub url: String,
    pub dlq_url: Option<String>,
}

fn unique(test: &str) -> String {
    let prefix = s3db_core::testing::unique_prefix(test);
    // Queue names: letters, digits, - and _, at most 80 characters.
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(70)
        .collect()
}

impl TestQueue {
    /// A fresh queue, or `None` when no server is configured (outside CI).
    pub async fn new(test: &str, visibility: Duration) -> Option<Self> {
        Self::create(test, visibility, None).await
    }

    /// A fresh queue whose messages move to a fresh dead-letter queue after `max_receives`.
    pub async fn with_dlq(test: &str, visibility: Duration, max_receives: u32) -> Option<Self> {
        Self::create(test, visibility, Some(max_receives)).await
    }

    async fn create(test: &str, visibility: Duration, max_receives: Option<u32>) -> Option<Self> {
        let endpoint = sqs_endpoint()?;
        let client = admin(&endpoint);
        let name = unique(test);
        let mut dlq_url = None;
        let mut request = client.create_queue().queue_name(&name).attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.as_secs().to_string(),
        );
        if let Some(max) = max_receives {
            let dlq = client
                .create_queue()
                .queue_name(format!("{name}-dlq"))
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "creating the DLQ: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                });
            let url = dlq.queue_url().unwrap_or_default().to_owned();
            let attrs = client
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!("DLQ arn: {}", aws_sdk_sqs::error::DisplayErrorContext(e))
                });
            let arn = attrs
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn))
                .cloned()
                .unwrap_or_else(|| panic!("no DLQ arn"));
            request = request.attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max.to_string()})
                    .to_string(),
            );
            dlq_url = Some(url);
        }
        let created = request.send().await.unwrap_or_else(|e| {
            panic!(
                "creating a queue: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        });
        Some(Self {
            endpoint,
            client,
            url: created.queue_url().unwrap_or_default().to_owned(),
            dlq_url,
        })
    }

    /// A driver for this queue (short long-polling wait, the given visibility timeout).
    pub fn driver(&self, visibility: Duration) -> SqsDriver {
        SqsDriver::builder(&self.url)
            .endpoint_url(&self.endpoint)
            .region("us-east-1")
            .credentials(KEY, SECRET)
            .wait_time(Duration::from_secs(1))
            .visibility_timeout(visibility)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// (visible, in flight) messages of a queue.
    pub async fn counts_of(&self, url: &str) -> (u64, u64) {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "queue attributes: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            });
        let attrs: HashMap<QueueAttributeName, String> =
            out.attributes().cloned().unwrap_or_default();
        let get = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(&QueueAttributeName::ApproximateNumberOfMessages),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// (visible, in flight) messages of the queue.
    pub async fn counts(&self) -> (u64, u64) {
        self.counts_of(&self.url).await
    }

    /// Sends a raw body.
    pub async fn send(&self, body: &str) {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("send: {}", aws_sdk_sqs::error::DisplayErrorContext(e)));
    }

    /// Bodies in the dead-letter queue (received with a zero visibility timeout).
    pub async fn dead_letters(&self) -> Vec<String> {
        let Some(url) = &self.dlq_url else {
            return Vec::new();
        };
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "receive DLQ: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            });
        out.messages()
            .iter()
            .map(|m| m.body().unwrap_or_default().to_owned())
            .collect()
    }

    /// Deletes the queue and its dead-letter queue.
    pub async fn delete(self) {
        for url in std::iter::once(&self.url).chain(self.dlq_url.iter()) {
            let _ = self.client.delete_queue().queue_url(url).send().await;
        }
    }
}
