//! [`CostSnapshot`]: what one window cost, with its breakdowns, as data and as a table.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use s3db_core::RequestKind;
use serde::{Serialize, Serializer};

use crate::money::{Usd, bytes};
use crate::prices::{MonthlyEstimate, Prices};
use crate::usage::{Tally, Usage};

/// An amount for the table: cents from a dollar up, every digit below (exact data is in the
/// snapshot's fields).
fn money(amount: Usd) -> String {
    if amount.pico_usd() >= 1_000_000_000_000 {
        format!("{amount:.2}")
    } else {
        amount.to_string()
    }
}

pub(crate) fn seconds<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(d.as_secs_f64())
}

/// Requests of one kind and what they cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KindCost {
    /// The kind.
    pub kind: RequestKind,
    /// How many.
    pub count: u64,
    /// Exactly `count` × the price of one.
    pub cost: Usd,
}

/// The usage of one owner (a resource, a plugin, the database metadata, the rest) and what its
/// requests cost.
///
/// Transfer is shown in bytes only: its tiers apply to the month's total, so a share of it has no
/// price of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OwnerCost {
    /// What was counted.
    #[serde(flatten)]
    pub usage: Usage,
    /// What its requests cost.
    pub request_cost: Usd,
}

impl OwnerCost {
    fn new(usage: Usage, prices: &Prices) -> Self {
        Self {
            request_cost: prices.request_cost(&usage),
            usage,
        }
    }
}

/// What the database stores, and what a month of it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StorageCost {
    /// Stored bytes.
    pub bytes: u64,
    /// Objects counted, when the size was measured by listing.
    pub objects: Option<u64>,
    /// When the size was measured or given.
    pub measured_at: DateTime<Utc>,
    /// A month of storing it, through the storage tiers.
    pub monthly_cost: Usd,
}

/// What one window cost: totals, per request kind, per resource and per plugin, storage, and a
/// monthly estimate at the window's rate.
///
/// Costs of the window are its requests and its transfer, priced as if the window were a month of
/// its own (tiers and the free allowance start again at each window: reset monthly for a figure
/// that follows the bill). Storage is a monthly rate, shown beside them and included in the
/// estimate. `Display` renders a readable table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostSnapshot {
    /// When the window started (install or the last reset).
    pub start: DateTime<Utc>,
    /// When this snapshot was taken.
    pub end: DateTime<Utc>,
    /// How long the window lasted (monotonic clock), in seconds in JSON.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Every request counted in the window, and the bytes moved.
    pub usage: Usage,
    /// Requests and cost of each kind, in [`RequestKind::ALL`] order (zero counts included).
    pub requests: Vec<KindCost>,
    /// What the window's requests cost (the sum of `requests`).
    pub request_cost: Usd,
    /// What the bytes sent to the store cost (free on AWS).
    pub transfer_in_cost: Usd,
    /// Outbound bytes the free allowance covered.
    pub free_out_bytes: u64,
    /// What the bytes received from the store cost, after the free allowance, through the tiers.
    pub transfer_out_cost: Usd,
    /// Requests and transfer of the window.
    pub total: Usd,
    /// Per resource (`resource=<r>/…`, except plugin storage scoped to a resource).
    pub by_resource: BTreeMap<String, OwnerCost>,
    /// Per plugin slug (`plugin=<slug>/…` and `resource=<r>/plugin=<slug>/…`).
    pub by_plugin: BTreeMap<String, OwnerCost>,
    /// `s3db.json` and listings of the whole database.
    pub database: OwnerCost,
    /// Everything else (see [`crate::Owner::Other`]).
    pub other: OwnerCost,
    /// The last measured or given stored size, if any.
    pub storage: Option<StorageCost>,
    /// 30 days at this window's rate, plus a month of storage.
    pub monthly_estimate: MonthlyEstimate,
}

impl CostSnapshot {
    pub(crate) fn new(
        prices: &Prices,
        tally: &Tally,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        duration: Duration,
        storage: Option<StorageCost>,
    ) -> Self {
        let usage = tally.total;
        let requests: Vec<KindCost> = RequestKind::ALL
            .into_iter()
            .map(|kind| KindCost {
                kind,
                count: usage.count(kind),
                cost: prices.requests_cost(kind, usage.count(kind)),
            })
            .collect();
        let request_cost = requests.iter().map(|k| k.cost).sum();
        let transfer_in_cost = prices.transfer_in_cost(usage.bytes_in);
        let transfer_out_cost = prices.transfer_out_cost(usage.bytes_out);
        let owners = |map: &BTreeMap<String, Usage>| -> BTreeMap<String, OwnerCost> {
            map.iter()
                .map(|(name, usage)| (name.clone(), OwnerCost::new(*usage, prices)))
                .collect()
        };
        Self {
            start,
            end,
            duration,
            usage,
            requests,
            request_cost,
            transfer_in_cost,
            free_out_bytes: prices.free_out_used(usage.bytes_out),
            transfer_out_cost,
            total: request_cost + transfer_in_cost + transfer_out_cost,
            by_resource: owners(&tally.by_resource),
            by_plugin: owners(&tally.by_plugin),
            database: OwnerCost::new(tally.database, prices),
            other: OwnerCost::new(tally.other, prices),
            monthly_estimate: prices.monthly_estimate(&usage, duration, storage.map(|s| s.bytes)),
            storage,
        }
    }

    /// The requests and cost of one kind.
    #[must_use]
    pub fn kind(&self, kind: RequestKind) -> KindCost {
        self.requests
            .iter()
            .copied()
            .find(|k| k.kind == kind)
            .unwrap_or(KindCost {
                kind,
                count: 0,
                cost: Usd::ZERO,
            })
    }

    /// Every owner with its label (`resource users`, `plugin cache`, `database`, `other`), in
    /// that order; owners with nothing counted are left out.
    pub fn owners(&self) -> impl Iterator<Item = (String, &OwnerCost)> + '_ {
        let resources = self
            .by_resource
            .iter()
            .map(|(name, cost)| (format!("resource {name}"), cost));
        let plugins = self
            .by_plugin
            .iter()
            .map(|(slug, cost)| (format!("plugin {slug}"), cost));
        let rest = [
            ("database".to_owned(), &self.database),
            ("other".to_owned(), &self.other),
        ];
        resources
            .chain(plugins)
            .chain(rest)
            .filter(|(_, cost)| !cost.usage.is_empty())
    }
}

impl fmt::Display for CostSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str =
            "-----------------------------------------------------------------------------";
        writeln!(
            f,
            "S3 costs from {} to {} ({:.3} s)",
            self.start.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            self.end.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            self.duration.as_secs_f64()
        )?;
        writeln!(f, "{RULE}")?;
        writeln!(f, "{:<24}{:>16}{:>20}", "requests", "count", "cost")?;
        for k in self.requests.iter().filter(|k| k.count > 0) {
            writeln!(
                f,
                "  {:<22}{:>16}{:>20}",
                k.kind.as_str(),
                k.count,
                money(k.cost)
            )?;
        }
        let failed = if self.usage.failed > 0 {
            format!("  ({} failed, billed too)", self.usage.failed)
        } else {
            String::new()
        };
        writeln!(
            f,
            "  {:<22}{:>16}{:>20}{failed}",
            "all",
            self.usage.requests(),
            money(self.request_cost)
        )?;
        writeln!(f, "{:<24}{:>16}{:>20}", "transfer", "bytes", "cost")?;
        let free_in = if self.transfer_in_cost.is_zero() {
            "  (free)"
        } else {
            ""
        };
        writeln!(
            f,
            "  {:<22}{:>16}{:>20}{free_in}",
            "in",
            bytes(self.usage.bytes_in),
            money(self.transfer_in_cost)
        )?;
        let free_out = if self.free_out_bytes > 0 {
            format!("  ({} free)", bytes(self.free_out_bytes))
        } else {
            String::new()
        };
        writeln!(
            f,
            "  {:<22}{:>16}{:>20}{free_out}",
            "out",
            bytes(self.usage.bytes_out),
            money(self.transfer_out_cost)
        )?;
        writeln!(f, "{:<40}{:>20}", "window total", money(self.total))?;
        match &self.storage {
            Some(s) => {
                let objects = s
                    .objects
                    .map(|n| format!(", {n} objects"))
                    .unwrap_or_default();
                writeln!(
                    f,
                    "{:<24}{:>16}{:>20}  per month{objects}",
                    "storage",
                    bytes(s.bytes),
                    money(s.monthly_cost)
                )?;
            }
            None => writeln!(f, "{:<24}{:>36}", "storage", "not measured")?,
        }
        writeln!(f, "{RULE}")?;
        writeln!(
            f,
            "{:<24}{:>10}{:>12}{:>12}{:>18}",
            "by owner", "requests", "in", "out", "request cost"
        )?;
        let mut any = false;
        for (label, cost) in self.owners() {
            any = true;
            writeln!(
                f,
                "  {:<22}{:>10}{:>12}{:>12}{:>18}",
                label,
                cost.usage.requests(),
                bytes(cost.usage.bytes_in),
                bytes(cost.usage.bytes_out),
                money(cost.request_cost)
            )?;
        }
        if !any {
            writeln!(f, "  (no requests)")?;
        }
        writeln!(f, "{RULE}")?;
        let m = &self.monthly_estimate;
        writeln!(f, "monthly estimate (30 days at this window's rate)")?;
        writeln!(
            f,
            "  {:<22}{:>16}{:>20}",
            "requests",
            m.usage.requests(),
            money(m.request_cost)
        )?;
        writeln!(
            f,
            "  {:<22}{:>16}{:>20}",
            "transfer out",
            bytes(m.usage.bytes_out),
            money(m.transfer_out_cost)
        )?;
        if !m.transfer_in_cost.is_zero() {
            writeln!(
                f,
                "  {:<22}{:>16}{:>20}",
                "transfer in",
                bytes(m.usage.bytes_in),
                money(m.transfer_in_cost)
            )?;
        }
        let stored = m
            .stored_bytes
            .map_or_else(|| "not measured".to_owned(), bytes);
        writeln!(
            f,
            "  {:<22}{:>16}{:>20}",
            "storage",
            stored,
            money(m.storage_cost)
        )?;
        write!(f, "  {:<38}{:>20}", "total", money(m.total))
    }
}
