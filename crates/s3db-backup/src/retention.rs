//! Grandfather-father-son retention: which completed backups to keep.
//!
//! For each granularity with a count `n` (daily, weekly, monthly, yearly), walk the backups from
//! the newest and keep the newest backup of each of the `n` most recent periods (days, ISO weeks,
//! months, years) that have a backup. A backup kept by any rule is kept; so is every backup a
//! kept incremental backup is based on (transitively), so that what is kept can be restored.
//! Periods are taken in UTC from each backup's `started_at` (the plugin's clock).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// How many periods of each granularity keep a backup. All zero (the default) keeps everything.
///
/// ```
/// use s3db_backup::Retention;
/// let gfs = Retention::new().daily(7).weekly(4).monthly(12).yearly(2);
/// assert_eq!(gfs.daily, 7);
/// assert!(!gfs.is_unlimited());
/// assert!(Retention::new().is_unlimited());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Keep the newest backup of each of the last `daily` days that have one.
    pub daily: u32,
    /// Keep the newest backup of each of the last `weekly` ISO weeks that have one.
    pub weekly: u32,
    /// Keep the newest backup of each of the last `monthly` months that have one.
    pub monthly: u32,
    /// Keep the newest backup of each of the last `yearly` years that have one.
    pub yearly: u32,
}

impl Retention {
    /// No pruning.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Days kept.
    #[must_use]
    pub fn daily(mut self, n: u32) -> Self {
        self.daily = n;
        self
    }

    /// ISO weeks kept.
    #[must_use]
    pub fn weekly(mut self, n: u32) -> Self {
        self.weekly = n;
        self
    }

    /// Months kept.
    #[must_use]
    pub fn monthly(mut self, n: u32) -> Self {
        self.monthly = n;
        self
    }

    /// Years kept.
    #[must_use]
    pub fn yearly(mut self, n: u32) -> Self {
        self.yearly = n;
        self
    }

    /// Whether nothing is ever pruned.
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        self.daily == 0 && self.weekly == 0 && self.monthly == 0 && self.yearly == 0
    }
}

/// A backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) id: String,
    pub(crate) started_at: DateTime<Utc>,
    /// The backups it is based on.
    pub(crate) bases: Vec<String>,
}

/// Names the period (day, ISO week, month, year) a time falls in.
type PeriodOf = fn(&DateTime<Utc>) -> (i32, u32, u32);

/// The ids to keep among `backups` (completed ones); the others may be pruned.
pub(crate) fn keep(policy: &Retention, backups: &[Candidate]) -> BTreeSet<String> {
    if policy.is_unlimited() {
        return backups.iter().map(|b| b.id.clone()).collect();
    }
    let mut newest_first: Vec<&Candidate> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    let mut kept = BTreeSet::new();
    let rules: [(u32, PeriodOf); 4] = [
        (policy.daily, |t| (t.year(), t.ordinal(), 0)),
        (policy.weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week(), 0)
        }),
        (policy.monthly, |t| (t.year(), t.month(), 0)),
        (policy.yearly, |t| (t.year(), 0, 0)),
    ];
    for (count, period) in rules {
        let mut seen = BTreeSet::new();
        for b in &newest_first {
            if seen.len() >= count as usize {
                break;
            }
            if seen.insert(period(&b.started_at)) {
                kept.insert(b.id.clone());
            }
        }
    }
    // Keep what kept incremental backups need.
    let by_id: BTreeMap<&str, &Candidate> = backups.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut todo: Vec<String> = kept.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        if let Some(b) = by_id.get(id.as_str()) {
            for base in &b.bases {
                if by_id.contains_key(base.as_str()) && kept.insert(base.clone()) {
                    todo.push(base.clone());
                }
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .unwrap_or_else(|| panic!("bad date"))
    }

    fn c(id: &str, t: DateTime<Utc>) -> Candidate {
        Candidate {
            id: id.to_owned(),
            started_at: t,
            bases: Vec::new(),
        }
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day() {
        let backups = vec![
            c("d1-a", at(2024, 3, 1, 1)),
            c("d1-b", at(2024, 3, 1, 9)),
            c("d2", at(2024, 3, 2, 5)),
            c("d3-a", at(2024, 3, 3, 2)),
            c("d3-b", at(2024, 3, 3, 4)),
        ];
        let kept = keep(&Retention::new().daily(2), &backups);
        assert_eq!(kept, ["d2", "d3-b"].map(String::from).into());
    }

    #[test]
    fn gfs_combines_rules() {
        // One backup a day for ~14 months.
        let mut backups = Vec::new();
        let mut t = at(2023, 1, 1, 12);
        while t < at(2024, 3, 1, 0) {
            backups.push(c(&t.format("%Y-%m-%d").to_string(), t));
            t += chrono::Duration::days(1);
        }
        let kept = keep(
            &Retention::new().daily(3).weekly(2).monthly(3).yearly(2),
            &backups,
        );
        let expected: BTreeSet<String> = [
            // daily: last three days
            "2024-02-29",
            "2024-02-28",
            "2024-02-27",
            // weekly: the newest of this ISO week (Thu 29th) and of the previous one (Sun 25th)
            "2024-02-25",
            // monthly: Feb (29th), Jan (31st), Dec (31st)
            "2024-01-31",
            "2023-12-31",
            // yearly: 2024 (29 Feb), 2023 (31 Dec)
        ]
        .map(String::from)
        .into();
        assert_eq!(kept, expected);
    }

    #[test]
    fn bases_of_kept_incrementals_are_kept() {
        let mut inc = c("inc", at(2024, 3, 2, 0));
        inc.bases = vec!["full".to_owned()];
        let backups = vec![
            c("old", at(2024, 2, 1, 0)),
            c("full", at(2024, 3, 1, 0)),
            inc,
        ];
        let kept = keep(&Retention::new().daily(1), &backups);
        assert_eq!(kept, ["full", "inc"].map(String::from).into());
    }

    #[test]
    fn unlimited_keeps_all() {
        let backups = vec![c("a", at(2020, 1, 1, 0)), c("b", at(2024, 1, 1, 0))];
        assert_eq!(keep(&Retention::new(), &backups).len(), 2);
    }
}
