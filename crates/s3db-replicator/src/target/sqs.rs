//! The `sqs` target: one SQS message per change (feature `sqs`).

use std::fmt;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{Credentials, Region};
use aws_sdk_sqs::types::MessageAttributeValue;
use s3db_core::plugin::async_trait;

use super::{ReplicationError, Target};
use crate::change::Change;

/// Sends each change as one SQS message whose body is the [`Change`] as JSON
/// (`{resource, source_resource, action, id, data, before, timestamp}`), with `resource` and
/// `action` message attributes. For a FIFO queue (URL ending in `.fifo`) the message group is
/// the resource's name and the deduplication id is derived from the change (resource, action,
/// id, time): a retried send within SQS's five-minute window is not delivered twice.
///
/// Credentials come from the AWS default chain unless given with [`SqsTarget::credentials`];
/// they are never shown by `Debug` or logged.
pub struct SqsTarget {
    queue_url: String,
    region: String,
    endpoint: Option<String>,
    credentials: Option<(String, String)>,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl fmt::Debug for SqsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsTarget")
            .field("queue_url", &self.queue_url)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl SqsTarget {
    /// Sends to the queue at `queue_url`, region `us-east-1` unless set.
    #[must_use]
    pub fn new(queue_url: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            region: "us-east-1".to_owned(),
            endpoint: None,
            credentials: None,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The AWS region.
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Another endpoint than AWS's (an SQS-compatible server, a test server).
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Static credentials instead of the default chain.
    #[must_use]
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }

    async fn client(&self) -> Client {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return c.clone();
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()));
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        if let Some((key, secret)) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                key.clone(),
                secret.clone(),
                None,
                None,
                "s3db-replicator",
            ));
        }
        let client = Client::new(&loader.load().await);
        *slot = Some(client.clone());
        client
    }

    fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, ReplicationError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| ReplicationError::Rejected(e.to_string()))
}

#[async_trait]
impl Target for SqsTarget {
    fn kind(&self) -> &'static str {
        "sqs"
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.queue_url.starts_with("https://") || self.queue_url.starts_with("http://")) {
            return Err(format!(
                "the SQS queue URL must be an http(s) URL, not {:?}",
                self.queue_url
            ));
        }
        if self.region.trim().is_empty() {
            return Err("the SQS region must not be empty".to_owned());
        }
        Ok(())
    }

    async fn send(&self, change: &Change) -> Result<(), ReplicationError> {
        let body = serde_json::to_string(change)
            .map_err(|e| ReplicationError::Rejected(format!("change does not serialize: {e}")))?;
        let client = self.client().await;
        let mut request = client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("resource", attribute(&change.resource)?)
            .message_attributes("action", attribute(change.action.as_str())?);
        if self.is_fifo() {
            let dedup = format!(
                "{}:{}:{}:{}",
                change.resource,
                change.action,
                change.id,
                change.timestamp.timestamp_micros()
            );
            let dedup: String = dedup
                .chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '_' })
                .take(128)
                .collect();
            request = request
                .message_group_id(change.resource.clone())
                .message_deduplication_id(dedup);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                use aws_sdk_sqs::error::SdkError;
                let text = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                Err(match &e {
                    SdkError::ServiceError(service) if service.raw().status().is_client_error() => {
                        ReplicationError::Http {
                            status: service.raw().status().as_u16(),
                            body: text,
                        }
                    }
                    _ => ReplicationError::Transport(text),
                })
            }
        }
    }

    async fn close(&self) {
        self.client.lock().await.take();
    }
}
