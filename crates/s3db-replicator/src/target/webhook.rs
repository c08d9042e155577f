//! The `webhook` target: an HTTP POST of each change as JSON.

use std::fmt;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use s3db_core::plugin::async_trait;

use super::{ReplicationError, Target};
use crate::change::Change;

/// How much of an error answer's body is kept in the error.
const BODY_EXCERPT: usize = 300;

/// Posts each change as JSON ([`Change`]) to a URL. A 2xx answer is success; 5xx, 408 and 429
/// are retried (with the replicator's backoff); other statuses are permanent failures (logged
/// for [`crate::ReplicatorPlugin::retry_failed`] when the log is on).
///
/// Each request carries `content-type: application/json`, `x-s3db-resource`, `x-s3db-action`
/// and `x-s3db-id` headers, plus the headers you add. Header values (and so tokens) are never
/// shown by `Debug`.
pub struct WebhookTarget {
    url: Result<reqwest::Url, String>,
    headers: Vec<(String, String)>,
    client: Result<reqwest::Client, String>,
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookTarget")
            .field(
                "url",
                &self.url.as_ref().map(|u| {
                    let mut shown = u.clone();
                    let _ = shown.set_password(None);
                    shown.set_query(None);
                    shown.to_string()
                }),
            )
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl WebhookTarget {
    /// Posts to `url` (`http://` or `https://`). A malformed URL is reported by
    /// [`crate::ReplicatorBuilder::build`].
    #[must_use]
    pub fn new(url: &str) -> Self {
        let url = reqwest::Url::parse(url)
            .map_err(|e| format!("bad webhook URL {url:?}: {e}"))
            .and_then(|u| match u.scheme() {
                "http" | "https" => Ok(u),
                other => Err(format!(
                    "webhook URLs are http:// or https://, not {other}://"
                )),
            });
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| format!("HTTP client: {e}"));
        Self {
            url,
            headers: Vec::new(),
            client,
        }
    }

    /// Adds a header to every request.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `authorization: Bearer <token>`.
    #[must_use]
    pub fn bearer_token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.header("authorization", format!("Bearer {token}"))
    }

    fn header_map(&self) -> Result<HeaderMap, String> {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("bad webhook header name {k:?}: {e}"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("bad value for webhook header {k:?}"))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// A header value from text that may not be a valid one (ids are key-safe, so usually fine).
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[async_trait]
impl Target for WebhookTarget {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn validate(&self) -> Result<(), String> {
        self.url.as_ref().map_err(Clone::clone)?;
        self.client.as_ref().map_err(Clone::clone)?;
        self.header_map().map(|_| ())
    }

    async fn send(&self, change: &Change) -> Result<(), ReplicationError> {
        let url = self.url.clone().map_err(ReplicationError::Rejected)?;
        let client = self
            .client
            .as_ref()
            .map_err(|e| ReplicationError::Rejected(e.clone()))?;
        let mut headers = self.header_map().map_err(ReplicationError::Rejected)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-s3db-resource", header_value(&change.resource));
        headers.insert(
            "x-s3db-action",
            HeaderValue::from_static(change.action.as_str()),
        );
        headers.insert("x-s3db-id", header_value(&change.id));
        let body = serde_json::to_vec(change)
            .map_err(|e| ReplicationError::Rejected(format!("change does not serialize: {e}")))?;
        let answer = client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| ReplicationError::Transport(e.without_url().to_string()))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let text = answer.text().await.unwrap_or_default();
        Err(ReplicationError::Http {
            status: status.as_u16(),
            body: text.chars().take(BODY_EXCERPT).collect(),
        })
    }
}
