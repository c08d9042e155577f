//! [`Prices`]: what each request, each GB sent out and each GB-month stored costs.

use std::time::Duration;

use s3db_core::RequestKind;
use serde::Serialize;

use crate::money::{GB, GB_PER_TB, Usd};
use crate::usage::Usage;

/// The largest price accepted (per 1000 requests, or per GB): one million dollars. Keeps every
/// computation inside integer range.
pub const MAX_PRICE_USD: f64 = 1_000_000.0;

/// The free outbound transfer of AWS's free tier, per month.
pub const FREE_TIER_TRANSFER_OUT_GB: u64 = 100;

/// The month of [`Prices::monthly_estimate`]: 30 days.
pub const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

/// One tier of a graduated price: every GB from `from_gb` up to the next tier's `from_gb` costs
/// `usd_per_gb`. The first tier starts at 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tier {
    /// Where the tier starts, in GB (2^30 bytes) of the month's total.
    pub from_gb: u64,
    /// Price of each GB in the tier, in dollars.
    pub usd_per_gb: f64,
}

impl Tier {
    /// A tier starting at `from_gb`.
    #[must_use]
    pub const fn new(from_gb: u64, usd_per_gb: f64) -> Self {
        Self {
            from_gb,
            usd_per_gb,
        }
    }
}

/// A price that cannot be used, found by [`Prices::validate`] (and so by
/// [`crate::CostsPlugin::with_prices`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    /// A price is negative, not a number, too large, or finer than a nano-dollar.
    #[error("price {what} = {value} refused: {reason}")]
    BadPrice {
        /// Which price (`PUT per 1000 requests`, `storage tier 2`, …).
        what: String,
        /// The value given.
        value: f64,
        /// Why, and what is accepted.
        reason: String,
    },
    /// Tiers are empty, do not start at 0, or are not strictly ascending.
    #[error("{what} tiers refused: {reason}")]
    BadTiers {
        /// `storage` or `transfer out`.
        what: &'static str,
        /// Why, and what is accepted.
        reason: String,
    },
}

impl From<PriceError> for s3db_core::Error {
    fn from(e: PriceError) -> Self {
        s3db_core::Error::Plugin {
            plugin: crate::NAME.to_owned(),
            source: Box::new(s3db_core::Error::Refused {
                operation: "configure costs",
                reason: e.to_string(),
            }),
        }
    }
}

/// What S3 charges. [`Prices::default`] is AWS S3 Standard (us-east-1):
///
/// | what | price |
/// |---|---|
/// | PUT, COPY, LIST, POST | $0.005 per 1000 requests |
/// | GET, HEAD, DELETE | $0.0004 per 1000 requests |
/// | storage, per GB-month | $0.023 (first 50 TB), $0.022 (next 450 TB), $0.021 (over 500 TB) |
/// | transfer out, per GB | $0.09 (first 10 TB), $0.085 (next 40 TB), $0.07 (next 100 TB), $0.05 (over 150 TB) |
/// | transfer in | free |
/// | free outbound transfer | none (100 GB per month with [`Prices::free_tier`]) |
///
/// GB are 2^30 bytes and TB 1024 GB, as AWS bills them. Prices are kept to the nano-dollar
/// (10⁻⁹ USD) per 1000 requests and per GB; [`Prices::validate`] refuses finer ones, negative ones,
/// NaN, infinities, amounts over [`MAX_PRICE_USD`], and tiers that are empty, do not start at 0 or
/// are not strictly ascending. The computing methods treat an invalid price as zero: validate
/// first (the plugin does).
///
/// Tiered prices are graduated: at 10 TB + 1 GB out, 10 TB are billed at $0.09 and 1 GB at $0.085.
/// The free allowance is taken off the top before the tiers apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prices {
    per_1000: [f64; 7],
    storage: Vec<Tier>,
    transfer_out: Vec<Tier>,
    transfer_in_per_gb: f64,
    free_transfer_out_gb: u64,
}

impl Default for Prices {
    fn default() -> Self {
        Self::aws_s3_standard()
    }
}

const WRITE_KINDS: [RequestKind; 4] = [
    RequestKind::Put,
    RequestKind::Copy,
    RequestKind::List,
    RequestKind::Post,
];
const READ_KINDS: [RequestKind; 3] = [RequestKind::Get, RequestKind::Head, RequestKind::Delete];

impl Prices {
    /// AWS S3 Standard prices (see the table above), no free tier.
    #[must_use]
    pub fn aws_s3_standard() -> Self {
        let mut per_1000 = [0.0; 7];
        for kind in WRITE_KINDS {
            per_1000[slot(kind)] = 0.005;
        }
        for kind in READ_KINDS {
            per_1000[slot(kind)] = 0.0004;
        }
        Self {
            per_1000,
            storage: vec![
                Tier::new(0, 0.023),
                Tier::new(50 * GB_PER_TB, 0.022),
                Tier::new(500 * GB_PER_TB, 0.021),
            ],
            transfer_out: vec![
                Tier::new(0, 0.09),
                Tier::new(10 * GB_PER_TB, 0.085),
                Tier::new(50 * GB_PER_TB, 0.07),
                Tier::new(150 * GB_PER_TB, 0.05),
            ],
            transfer_in_per_gb: 0.0,
            free_transfer_out_gb: 0,
        }
    }

    /// The price of 1000 requests of one kind.
    #[must_use]
    pub fn requests_per_1000(mut self, kind: RequestKind, usd: f64) -> Self {
        self.per_1000[slot(kind)] = usd;
        self
    }

    /// The price of 1000 PUT, COPY, LIST or POST requests (AWS's "tier 1" requests).
    #[must_use]
    pub fn write_requests_per_1000(mut self, usd: f64) -> Self {
        for kind in WRITE_KINDS {
            self.per_1000[slot(kind)] = usd;
        }
        self
    }

    /// The price of 1000 GET, HEAD or DELETE requests.
    #[must_use]
    pub fn read_requests_per_1000(mut self, usd: f64) -> Self {
        for kind in READ_KINDS {
            self.per_1000[slot(kind)] = usd;
        }
        self
    }

    /// Storage tiers, per GB-month.
    #[must_use]
    pub fn storage_tiers(mut self, tiers: impl IntoIterator<Item = Tier>) -> Self {
        self.storage = tiers.into_iter().collect();
        self
    }

    /// Outbound transfer tiers, per GB of the month.
    #[must_use]
    pub fn transfer_out_tiers(mut self, tiers: impl IntoIterator<Item = Tier>) -> Self {
        self.transfer_out = tiers.into_iter().collect();
        self
    }

    /// The price of each GB sent to the store (free on AWS).
    #[must_use]
    pub fn transfer_in_per_gb(mut self, usd: f64) -> Self {
        self.transfer_in_per_gb = usd;
        self
    }

    /// GB of outbound transfer free each month (taken off before the tiers apply).
    #[must_use]
    pub fn free_transfer_out_gb(mut self, gb: u64) -> Self {
        self.free_transfer_out_gb = gb;
        self
    }

    /// With `true`, AWS's free tier: the first [`FREE_TIER_TRANSFER_OUT_GB`] GB out each month
    /// are free; with `false`, none are.
    #[must_use]
    pub fn free_tier(self, on: bool) -> Self {
        self.free_transfer_out_gb(if on { FREE_TIER_TRANSFER_OUT_GB } else { 0 })
    }

    /// The price of 1000 requests of `kind`, in dollars, as configured.
    #[must_use]
    pub fn price_per_1000(&self, kind: RequestKind) -> f64 {
        self.per_1000[slot(kind)]
    }

    /// The storage tiers.
    #[must_use]
    pub fn storage(&self) -> &[Tier] {
        &self.storage
    }

    /// The outbound transfer tiers.
    #[must_use]
    pub fn transfer_out(&self) -> &[Tier] {
        &self.transfer_out
    }

    /// GB of outbound transfer free each month.
    #[must_use]
    pub fn free_transfer_out(&self) -> u64 {
        self.free_transfer_out_gb
    }

    /// Checks every price and tier (see the type's documentation).
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), PriceError> {
        for kind in RequestKind::ALL {
            check_price(
                &format!("{kind} per 1000 requests"),
                self.price_per_1000(kind),
            )?;
        }
        check_price("transfer in per GB", self.transfer_in_per_gb)?;
        check_tiers("storage", &self.storage)?;
        check_tiers("transfer out", &self.transfer_out)?;
        if self.free_transfer_out_gb > u64::MAX / GB {
            return Err(PriceError::BadTiers {
                what: "transfer out",
                reason: format!(
                    "a free allowance of {} GB is beyond any byte count",
                    self.free_transfer_out_gb
                ),
            });
        }
        Ok(())
    }

    /// The price of one request of `kind` (exact: the price of 1000, kept to the nano-dollar,
    /// divided by 1000).
    #[must_use]
    pub fn request_price(&self, kind: RequestKind) -> Usd {
        // A nano-dollar per 1000 requests is a pico-dollar per request.
        Usd::from_pico_usd(u128::from(nanos(self.price_per_1000(kind))))
    }

    /// The price of `count` requests of `kind`: exactly `count` × [`Prices::request_price`].
    #[must_use]
    pub fn requests_cost(&self, kind: RequestKind, count: u64) -> Usd {
        Usd::from_pico_usd(u128::from(count).saturating_mul(self.request_price(kind).pico_usd()))
    }

    /// The price of every request counted in `usage`.
    #[must_use]
    pub fn request_cost(&self, usage: &Usage) -> Usd {
        RequestKind::ALL
            .into_iter()
            .map(|kind| self.requests_cost(kind, usage.count(kind)))
            .sum()
    }

    /// What storing `bytes` costs for a month, through the storage tiers.
    #[must_use]
    pub fn storage_cost(&self, bytes: u64) -> Usd {
        tiered(&self.storage, bytes)
    }

    /// What sending `bytes` out of the store in one month costs: the free allowance first, then
    /// the transfer-out tiers.
    #[must_use]
    pub fn transfer_out_cost(&self, bytes: u64) -> Usd {
        tiered(&self.transfer_out, self.billable_out(bytes))
    }

    /// What sending `bytes` into the store costs (free on AWS).
    #[must_use]
    pub fn transfer_in_cost(&self, bytes: u64) -> Usd {
        per_gb(bytes, nanos(self.transfer_in_per_gb))
    }

    /// The outbound bytes the free allowance covers, out of `bytes`.
    #[must_use]
    pub fn free_out_used(&self, bytes: u64) -> u64 {
        bytes.min(self.free_transfer_out_gb.saturating_mul(GB))
    }

    fn billable_out(&self, bytes: u64) -> u64 {
        bytes - self.free_out_used(bytes)
    }

    /// A month at the rate of `usage` over `window`, plus `stored_bytes` stored for the month.
    ///
    /// Each request count and the bytes moved are scaled by 30 days / `window` and rounded to the
    /// nearest whole request or byte; requests are priced at their unit prices, the transfer
    /// through the free allowance and tiers (so a busy window reaches the cheaper tiers), and the
    /// storage through the storage tiers. A zero window is taken as one nanosecond.
    #[must_use]
    pub fn monthly_estimate(
        &self,
        usage: &Usage,
        window: Duration,
        stored_bytes: Option<u64>,
    ) -> MonthlyEstimate {
        let window_ns = window.as_nanos().max(1);
        let month_ns = MONTH.as_nanos();
        let scale = |n: u64| -> u64 {
            let scaled = u128::from(n).saturating_mul(month_ns);
            u64::try_from((scaled + window_ns / 2) / window_ns).unwrap_or(u64::MAX)
        };
        let mut monthly = Usage::default();
        for kind in RequestKind::ALL {
            monthly.add_requests(kind, scale(usage.count(kind)));
        }
        monthly.bytes_in = scale(usage.bytes_in);
        monthly.bytes_out = scale(usage.bytes_out);
        monthly.failed = scale(usage.failed);
        let request_cost = self.request_cost(&monthly);
        let transfer_out_cost = self.transfer_out_cost(monthly.bytes_out);
        let transfer_in_cost = self.transfer_in_cost(monthly.bytes_in);
        let storage_cost = stored_bytes.map_or(Usd::ZERO, |b| self.storage_cost(b));
        MonthlyEstimate {
            window,
            usage: monthly,
            request_cost,
            transfer_in_cost,
            transfer_out_cost,
            stored_bytes,
            storage_cost,
            total: request_cost + transfer_in_cost + transfer_out_cost + storage_cost,
        }
    }
}

/// A month (30 days) at the rate of an observed window, plus storage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthlyEstimate {
    /// The observed window the rate comes from.
    #[serde(serialize_with = "crate::snapshot::seconds")]
    pub window: Duration,
    /// Requests and bytes in a month at that rate.
    pub usage: Usage,
    /// What those requests cost.
    pub request_cost: Usd,
    /// What the inbound transfer costs (free on AWS).
    pub transfer_in_cost: Usd,
    /// What the outbound transfer costs, after the free allowance, through the tiers.
    pub transfer_out_cost: Usd,
    /// The stored size the storage cost is for, when known.
    pub stored_bytes: Option<u64>,
    /// A month of storing it.
    pub storage_cost: Usd,
    /// Everything.
    pub total: Usd,
}

/// The position of `kind` in [`RequestKind::ALL`].
pub(crate) fn slot(kind: RequestKind) -> usize {
    match kind {
        RequestKind::Get => 0,
        RequestKind::Head => 1,
        RequestKind::Put => 2,
        RequestKind::Copy => 3,
        RequestKind::List => 4,
        RequestKind::Delete => 5,
        RequestKind::Post => 6,
    }
}

/// A validated price in nano-dollars (an invalid one counts as zero).
fn nanos(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 && usd <= MAX_PRICE_USD {
        // In range: at most 10^15, exactly representable.
        (usd * 1e9).round() as u64
    } else {
        0
    }
}

fn check_price(what: &str, usd: f64) -> Result<(), PriceError> {
    let bad = |reason: &str| PriceError::BadPrice {
        what: what.to_owned(),
        value: usd,
        reason: reason.to_owned(),
    };
    if !usd.is_finite() {
        return Err(bad("give a finite number of dollars"));
    }
    if usd < 0.0 {
        return Err(bad("prices cannot be negative"));
    }
    if usd > MAX_PRICE_USD {
        return Err(bad("prices above $1,000,000 are refused"));
    }
    let scaled = usd * 1e9;
    if (scaled - scaled.round()).abs() > 1e-3 {
        return Err(bad(
            "prices are kept to the nano-dollar (1e-9 USD) per 1000 requests or per GB; round it",
        ));
    }
    Ok(())
}

fn check_tiers(what: &'static str, tiers: &[Tier]) -> Result<(), PriceError> {
    let bad = |reason: String| PriceError::BadTiers { what, reason };
    let Some(first) = tiers.first() else {
        return Err(bad("give at least one tier (from 0 GB)".to_owned()));
    };
    if first.from_gb != 0 {
        return Err(bad(format!(
            "the first tier must start at 0 GB, not {} GB",
            first.from_gb
        )));
    }
    for (i, pair) in tiers.windows(2).enumerate() {
        if pair[1].from_gb <= pair[0].from_gb {
            return Err(bad(format!(
                "tiers must be strictly ascending: tier {} starts at {} GB, after tier {} at {} GB",
                i + 2,
                pair[1].from_gb,
                i + 1,
                pair[0].from_gb
            )));
        }
    }
    for (i, tier) in tiers.iter().enumerate() {
        if tier.from_gb > u64::MAX / GB {
            return Err(bad(format!(
                "tier {} starts at {} GB, beyond any byte count",
                i + 1,
                tier.from_gb
            )));
        }
        check_price(&format!("{what} tier {}", i + 1), tier.usd_per_gb)?;
    }
    Ok(())
}

/// `bytes` at `nanos_per_gb`, rounded to the nearest pico-dollar.
fn per_gb(bytes: u64, nanos_per_gb: u64) -> Usd {
    let numerator = u128::from(bytes) * u128::from(nanos_per_gb) * 1000;
    Usd::from_pico_usd(div_round(numerator, u128::from(GB)))
}

/// `bytes` through graduated tiers, rounded once (to the pico-dollar) at the end.
fn tiered(tiers: &[Tier], bytes: u64) -> Usd {
    let bytes = u128::from(bytes);
    // Sum of bytes × nano-dollars per GB over the tiers; divided by GB once.
    let mut numerator: u128 = 0;
    for (i, tier) in tiers.iter().enumerate() {
        let start = u128::from(tier.from_gb) * u128::from(GB);
        if bytes <= start {
            break;
        }
        let end = tiers
            .get(i + 1)
            .map_or(u128::MAX, |next| u128::from(next.from_gb) * u128::from(GB));
        let portion = bytes.min(end) - start;
        numerator = numerator.saturating_add(portion * u128::from(nanos(tier.usd_per_gb)));
    }
    Usd::from_pico_usd(div_round(numerator.saturating_mul(1000), u128::from(GB)))
}

fn div_round(numerator: u128, denominator: u128) -> u128 {
    numerator / denominator + u128::from(numerator % denominator >= denominator.div_ceil(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_conversion_is_exact_for_the_default_prices() {
        assert_eq!(nanos(0.005), 5_000_000);
        assert_eq!(nanos(0.0004), 400_000);
        assert_eq!(nanos(0.09), 90_000_000);
        assert_eq!(nanos(0.085), 85_000_000);
        assert_eq!(nanos(0.023), 23_000_000);
        assert_eq!(nanos(-1.0), 0);
        assert_eq!(nanos(f64::NAN), 0);
    }

    #[test]
    fn rounding() {
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(4, 3), 1);
        assert_eq!(div_round(0, 3), 0);
        // One byte at $0.09/GB = 83.82 pico-dollars.
        assert_eq!(per_gb(1, 90_000_000).pico_usd(), 84);
    }
}
