#![doc = include_str!("../README.md")]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use s3db_core::plugin::{
    Database, Error, LockOptions, Middleware, Next, Operation, Outcome, Plugin, PluginContext,
    Record, Resource, Result, async_trait,
};
use serde_json::Value;

/// The plugin: records of `resource` expire `max_age` after their `field`.
#[derive(Debug, Clone)]
pub struct TtlExpiry {
    name: String,
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
struct Config {
    resource: String,
    field: String,
    max_age: Duration,
    interval: Duration,
}

/// The capability the plugin attaches to its resource; reach it with [`TtlExpiryExt`].
#[derive(Debug, Clone)]
pub struct TtlHandle {
    config: Arc<Config>,
    cx: PluginContext,
}

impl TtlHandle {
    /// Whether a record of the resource has expired now.
    #[must_use]
    pub fn is_expired(&self, record: &Record) -> bool {
        self.config.is_expired(record, Utc::now())
    }

    /// Sweeps once now (see [`TtlExpiry::sweep`]).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn sweep(&self) -> Result<Sweep> {
        sweep(&self.config, &self.cx).await
    }
}

/// Adds `resource.ttl_expiry()` to resources: the plugin's handle, when it is installed on them.
pub trait TtlExpiryExt {
    /// The TTL handle of this resource, if the plugin is installed for it.
    fn ttl_expiry(&self) -> Option<Arc<TtlHandle>>;
}

impl TtlExpiryExt for Resource {
    fn ttl_expiry(&self) -> Option<Arc<TtlHandle>> {
        self.extension::<TtlHandle>()
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// This process swept and deleted this many records.
    Deleted(u64),
    /// Another process holds the sweep lock: nothing was done.
    Busy,
}

impl TtlExpiry {
    /// Records of `resource` expire `max_age` after their `created_at` (change the field with
    /// [`TtlExpiry::field`]); swept every minute (see [`TtlExpiry::interval`]).
    ///
    /// # Errors
    /// [`Error::BadSchema`] for an empty resource name or a zero `max_age`.
    pub fn new(resource: &str, max_age: Duration) -> Result<Self> {
        if resource.is_empty() || max_age.is_zero() {
            return Err(Error::BadSchema {
                attribute: resource.to_owned(),
                rule: format!("ttl-expiry max_age {max_age:?}"),
                reason: "give a resource name and a max_age above zero".to_owned(),
            });
        }
        Ok(Self {
            name: format!("ttl-expiry:{resource}"),
            config: Arc::new(Config {
                resource: resource.to_owned(),
                field: "created_at".to_owned(),
                max_age,
                interval: Duration::from_secs(60),
            }),
        })
    }

    /// The date field expiry counts from (RFC 3339 or `YYYY-MM-DD`; records without it never
    /// expire).
    #[must_use]
    pub fn field(mut self, field: &str) -> Self {
        Arc::make_mut(&mut self.config).field = field.to_owned();
        self
    }

    /// How often the background sweep runs (at least 10 ms).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        Arc::make_mut(&mut self.config).interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Whether a record has expired at `now`.
    #[must_use]
    pub fn is_expired(&self, record: &Record, now: DateTime<Utc>) -> bool {
        self.config.is_expired(record, now)
    }

    /// Sweeps once now: deletes every expired record, unless another process is sweeping.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn sweep(&self, db: &Database) -> Result<Sweep> {
        let cx = db
            .plugin_context(&self.name)
            .ok_or_else(|| Error::Refused {
                operation: "sweep",
                reason: format!("plugin {} is not installed in this database", self.name),
            })?;
        sweep(&self.config, &cx).await
    }

    /// The number of records all processes have swept so far.
    ///
    /// # Errors
    /// Storage errors, or if the plugin is not installed.
    pub async fn swept_total(&self, db: &Database) -> Result<i64> {
        let cx = db
            .plugin_context(&self.name)
            .ok_or_else(|| Error::Refused {
                operation: "swept_total",
                reason: format!("plugin {} is not installed in this database", self.name),
            })?;
        cx.storage()
            .counter(&cx.storage().key(None, &["swept"])?)
            .await
    }
}

impl Config {
    fn is_expired(&self, record: &Record, now: DateTime<Utc>) -> bool {
        let Some(Value::String(text)) = record.get(&self.field) else {
            return false;
        };
        let since = DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            });
        match (since, chrono::Duration::from_std(self.max_age)) {
            (Some(since), Ok(max_age)) => since + max_age <= now,
            _ => false,
        }
    }
}

async fn sweep(config: &Config, cx: &PluginContext) -> Result<Sweep> {
    let db = cx.database()?;
    let Some(resource) = db.resource(&config.resource) else {
        return Ok(Sweep::Deleted(0));
    };
    let lock = LockOptions::default().ttl(config.interval.max(Duration::from_secs(5)) * 2);
    let Some(guard) = cx.storage().acquire_lock("sweep", lock).await? else {
        return Ok(Sweep::Busy);
    };
    let now = Utc::now();
    // The sweep sees expired records: the hiding middleware lets this task through.
    let records = SWEEPING.scope(true, resource.list()).await?;
    let mut deleted = 0u64;
    for record in records.iter().filter(|r| config.is_expired(r, now)) {
        resource.delete(record.id()).await?;
        deleted += 1;
    }
    if deleted > 0 {
        let counter = cx.storage().key(None, &["swept"])?;
        cx.storage()
            .increment(&counter, i64::try_from(deleted).unwrap_or(i64::MAX))
            .await?;
    }
    guard.release().await?;
    tracing::debug!(resource = %config.resource, deleted, "ttl-expiry sweep");
    Ok(Sweep::Deleted(deleted))
}

tokio::task_local! {
    /// Set while this plugin's sweep reads: the middleware does not hide expired records from it.
    static SWEEPING: bool;
}

/// Hides expired records from reads.
struct HideExpired {
    config: Arc<Config>,
}

#[async_trait]
impl Middleware for HideExpired {
    async fn handle(&self, _resource: &Resource, op: Operation, next: Next<'_>) -> Result<Outcome> {
        // Writes pass untouched; the sweep sees everything.
        if op.is_write() || SWEEPING.try_with(|s| *s).unwrap_or(false) {
            return next.run(op).await;
        }
        let now = Utc::now();
        match next.run(op).await? {
            Outcome::Record(r) if self.config.is_expired(&r, now) => Err(Error::NotFound {
                key: r.id().to_owned(),
            }),
            Outcome::Records(mut rs) => {
                rs.retain(|r| !self.config.is_expired(r, now));
                Ok(Outcome::Records(rs))
            }
            Outcome::Page(mut page) => {
                page.items.retain(|r| !self.config.is_expired(r, now));
                Ok(Outcome::Page(page))
            }
            other => Ok(other),
        }
    }
}

#[async_trait]
impl Plugin for TtlExpiry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        let config = Arc::clone(&self.config);
        let setup_cx = cx.clone();
        cx.when_resource(&self.config.resource, move |resource| {
            let cx = setup_cx.clone();
            let config = Arc::clone(&config);
            async move {
                cx.add_middleware(
                    &resource,
                    HideExpired {
                        config: Arc::clone(&config),
                    },
                );
                cx.add_resource_extension(
                    &resource,
                    TtlHandle {
                        config,
                        cx: cx.clone(),
                    },
                );
                Ok(())
            }
        })
        .await
    }

    async fn start(&self, cx: &PluginContext) -> Result<()> {
        let config = Arc::clone(&self.config);
        let task_cx = cx.clone();
        let mut shutdown = cx.shutdown_signal();
        cx.spawn(async move {
            let mut ticks = tokio::time::interval(config.interval);
            ticks.tick().await; // the first tick is immediate
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        if let Err(e) = sweep(&config, &task_cx).await {
                            tracing::warn!(error = %e, "ttl-expiry sweep failed; retrying next tick");
                        }
                    }
                    _ = shutdown.changed() => break,
                }
            }
        });
        Ok(())
    }
}
