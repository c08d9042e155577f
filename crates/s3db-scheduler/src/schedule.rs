//! Schedules: the 5-field cron syntax (with `@hourly` … names), aligned `every(Duration)`
//! intervals, time zones (UTC, fixed offsets, IANA names), and how a schedule is handed to
//! `tokio-cron-scheduler` (fixed offsets) or computed here tick by tick (named zones).
//!
//! A schedule is validated field by field before anything else sees it, so a mistake is reported
//! with the field that holds it. It is then rewritten as one or two 6-field patterns (a seconds
//! field of `0` in front, month and weekday names turned into numbers) — the syntax
//! `tokio-cron-scheduler` requires.
//!
//! **Day of month and day of week.** Standard cron runs a job when *either* of the two matches
//! if both are restricted (`0 0 1 * MON` = every 1st and every Monday). `tokio-cron-scheduler`
//! asks its parser for *both* to match; to keep the standard meaning, such a schedule is handed
//! over as two patterns (one per day field), and a time both would fire at is still one tick.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, LocalResult, Offset, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::{Cron, JobType};

use crate::config::ConfigError;

/// One of the five fields of a cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CronField {
    /// Minute (0-59).
    Minute,
    /// Hour (0-23).
    Hour,
    /// Day of month (1-31).
    DayOfMonth,
    /// Month (1-12 or JAN-DEC).
    Month,
    /// Day of week (0-7, 0 and 7 are Sunday, or SUN-SAT).
    DayOfWeek,
}

impl CronField {
    const ALL: [CronField; 5] = [
        CronField::Minute,
        CronField::Hour,
        CronField::DayOfMonth,
        CronField::Month,
        CronField::DayOfWeek,
    ];

    fn bounds(self) -> (u32, u32) {
        match self {
            CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            CronField::Month => &[
                "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            ],
            CronField::DayOfWeek => &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
            _ => &[],
        }
    }

    /// The value of a name (`JAN` = 1, `SUN` = 0).
    fn name_value(self, name: &str) -> Option<u32> {
        let first = if self == CronField::Month { 1 } else { 0 };
        self.names()
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| u32::try_from(i).ok())
            .map(|i| i + first)
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day of month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day of week",
        })
    }
}

/// What a job's schedule is, before validation: a cron expression or an aligned interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleSpec {
    /// A 5-field cron expression or one of `@yearly`, `@annually`, `@monthly`, `@weekly`,
    /// `@daily`, `@midnight`, `@hourly`.
    Cron(String),
    /// Every so long, aligned on the clock: whole seconds dividing a minute (1, 2, 3, 4, 5, 6,
    /// 10, 12, 15, 20, 30 s), whole minutes dividing an hour, whole hours dividing a day, or one
    /// day. Ticks fall on multiples of the interval (`every(15 s)` = :00, :15, :30, :45), so every
    /// process agrees on them.
    Every(Duration),
}

impl From<&str> for ScheduleSpec {
    fn from(s: &str) -> Self {
        ScheduleSpec::Cron(s.to_owned())
    }
}

impl From<String> for ScheduleSpec {
    fn from(s: String) -> Self {
        ScheduleSpec::Cron(s)
    }
}

impl From<Duration> for ScheduleSpec {
    fn from(d: Duration) -> Self {
        ScheduleSpec::Every(d)
    }
}

impl fmt::Display for ScheduleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleSpec::Cron(s) => f.write_str(s.trim()),
            ScheduleSpec::Every(d) => write!(f, "every {d:?}"),
        }
    }
}

/// A time zone: a fixed UTC offset, or an IANA zone (`Europe/Lisbon`) whose offset follows its
/// daylight-saving rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset (UTC is `+00:00`).
    Fixed(FixedOffset),
    /// An IANA time zone.
    Named(Tz),
}

impl Zone {
    /// The UTC offset in effect at `t`.
    #[must_use]
    pub fn offset_at(&self, t: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Fixed(o) => *o,
            Zone::Named(tz) => tz.offset_from_utc_datetime(&t.naive_utc()).fix(),
        }
    }
}

impl From<FixedOffset> for Zone {
    fn from(o: FixedOffset) -> Self {
        Zone::Fixed(o)
    }
}

impl From<Tz> for Zone {
    fn from(tz: Tz) -> Self {
        Zone::Named(tz)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Fixed(o) => write!(f, "UTC{o}"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// A validated schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    zone: Zone,
    /// The 6-field patterns handed to `tokio-cron-scheduler` (one, or two for a day-of-month OR
    /// day-of-week schedule).
    patterns: Vec<String>,
    crons: Vec<Cron>,
}

impl Schedule {
    /// Validates `spec` for the job `job` in the time zone `zone` (a [`FixedOffset`] or a
    /// [`Tz`]).
    ///
    /// # Errors
    /// [`ConfigError::BadSchedule`] naming the job, the field and what is wrong.
    pub fn new(job: &str, spec: ScheduleSpec, zone: impl Into<Zone>) -> Result<Self, ConfigError> {
        let zone = zone.into();
        let shown = spec.to_string();
        let bad = |field: Option<CronField>, reason: String| ConfigError::BadSchedule {
            job: job.to_owned(),
            schedule: shown.clone(),
            field,
            reason,
        };
        let patterns = match &spec {
            ScheduleSpec::Cron(expr) => cron_patterns(expr).map_err(|(f, r)| bad(f, r))?,
            ScheduleSpec::Every(d) => vec![every_pattern(*d).map_err(|r| bad(None, r))?],
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build();
        let crons = patterns
            .iter()
            .map(|p| {
                parser
                    .parse(p)
                    .map_err(|e| bad(None, format!("rejected by the cron parser: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schedule = Self {
            spec,
            zone,
            patterns,
            crons,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(bad(None, "it never fires (no such date)".to_owned()));
        }
        Ok(schedule)
    }

    /// The schedule as given.
    #[must_use]
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The time zone it is evaluated in.
    #[must_use]
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The UTC offset in effect now (for a named zone it changes with daylight saving).
    #[must_use]
    pub fn offset(&self) -> FixedOffset {
        self.zone.offset_at(Utc::now())
    }

    /// The 6-field patterns (for a fixed offset, handed to `tokio-cron-scheduler`).
    #[must_use]
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The first tick strictly after `t`, in whole seconds.
    #[must_use]
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Fixed(offset) => {
                let local = t.with_timezone(&offset);
                self.crons
                    .iter()
                    .filter_map(|c| c.find_next_occurrence(&local, false).ok())
                    .map(|d| d.with_timezone(&Utc))
                    .min()
            }
            Zone::Named(tz) => self
                .crons
                .iter()
                .filter_map(|c| next_in_zone(c, tz, t))
                .min(),
        }
    }

    /// The latest tick of pattern `pattern` at or before `t`: the identity of the tick that
    /// pattern just fired for.
    #[must_use]
    pub(crate) fn tick_at_or_before(
        &self,
        pattern: usize,
        t: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        // Ticks are whole seconds; the parser would keep the fraction of a matching second.
        let t = t.trunc_subsecs(0);
        let local = t.with_timezone(&self.zone.offset_at(t));
        self.crons
            .get(pattern)?
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.spec, self.zone)
    }
}

/// How far [`next_in_zone`] looks for the next tick (a schedule fires at least once in 8 years,
/// or it never fires).
const SEARCH_DAYS: i64 = 8 * 366;

/// The first tick of `cron` strictly after `t` in the named zone `tz`, as a UTC instant.
///
/// The search runs in the fixed offset in effect, from one offset change to the next, so every
/// tick is a real local time at the offset the zone has at that instant:
/// - a local time skipped when the clocks go forward (02:30 on a spring-forward night) does not
///   exist, so it does not fire that day; times after the gap fire as usual;
/// - a local time repeated when the clocks go back fires in both passes for an interval or
///   wildcard schedule (`*/15 * * * *`: real time keeps going), but only once, in its first
///   pass, for a fixed-time schedule (one minute and one hour, such as `30 1 * * *`).
fn next_in_zone(cron: &Cron, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let fixed_time = cron.determine_job_type() == JobType::FixedTime;
    let limit = t + chrono::Duration::days(SEARCH_DAYS);
    let mut from = t.trunc_subsecs(0);
    let mut inclusive = false;
    while from < limit {
        let offset = Zone::Named(tz).offset_at(from);
        let candidate = cron
            .find_next_occurrence(&from.with_timezone(&offset), inclusive)
            .ok()?
            .with_timezone(&Utc);
        if let Some(change) = offset_change(tz, offset, from, candidate) {
            // The offset changes before the candidate: go on from the change, in the new offset.
            from = change;
            inclusive = true;
            continue;
        }
        if fixed_time && is_second_pass(tz, candidate) {
            from = candidate;
            inclusive = false;
            continue;
        }
        return Some(candidate);
    }
    None
}

/// The first instant in `(from, to]` at which `tz` is no longer at `offset`, if any.
fn offset_change(
    tz: Tz,
    offset: FixedOffset,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let zone = Zone::Named(tz);
    let differs = |t: DateTime<Utc>| zone.offset_at(t) != offset;
    // Offsets change at most once a day: step a day at a time, then bisect the day.
    let day = chrono::Duration::days(1);
    let mut lo = from;
    loop {
        let hi = (lo + day).min(to);
        if differs(hi) {
            let (mut lo, mut hi) = (lo, hi);
            // `lo` is at `offset`, `hi` is not.
            while hi - lo > chrono::Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                let mid = mid.trunc_subsecs(0);
                if differs(mid) { hi = mid } else { lo = mid }
            }
            return Some(hi);
        }
        if hi >= to {
            return None;
        }
        lo = hi;
    }
}

/// Whether the UTC instant `t` is the second occurrence of a local time repeated when `tz`'s
/// clocks went back.
fn is_second_pass(tz: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&tz).naive_local();
    matches!(tz.from_local_datetime(&local), LocalResult::Ambiguous(first, _) if first.with_timezone(&Utc) != t)
}

/// Parses a time zone: `UTC`, `Z`, a fixed offset `+HH:MM` / `-HH:MM` / `+HH`, or an IANA zone
/// name (`Europe/Lisbon`, `America/New_York`, exact case).
///
/// # Errors
/// A reason, for [`ConfigError::BadTimezone`].
pub fn parse_zone(s: &str) -> Result<Zone, String> {
    let t = s.trim();
    if t.starts_with(['+', '-']) || t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") {
        return parse_offset(t).map(Zone::Fixed);
    }
    t.parse::<Tz>().map(Zone::Named).map_err(|_| {
        format!(
            "unknown time zone {t:?}: expected UTC, a fixed offset such as +02:00, or an IANA \
             zone name such as Europe/Lisbon"
        )
    })
}

/// Parses a fixed time zone: `UTC`, `Z`, or a fixed offset `+HH:MM` / `-HH:MM` / `+HH`.
///
/// # Errors
/// A reason, for [`ConfigError::BadTimezone`].
pub fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t == "+00:00" {
        return Ok(utc());
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err("expected UTC or a fixed offset such as +02:00 or -05:30".to_owned()),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None => (rest, "0"),
    };
    let parse = |v: &str| {
        (!v.is_empty() && v.len() <= 2 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<i32>().ok())
            .flatten()
    };
    match (parse(h), parse(m)) {
        (Some(h), Some(m)) if h <= 14 && m < 60 => {
            FixedOffset::east_opt(sign * (h * 3600 + m * 60))
                .ok_or_else(|| format!("offset {t} is out of range"))
        }
        _ => Err(format!(
            "offset {t:?} is not of the form +HH:MM (hours up to 14)"
        )),
    }
}

/// UTC as a fixed offset.
pub(crate) fn utc() -> FixedOffset {
    Utc.fix()
}

type FieldError = (Option<CronField>, String);

/// The 6-field patterns of a 5-field expression or `@name`.
fn cron_patterns(expr: &str) -> Result<Vec<String>, FieldError> {
    let expr = expr.trim();
    let expanded = if let Some(name) = expr.strip_prefix('@') {
        match name.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => {
                return Err((
                    None,
                    format!(
                        "unknown name @{name}; expected @yearly, @annually, @monthly, @weekly, \
                         @daily, @midnight or @hourly"
                    ),
                ));
            }
        }
    } else {
        expr
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err((
            None,
            format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ),
        ));
    }
    let mut normalized = Vec::with_capacity(5);
    for (field, text) in CronField::ALL.into_iter().zip(&fields) {
        normalized.push(normalize_field(field, text).map_err(|r| (Some(field), r))?);
    }
    let [minute, hour, dom, month, dow] = [0, 1, 2, 3, 4].map(|i| normalized[i].as_str());
    let pattern = |dom: &str, dow: &str| format!("0 {minute} {hour} {dom} {month} {dow}");
    if dom != "*" && dow != "*" {
        // Standard cron: either day field matching is enough.
        Ok(vec![pattern(dom, "*"), pattern("*", dow)])
    } else {
        Ok(vec![pattern(dom, dow)])
    }
}

/// Checks one field and rewrites it with numbers only (`?` becomes `*` in the day fields).
fn normalize_field(field: CronField, text: &str) -> Result<String, String> {
    let day_field = matches!(field, CronField::DayOfMonth | CronField::DayOfWeek);
    if text == "*" || (day_field && text == "?") {
        return Ok("*".to_owned());
    }
    let (min, max) = field.bounds();
    let value = |v: &str| -> Result<u32, String> {
        let n = if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
            v.parse::<u32>()
                .map_err(|_| format!("{v:?} is too large"))?
        } else if let Some(n) = field.name_value(v) {
            n
        } else if field.names().is_empty() {
            return Err(format!("{v:?} is not a number"));
        } else {
            return Err(format!(
                "{v:?} is neither a number nor one of {}",
                field.names().join(", ")
            ));
        };
        if n < min || n > max {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    let mut items = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("empty list item in {text:?}"));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("step {s:?} in {item:?} is not a number"))?;
                if step == 0 || step > max {
                    return Err(format!("step {step} in {item:?} is outside 1-{max}"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (start, end) = if range == "*" {
            (None, None)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!(
                    "range {range:?} goes backwards ({a} > {b}); wrap-around ranges are not supported"
                ));
            }
            (Some(a), Some(b))
        } else {
            let a = value(range)?;
            // `a/step` means from `a` to the end of the field.
            (Some(a), step.map(|_| max))
        };
        let item = match (start, end, step) {
            (None, _, None) => "*".to_owned(),
            (None, _, Some(s)) => format!("*/{s}"),
            (Some(a), Some(b), None) if a != b => format!("{a}-{b}"),
            (Some(a), _, None) => a.to_string(),
            (Some(a), Some(b), Some(s)) => format!("{a}-{b}/{s}"),
            (Some(a), None, Some(s)) => format!("{a}-{max}/{s}"),
        };
        items.push(item);
    }
    Ok(items.join(","))
}

/// The 6-field pattern of an aligned interval.
fn every_pattern(d: Duration) -> Result<String, String> {
    const DAY: u64 = 86_400;
    if d.subsec_nanos() != 0 || d.is_zero() {
        return Err(format!(
            "an interval is a whole number of seconds, at least 1 (got {d:?})"
        ));
    }
    let s = d.as_secs();
    let pattern = if s < 60 && 60u64.is_multiple_of(s) {
        if s == 1 {
            "* * * * * *".to_owned()
        } else {
            format!("*/{s} * * * * *")
        }
    } else if s < 3600 && s.is_multiple_of(60) && 60u64.is_multiple_of(s / 60) {
        format!("0 */{} * * * *", s / 60)
    } else if s < DAY && s.is_multiple_of(3600) && 24u64.is_multiple_of(s / 3600) {
        format!("0 0 */{} * * *", s / 3600)
    } else if s == DAY {
        "0 0 0 * * *".to_owned()
    } else {
        return Err(format!(
            "{d:?} cannot be aligned on the clock: use seconds dividing a minute, minutes \
             dividing an hour, hours dividing a day, or one day (or a cron expression)"
        ));
    };
    Ok(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn patterns(expr: &str) -> Result<Vec<String>, ConfigError> {
        Schedule::new("j", ScheduleSpec::from(expr), utc()).map(|s| s.patterns().to_vec())
    }

    fn field_of(expr: &str) -> Option<CronField> {
        match patterns(expr) {
            Err(ConfigError::BadSchedule { field, job, .. }) => {
                assert_eq!(job, "j");
                field
            }
            other => panic!("{expr}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn five_fields_become_six() -> Result<(), ConfigError> {
        assert_eq!(patterns("*/15 * * * *")?, ["0 */15 * * * *"]);
        assert_eq!(patterns("0 9 * * 1-5")?, ["0 0 9 * * 1-5"]);
        assert_eq!(patterns("0 0 1 jan,Jul *")?, ["0 0 0 1 1,7 *"]);
        assert_eq!(patterns("30 2 * * sun,SAT")?, ["0 30 2 * * 0,6"]);
        assert_eq!(patterns("0 0 ? * MON-FRI")?, ["0 0 0 * * 1-5"]);
        assert_eq!(patterns("5/20 * * * *")?, ["0 5-59/20 * * * *"]);
        assert_eq!(patterns("0-30/10 8-18 * * *")?, ["0 0-30/10 8-18 * * *"]);
        assert_eq!(patterns("@hourly")?, ["0 0 * * * *"]);
        assert_eq!(patterns("@daily")?, ["0 0 0 * * *"]);
        assert_eq!(patterns("@weekly")?, ["0 0 0 * * 0"]);
        assert_eq!(patterns("@monthly")?, ["0 0 0 1 * *"]);
        assert_eq!(patterns("@yearly")?, ["0 0 0 1 1 *"]);
        // Either day field: two patterns.
        assert_eq!(patterns("0 0 1 * MON")?, ["0 0 0 1 * *", "0 0 0 * * 1"]);
        Ok(())
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of("60 * * * *"), Some(CronField::Minute));
        assert_eq!(field_of("* 24 * * *"), Some(CronField::Hour));
        assert_eq!(field_of("* * 0 * *"), Some(CronField::DayOfMonth));
        assert_eq!(field_of("* * * 13 *"), Some(CronField::Month));
        assert_eq!(field_of("* * * FOO *"), Some(CronField::Month));
        assert_eq!(field_of("* * * * 8"), Some(CronField::DayOfWeek));
        assert_eq!(field_of("* * * * MOX"), Some(CronField::DayOfWeek));
        assert_eq!(field_of("*/0 * * * *"), Some(CronField::Minute));
        assert_eq!(field_of("5-1 * * * *"), Some(CronField::Minute));
        assert_eq!(field_of("1,,2 * * * *"), Some(CronField::Minute));
        assert_eq!(field_of("* * L * *"), Some(CronField::DayOfMonth));
        assert_eq!(field_of("* * * *"), None);
        assert_eq!(
            field_of("0 * * * * *"),
            None,
            "6 fields are not the public syntax"
        );
        assert_eq!(field_of("@reboot"), None);
        assert_eq!(field_of("0 0 31 2 *"), None, "never fires");
        let msg = match patterns("* 25 * * *") {
            Err(e) => e.to_string(),
            Ok(p) => panic!("accepted {p:?}"),
        };
        assert!(
            msg.contains("job j") && msg.contains("hour") && msg.contains("25"),
            "{msg}"
        );
    }

    #[test]
    fn every_aligns_on_the_clock() -> Result<(), ConfigError> {
        let every = |s: u64| {
            Schedule::new("j", Duration::from_secs(s).into(), utc())
                .map(|s| s.patterns()[0].clone())
        };
        assert_eq!(every(1)?, "* * * * * *");
        assert_eq!(every(15)?, "*/15 * * * * *");
        assert_eq!(every(300)?, "0 */5 * * * *");
        assert_eq!(every(7200)?, "0 0 */2 * * *");
        assert_eq!(every(86_400)?, "0 0 0 * * *");
        for bad in [0, 7, 90, 420, 5 * 3600, 2 * 86_400] {
            assert!(every(bad).is_err(), "{bad}s accepted");
        }
        assert!(Schedule::new("j", Duration::from_millis(1500).into(), utc()).is_err());
        Ok(())
    }

    #[test]
    fn ticks_in_a_fixed_offset() -> Result<(), ConfigError> {
        let plus2 = parse_offset("+02:00").map_err(|r| ConfigError::BadTimezone {
            job: None,
            timezone: "+02:00".into(),
            reason: r,
        })?;
        let s = Schedule::new("j", "0 9 * * *".into(), plus2)?;
        let t = Utc.with_ymd_and_hms(2030, 1, 1, 6, 0, 0).single();
        let t = t.unwrap_or_default();
        // 09:00 at +02:00 is 07:00 UTC.
        assert_eq!(
            s.next_after(t),
            Utc.with_ymd_and_hms(2030, 1, 1, 7, 0, 0).single()
        );
        let fired = Utc
            .with_ymd_and_hms(2030, 1, 1, 7, 0, 0)
            .single()
            .unwrap_or_default()
            + chrono::Duration::milliseconds(400);
        assert_eq!(
            s.tick_at_or_before(0, fired),
            Utc.with_ymd_and_hms(2030, 1, 1, 7, 0, 0).single()
        );
        // Either day field.
        let s = Schedule::new("j", "0 0 13 * FRI".into(), utc())?;
        let from = Utc
            .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        // 2030-01-04 is a Friday, before the 13th.
        assert_eq!(
            s.next_after(from),
            Utc.with_ymd_and_hms(2030, 1, 4, 0, 0, 0).single()
        );
        Ok(())
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap_or_else(|| panic!("bad test time"))
    }

    fn lisbon(expr: &str) -> Result<Schedule, ConfigError> {
        Schedule::new("j", expr.into(), Tz::Europe__Lisbon)
    }

    /// The ticks of `s` after `from`, `n` of them.
    fn ticks(s: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(s.next_after(from), |t| s.next_after(*t))
            .take(n)
            .collect()
    }

    // In 2030 Lisbon goes from WET (+00) to WEST (+01) on Sunday 31 March at 01:00 UTC
    // (local 01:00 → 02:00), and back on Sunday 27 October at 01:00 UTC (local 02:00 → 01:00).

    #[test]
    fn a_named_zone_follows_daylight_saving() -> Result<(), ConfigError> {
        let s = lisbon("0 9 * * *")?;
        assert_eq!(s.zone(), Zone::Named(Tz::Europe__Lisbon));
        // 09:00 local: 09:00 UTC in winter, 08:00 UTC from the last Sunday of March.
        assert_eq!(
            ticks(&s, at(2030, 3, 29, 12, 0), 3),
            [
                at(2030, 3, 30, 9, 0),
                at(2030, 3, 31, 8, 0),
                at(2030, 4, 1, 8, 0)
            ]
        );
        // And back in October.
        assert_eq!(
            ticks(&s, at(2030, 10, 26, 12, 0), 2),
            [at(2030, 10, 27, 9, 0), at(2030, 10, 28, 9, 0)]
        );
        // New York (second Sunday of March 2030 = the 10th): 09:00 EST = 14:00, EDT = 13:00.
        let ny = Schedule::new("j", "0 9 * * *".into(), Tz::America__New_York)?;
        assert_eq!(
            ticks(&ny, at(2030, 3, 9, 0, 0), 2),
            [at(2030, 3, 9, 14, 0), at(2030, 3, 10, 13, 0)]
        );
        // A fixed offset does not move.
        let fixed = Schedule::new("j", "0 9 * * *".into(), utc())?;
        assert_eq!(
            ticks(&fixed, at(2030, 3, 29, 12, 0), 3),
            [
                at(2030, 3, 30, 9, 0),
                at(2030, 3, 31, 9, 0),
                at(2030, 4, 1, 9, 0)
            ]
        );
        Ok(())
    }

    #[test]
    fn a_skipped_local_time_does_not_fire_that_day() -> Result<(), ConfigError> {
        // 01:30 does not exist in Lisbon on 2030-03-31.
        let s = lisbon("30 1 * * *")?;
        assert_eq!(
            ticks(&s, at(2030, 3, 29, 12, 0), 3),
            [
                at(2030, 3, 30, 1, 30),
                at(2030, 4, 1, 0, 30),
                at(2030, 4, 2, 0, 30)
            ]
        );
        // An interval skips the missing hour and goes on at 02:00 local (01:00 UTC).
        let s = lisbon("*/30 * * * *")?;
        assert_eq!(
            ticks(&s, at(2030, 3, 31, 0, 15), 3),
            [
                at(2030, 3, 31, 0, 30),
                at(2030, 3, 31, 1, 0),
                at(2030, 3, 31, 1, 30)
            ]
        );
        Ok(())
    }

    #[test]
    fn a_repeated_local_hour() -> Result<(), ConfigError> {
        // 01:30 local happens twice on 2030-10-27 (00:30 and 01:30 UTC): a fixed time fires
        // once, in the first pass.
        let s = lisbon("30 1 * * *")?;
        assert_eq!(
            ticks(&s, at(2030, 10, 26, 12, 0), 3),
            [
                at(2030, 10, 27, 0, 30),
                at(2030, 10, 28, 1, 30),
                at(2030, 10, 29, 1, 30)
            ]
        );
        // Also when looking from inside the second pass, before its 01:30.
        assert_eq!(
            s.next_after(at(2030, 10, 27, 1, 10)),
            Some(at(2030, 10, 28, 1, 30))
        );
        // An interval fires in both passes: real time keeps going.
        let s = lisbon("*/30 * * * *")?;
        assert_eq!(
            ticks(&s, at(2030, 10, 26, 23, 50), 6),
            [
                at(2030, 10, 27, 0, 0),
                at(2030, 10, 27, 0, 30),
                at(2030, 10, 27, 1, 0),
                at(2030, 10, 27, 1, 30),
                at(2030, 10, 27, 2, 0),
                at(2030, 10, 27, 2, 30),
            ]
        );
        let s = Schedule::new("j", Duration::from_secs(15).into(), Tz::Europe__Lisbon)?;
        let from = at(2030, 10, 27, 0, 59) + chrono::Duration::milliseconds(45_500);
        assert_eq!(
            ticks(&s, from, 2),
            [
                at(2030, 10, 27, 1, 0),
                at(2030, 10, 27, 1, 0) + chrono::Duration::seconds(15)
            ]
        );
        Ok(())
    }

    #[test]
    fn rare_schedules_in_a_named_zone() -> Result<(), ConfigError> {
        // Once a year, and a 29 February: the search goes across several offset changes.
        let s = lisbon("0 12 29 2 *")?;
        assert_eq!(
            s.next_after(at(2030, 3, 1, 0, 0)),
            Some(at(2032, 2, 29, 12, 0))
        );
        let s = lisbon("@yearly")?;
        assert_eq!(
            s.next_after(at(2030, 6, 1, 0, 0)),
            Some(at(2031, 1, 1, 0, 0))
        );
        // Summer: midnight local is 23:00 UTC the day before.
        let s = lisbon("0 0 1 7 *")?;
        assert_eq!(
            s.next_after(at(2030, 1, 1, 0, 0)),
            Some(at(2030, 6, 30, 23, 0))
        );
        Ok(())
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("UTC").map(|o| o.local_minus_utc()), Ok(0));
        assert_eq!(
            parse_offset("+05:30").map(|o| o.local_minus_utc()),
            Ok(19_800)
        );
        assert_eq!(
            parse_offset("-03").map(|o| o.local_minus_utc()),
            Ok(-10_800)
        );
        assert!(parse_offset("Europe/Paris").is_err());
        assert_eq!(parse_zone("UTC"), Ok(Zone::Fixed(utc())));
        assert_eq!(
            parse_zone("Europe/Lisbon"),
            Ok(Zone::Named(Tz::Europe__Lisbon))
        );
        assert!(parse_zone("Mars/Base").is_err_and(|r| r.contains("Mars/Base")));
        assert!(parse_zone("+25:00").is_err());
        assert!(parse_offset("+25:00").is_err());
        assert!(parse_offset("+1:99").is_err());
    }
}
