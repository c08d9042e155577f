#![doc = include_str!("../README.md")]

mod money;
mod prices;
mod snapshot;
mod usage;

use s3db_core::plugin::CustomEvent;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use s3db_core::plugin::{Error, Plugin, PluginContext, Result, async_trait};
use s3db_core::store::{ObserverId, RequestAccounting, RequestEvent, RequestObserver};
use s3db_core::{RequestKind, Store};
use serde::{Deserialize, Serialize};

pub use crate::money::{GB, GB_PER_TB, TB, Usd};
pub use crate::prices::{
    FREE_TIER_TRANSFER_OUT_GB, MAX_PRICE_USD, MONTH, MonthlyEstimate, PriceError, Prices, Tier,
};
pub use crate::snapshot::{CostSnapshot, KindCost, OwnerCost, StorageCost};
pub use crate::usage::{Owner, Usage};

/// The plugin's name (and storage slug): `costs`.
pub const NAME: &str = "costs";

/// The costs plugin: counts every request the database's store makes, by kind and owner, and
/// prices them. See the crate documentation.
///
/// It reads the store layer's request accounting only: an observer is added to
/// `db.store().accounting()` at install and removed at stop and at uninstall (and when the plugin
/// is dropped), so a stopped or uninstalled plugin counts nothing more. It wraps no resource
/// method, registers no hook and stores nothing.
pub struct CostsPlugin {
    prices: Prices,
    shared: Arc<Shared>,
    attached: Mutex<Attached>,
}

/// What the plugin is attached to while installed.
#[derive(Default)]
struct Attached {
    observer: Option<(Arc<RequestAccounting>, ObserverId)>,
    cx: Option<PluginContext>,
}

/// The counters, shared with the observer.
struct Shared {
    window: Mutex<Window>,
    stored: Mutex<Option<Stored>>,
}

struct Window {
    start: DateTime<Utc>,
    started: Instant,
    tally: usage::Tally,
}

impl Window {
    fn new() -> Self {
        Self {
            start: Utc::now(),
            started: Instant::now(),
            tally: usage::Tally::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Stored {
    bytes: u64,
    objects: Option<u64>,
    at: DateTime<Utc>,
}

/// `start` + `duration` on the wall clock (durations come from the monotonic clock).
fn end_of(start: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| start.checked_add_signed(d))
        .unwrap_or(start)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The observer added to the store's accounting.
struct Counter {
    shared: Arc<Shared>,
    prefix: String,
}

impl RequestObserver for Counter {
    fn on_request(&self, event: &RequestEvent<'_>) {
        lock(&self.shared.window).tally.record(&self.prefix, event);
    }
}

/// The plugin's own events, broadcast as `Event::Plugin { plugin: "costs", event:
/// PluginEvent::Custom { name, payload } }`; read them back with [`CostsEvent::from_event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum CostsEvent {
    /// [`CostsPlugin::reset`] closed a window.
    WindowClosed {
        /// When it started.
        start: DateTime<Utc>,
        /// When it ended.
        end: DateTime<Utc>,
        /// Requests counted in it.
        requests: u64,
        /// Its requests and transfer, in dollars.
        total_usd: f64,
    },
    /// [`CostsPlugin::measure_storage`] measured the stored size.
    StorageMeasured {
        /// Stored bytes.
        bytes: u64,
        /// Objects listed.
        objects: u64,
        /// A month of storing them, in dollars.
        monthly_usd: f64,
    },
}

impl CustomEvent for CostsEvent {
    /// The event's name: `costs.window-closed` or `costs.storage-measured`.
    fn name(&self) -> &'static str {
        match self {
            CostsEvent::WindowClosed { .. } => "costs.window-closed",
            CostsEvent::StorageMeasured { .. } => "costs.storage-measured",
        }
    }
}

impl Default for CostsPlugin {
    /// AWS S3 Standard prices ([`Prices::default`]), no free tier.
    fn default() -> Self {
        Self::from_valid(Prices::default())
    }
}

impl fmt::Debug for CostsPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostsPlugin")
            .field("prices", &self.prices)
            .field("counting", &self.is_counting())
            .finish_non_exhaustive()
    }
}

impl CostsPlugin {
    /// The plugin with these prices.
    ///
    /// ```
    /// use s3db_core::RequestKind;
    /// use s3db_costs::{CostsPlugin, Prices, Tier};
    /// let eu = Prices::default().write_requests_per_1000(0.0054).read_requests_per_1000(0.00043);
    /// assert!(CostsPlugin::with_prices(eu).is_ok());
    /// let negative = Prices::default().requests_per_1000(RequestKind::Get, -0.1);
    /// assert!(CostsPlugin::with_prices(negative).is_err());
    /// let unordered = Prices::default().storage_tiers([Tier::new(0, 0.02), Tier::new(0, 0.01)]);
    /// assert!(CostsPlugin::with_prices(unordered).is_err());
    /// ```
    ///
    /// # Errors
    /// [`PriceError`] for an invalid price or tiers (see [`Prices::validate`]).
    pub fn with_prices(prices: Prices) -> std::result::Result<Self, PriceError> {
        prices.validate()?;
        Ok(Self::from_valid(prices))
    }

    fn from_valid(prices: Prices) -> Self {
        Self {
            prices,
            shared: Arc::new(Shared {
                window: Mutex::new(Window::new()),
                stored: Mutex::new(None),
            }),
            attached: Mutex::new(Attached::default()),
        }
    }

    /// With `true`, the first 100 GB sent out each month are free (AWS's free tier); see
    /// [`Prices::free_tier`].
    #[must_use]
    pub fn free_tier(mut self, on: bool) -> Self {
        self.prices = std::mem::take(&mut self.prices).free_tier(on);
        self
    }

    /// The prices in use.
    #[must_use]
    pub fn prices(&self) -> &Prices {
        &self.prices
    }

    /// Whether the plugin is counting requests now (installed and not stopped).
    #[must_use]
    pub fn is_counting(&self) -> bool {
        lock(&self.attached).observer.is_some()
    }

    /// The current window: everything counted since install or the last [`CostsPlugin::reset`].
    #[must_use]
    pub fn snapshot(&self) -> CostSnapshot {
        let (tally, start, duration) = {
            let window = lock(&self.shared.window);
            (window.tally.clone(), window.start, window.started.elapsed())
        };
        self.price(&tally, start, duration)
    }

    /// Closes the current window and starts a new one where it ends (windows follow each other
    /// without gap or overlap); returns the closed window's snapshot and broadcasts
    /// [`CostsEvent::WindowClosed`].
    pub fn reset(&self) -> CostSnapshot {
        let (old, duration) = {
            let mut window = lock(&self.shared.window);
            let now = Instant::now();
            let duration = now.saturating_duration_since(window.started);
            let next = Window {
                start: end_of(window.start, duration),
                started: now,
                tally: usage::Tally::default(),
            };
            (std::mem::replace(&mut *window, next), duration)
        };
        let snapshot = self.price(&old.tally, old.start, duration);
        self.emit(&CostsEvent::WindowClosed {
            start: snapshot.start,
            end: snapshot.end,
            requests: snapshot.usage.requests(),
            total_usd: snapshot.total.as_f64(),
        });
        snapshot
    }

    fn price(
        &self,
        tally: &usage::Tally,
        start: DateTime<Utc>,
        duration: std::time::Duration,
    ) -> CostSnapshot {
        let end = end_of(start, duration);
        CostSnapshot::new(&self.prices, tally, start, end, duration, self.storage())
    }

    /// A month (30 days) at the current window's rate, plus a month of the last measured or
    /// given storage (see [`Prices::monthly_estimate`]).
    #[must_use]
    pub fn monthly_estimate(&self) -> MonthlyEstimate {
        self.snapshot().monthly_estimate
    }

    /// What a month of storing `bytes` costs, through the storage tiers.
    #[must_use]
    pub fn storage_cost(&self, bytes: u64) -> Usd {
        self.prices.storage_cost(bytes)
    }

    /// What sending `bytes` out in one month costs, after the free allowance, through the tiers.
    #[must_use]
    pub fn transfer_out_cost(&self, bytes: u64) -> Usd {
        self.prices.transfer_out_cost(bytes)
    }

    /// The price of `count` requests of `kind` (exactly `count` × the price of one).
    #[must_use]
    pub fn requests_cost(&self, kind: RequestKind, count: u64) -> Usd {
        self.prices.requests_cost(kind, count)
    }

    /// Takes `bytes` as the database's stored size (for snapshots and the monthly estimate),
    /// without listing anything.
    pub fn set_stored_bytes(&self, bytes: u64) {
        *lock(&self.shared.stored) = Some(Stored {
            bytes,
            objects: None,
            at: Utc::now(),
        });
    }

    /// The last measured or given stored size, priced.
    #[must_use]
    pub fn storage(&self) -> Option<StorageCost> {
        lock(&self.shared.stored).map(|s| StorageCost {
            bytes: s.bytes,
            objects: s.objects,
            measured_at: s.at,
            monthly_cost: self.prices.storage_cost(s.bytes),
        })
    }

    /// Measures the stored size by listing every object of the database (`db.store().list(None)`:
    /// one LIST request per 1000 objects, counted like any other, as `database`); remembers it for
    /// snapshots and the monthly estimate, and broadcasts [`CostsEvent::StorageMeasured`].
    ///
    /// # Errors
    /// [`Error::Refused`] if the plugin is not installed; storage errors of the listing.
    pub async fn measure_storage(&self) -> Result<StorageCost> {
        let store = self.store().ok_or_else(|| Error::Refused {
            operation: "measure_storage",
            reason: "the costs plugin is not installed in a database".to_owned(),
        })?;
        let (bytes, objects) = store
            .list(None)
            .try_fold((0u64, 0u64), |(bytes, objects), entry| async move {
                Ok((bytes.saturating_add(entry.size), objects + 1))
            })
            .await?;
        let stored = Stored {
            bytes,
            objects: Some(objects),
            at: Utc::now(),
        };
        *lock(&self.shared.stored) = Some(stored);
        let cost = StorageCost {
            bytes,
            objects: Some(objects),
            measured_at: stored.at,
            monthly_cost: self.prices.storage_cost(bytes),
        };
        self.emit(&CostsEvent::StorageMeasured {
            bytes,
            objects,
            monthly_usd: cost.monthly_cost.as_f64(),
        });
        Ok(cost)
    }

    fn store(&self) -> Option<Store> {
        lock(&self.attached)
            .cx
            .as_ref()
            .map(|cx| cx.storage().store().clone())
    }

    fn emit(&self, event: &CostsEvent) {
        let cx = lock(&self.attached).cx.clone();
        if let Some(cx) = cx {
            cx.emit_event(event);
        }
    }

    /// Adds the observer to `store`'s accounting, unless it is there already.
    fn attach(&self, store: &Store) {
        let mut attached = lock(&self.attached);
        if attached.observer.is_some() {
            return;
        }
        let accounting = Arc::clone(store.accounting());
        let id = accounting.observe(Arc::new(Counter {
            shared: Arc::clone(&self.shared),
            prefix: store.prefix().to_owned(),
        }));
        attached.observer = Some((accounting, id));
    }

    /// Removes the observer. When this returns, no request is counted any more (the accounting
    /// calls observers under the lock `unobserve` takes).
    fn detach(&self) {
        let observer = lock(&self.attached).observer.take();
        if let Some((accounting, id)) = observer {
            accounting.unobserve(id);
        }
    }
}

impl Drop for CostsPlugin {
    fn drop(&mut self) {
        // A database dropped without disconnecting, with counters shared with another store:
        // leave no observer behind.
        self.detach();
    }
}

#[async_trait]
impl Plugin for CostsPlugin {
    fn name(&self) -> &str {
        NAME
    }

    async fn install(&self, cx: &PluginContext) -> Result<()> {
        let db = cx.database()?;
        *lock(&self.shared.window) = Window::new();
        lock(&self.attached).cx = Some(cx.clone());
        self.attach(db.store());
        tracing::debug!(prefix = db.store().prefix(), "costs: counting requests");
        Ok(())
    }

    async fn start(&self, cx: &PluginContext) -> Result<()> {
        // Counting began at install; a plugin started again after a stop counts again.
        self.attach(cx.database()?.store());
        Ok(())
    }

    async fn stop(&self, _cx: &PluginContext) -> Result<()> {
        self.detach();
        Ok(())
    }

    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        // The context does not know about observers: remove ours here (stop did, unless the
        // plugin was never started).
        self.detach();
        lock(&self.attached).cx = None;
        Ok(())
    }
}
