//! The `sqs` driver: Amazon SQS, or any SQS-compatible server through an endpoint override.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use tokio::sync::OnceCell;

use super::{Delivery, DriverError, QueueDriver};
use crate::config::ConfigError;

const KIND: &str = "sqs";
/// The region used when neither the builder nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// How long a receive waits for messages by default (long polling; SQS's maximum).
pub const DEFAULT_WAIT_TIME: Duration = Duration::from_secs(20);
/// The longest long-polling wait SQS accepts.
pub const MAX_WAIT_TIME: Duration = Duration::from_secs(20);
/// The visibility timeout asked for on each receive by default (SQS's default).
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest visibility timeout SQS accepts.
const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// Static credentials. Never printed: `Debug` shows only the key id's first characters.
#[derive(Clone)]
struct StaticCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("static credentials (redacted)")
    }
}

/// Builds an [`SqsDriver`]; every setting is checked by [`SqsDriverBuilder::build`].
#[derive(Debug, Clone)]
pub struct SqsDriverBuilder {
    queue_url: String,
    endpoint_url: Option<String>,
    region: Option<String>,
    credentials: Option<StaticCredentials>,
    wait_time: Duration,
    visibility_timeout: Duration,
}

impl SqsDriverBuilder {
    /// Sends requests to this endpoint instead of AWS's (an SQS-compatible server such as
    /// ElasticMQ, LocalStack or moto: `http://127.0.0.1:9324`).
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// The region (default: the environment's, else `us-east-1`).
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Static credentials (default: the AWS default chain — environment, profile, web
    /// identity, container and instance metadata). They never appear in logs or `Debug`.
    #[must_use]
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some(StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        });
        self
    }

    /// A session token for temporary static credentials (after [`SqsDriverBuilder::credentials`]).
    #[must_use]
    pub fn session_token(mut self, token: impl Into<String>) -> Self {
        if let Some(c) = &mut self.credentials {
            c.session_token = Some(token.into());
        }
        self
    }

    /// How long a receive waits for messages (long polling), 0..=20 s in whole seconds (default
    /// 20 s; a fraction is rounded down).
    #[must_use]
    pub fn wait_time(mut self, wait: Duration) -> Self {
        self.wait_time = wait;
        self
    }

    /// How long a received message stays hidden, 1 s..=12 h in whole seconds (default 30 s; a
    /// fraction is rounded up). Asked for on every receive, so it holds whatever the queue's
    /// own default is; the consumer extends it while a message is handled.
    #[must_use]
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// The driver. No request is made until the plugin starts.
    ///
    /// # Errors
    /// [`ConfigError::BadUrl`], [`ConfigError::OutOfRange`], [`ConfigError::EmptyCredentials`],
    /// [`ConfigError::EmptyRegion`].
    pub fn build(self) -> Result<SqsDriver, ConfigError> {
        check_url("queue URL", &self.queue_url)?;
        if let Some(endpoint) = &self.endpoint_url {
            check_url("endpoint URL", endpoint)?;
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(ConfigError::EmptyRegion);
        }
        if let Some(c) = &self.credentials
            && (c.access_key_id.trim().is_empty() || c.secret_access_key.is_empty())
        {
            return Err(ConfigError::EmptyCredentials);
        }
        if self.wait_time > MAX_WAIT_TIME {
            return Err(ConfigError::OutOfRange {
                what: "wait_time",
                value: self.wait_time,
                allowed: "0..=20 s",
            });
        }
        if self.visibility_timeout < Duration::from_secs(1)
            || self.visibility_timeout > MAX_VISIBILITY_TIMEOUT
        {
            return Err(ConfigError::OutOfRange {
                what: "visibility_timeout",
                value: self.visibility_timeout,
                allowed: "1 s..=12 h",
            });
        }
        Ok(SqsDriver {
            settings: self,
            client: OnceCell::new(),
        })
    }
}

fn check_url(what: &'static str, url: &str) -> Result<(), ConfigError> {
    let reason = if url.trim().is_empty() {
        Some("it must not be empty")
    } else if !(url.starts_with("http://") || url.starts_with("https://")) {
        Some("it must start with http:// or https://")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::BadUrl {
            what,
            url: url.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The `sqs` driver: long polling, batch receive (up to 10), delete on success, visibility
/// changes for retries and long handlers. Make it with [`SqsDriver::builder`], or
/// [`SqsDriver::from_client`] with an SDK client of your own.
///
/// Failed messages are not deleted: SQS delivers them again after their visibility timeout,
/// and a queue with a redrive policy moves them to its dead-letter queue after
/// `maxReceiveCount` receives.
pub struct SqsDriver {
    settings: SqsDriverBuilder,
    client: OnceCell<Client>,
}

impl fmt::Debug for SqsDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsDriver")
            .field("queue_url", &self.settings.queue_url)
            .field("endpoint_url", &self.settings.endpoint_url)
            .field("region", &self.settings.region)
            .field(
                "credentials",
                &if self.settings.credentials.is_some() {
                    "static (redacted)"
                } else {
                    "default chain"
                },
            )
            .field("wait_time", &self.settings.wait_time)
            .field("visibility_timeout", &self.settings.visibility_timeout)
            .finish_non_exhaustive()
    }
}

fn whole_seconds_up(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

impl SqsDriver {
    /// A builder for the queue at `queue_url`.
    pub fn builder(queue_url: impl Into<String>) -> SqsDriverBuilder {
        SqsDriverBuilder {
            queue_url: queue_url.into(),
            endpoint_url: None,
            region: None,
            credentials: None,
            wait_time: DEFAULT_WAIT_TIME,
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
        }
    }

    /// A driver using an SDK client you configured, with the default wait time and visibility
    /// timeout.
    ///
    /// # Errors
    /// [`ConfigError::BadUrl`].
    pub fn from_client(client: Client, queue_url: impl Into<String>) -> Result<Self, ConfigError> {
        let driver = Self::builder(queue_url).build()?;
        let _ = driver.client.set(client);
        Ok(driver)
    }

    /// The queue's URL.
    #[must_use]
    pub fn queue_url(&self) -> &str {
        &self.settings.queue_url
    }

    /// The SDK client (made on first use).
    ///
    /// # Errors
    /// Never in practice: making the client does no request.
    pub async fn client(&self) -> Result<&Client, DriverError> {
        self.client
            .get_or_try_init(|| async { Ok(self.make_client().await) })
            .await
    }

    async fn make_client(&self) -> Client {
        let s = &self.settings;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(endpoint) = &s.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = &s.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(c) = &s.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "s3db-queue-consumer",
            ));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_sqs::config::Builder::from(&shared);
        if shared.region().is_none() {
            config = config.region(Region::new(DEFAULT_REGION));
        }
        Client::from_conf(config.build())
    }
}

fn failed<E: std::error::Error>(operation: &'static str, error: E) -> DriverError {
    DriverError::new(KIND, operation, DisplayErrorContext(error).to_string())
}

#[async_trait]
impl QueueDriver for SqsDriver {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn queue(&self) -> String {
        self.settings.queue_url.clone()
    }

    fn visibility_timeout(&self) -> Duration {
        self.settings.visibility_timeout
    }

    async fn connect(&self) -> Result<(), DriverError> {
        self.client().await.map(|_| ())
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, DriverError> {
        let client = self.client().await?;
        let max = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        let out = client
            .receive_message()
            .queue_url(&self.settings.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(i32::try_from(self.settings.wait_time.as_secs()).unwrap_or(20))
            .visibility_timeout(whole_seconds_up(self.settings.visibility_timeout))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| failed("receive", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let receipt = m.receipt_handle()?.to_owned();
                let attributes = m
                    .message_attributes()
                    .map(|attrs| {
                        attrs
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                Some(Delivery {
                    id: m.message_id().unwrap_or_default().to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    attributes,
                    receive_count,
                    receipt,
                })
            })
            .collect())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), DriverError> {
        self.client()
            .await?
            .delete_message()
            .queue_url(&self.settings.queue_url)
            .receipt_handle(&delivery.receipt)
            .send()
            .await
            .map_err(|e| failed("ack", e))?;
        Ok(())
    }

    async fn nack(
        &self,
        delivery: &Delivery,
        retry_after: Option<Duration>,
    ) -> Result<(), DriverError> {
        match retry_after {
            None => Ok(()),
            Some(delay) => self.change_visibility("nack", delivery, delay).await,
        }
    }

    async fn extend_visibility(
        &self,
        delivery: &Delivery,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        self.change_visibility("extend", delivery, timeout).await
    }

    async fn send(
        &self,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, DriverError> {
        let mut request = self
            .client()
            .await?
            .send_message()
            .queue_url(&self.settings.queue_url)
            .message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| failed("send", e))?;
            request = request.message_attributes(name, value);
        }
        let out = request.send().await.map_err(|e| failed("send", e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}

impl SqsDriver {
    async fn change_visibility(
        &self,
        operation: &'static str,
        delivery: &Delivery,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        self.client()
            .await?
            .change_message_visibility()
            .queue_url(&self.settings.queue_url)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(whole_seconds_up(timeout.min(MAX_VISIBILITY_TIMEOUT)))
            .send()
            .await
            .map_err(|e| failed(operation, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_never_shows_credentials() {
        let bad = |b: SqsDriverBuilder| b.build().err();
        assert!(matches!(
            bad(SqsDriver::builder("")),
            Some(ConfigError::BadUrl {
                what: "queue URL",
                ..
            })
        ));
        assert!(matches!(
            bad(SqsDriver::builder("queue")),
            Some(ConfigError::BadUrl { .. })
        ));
        let url = "http://127.0.0.1:1/123/q";
        assert!(matches!(
            bad(SqsDriver::builder(url).endpoint_url("localhost:9324")),
            Some(ConfigError::BadUrl {
                what: "endpoint URL",
                ..
            })
        ));
        assert!(matches!(
            bad(SqsDriver::builder(url).wait_time(Duration::from_secs(21))),
            Some(ConfigError::OutOfRange {
                what: "wait_time",
                ..
            })
        ));
        assert!(matches!(
            bad(SqsDriver::builder(url).visibility_timeout(Duration::from_millis(500))),
            Some(ConfigError::OutOfRange {
                what: "visibility_timeout",
                ..
            })
        ));
        assert_eq!(
            bad(SqsDriver::builder(url).credentials("", "s")),
            Some(ConfigError::EmptyCredentials)
        );
        assert_eq!(
            bad(SqsDriver::builder(url).region(" ")),
            Some(ConfigError::EmptyRegion)
        );

        let builder = SqsDriver::builder(url)
            .credentials("AKIDEXAMPLEKEY", "very-secret-value")
            .session_token("session-token-value");
        let driver = builder.clone().build().unwrap_or_else(|e| panic!("{e}"));
        for shown in [format!("{builder:?}"), format!("{driver:?}")] {
            assert!(!shown.contains("very-secret-value"), "{shown}");
            assert!(!shown.contains("AKIDEXAMPLEKEY"), "{shown}");
            assert!(!shown.contains("session-token-value"), "{shown}");
        }
        assert_eq!(whole_seconds_up(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds_up(Duration::from_secs(3)), 3);
    }
}
