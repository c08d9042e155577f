//! [`Usd`]: an exact amount of money, and the byte units prices are quoted in.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use serde::{Serialize, Serializer};

/// Bytes in a gigabyte as AWS bills it (`GB` in AWS price lists is 2^30 bytes).
pub const GB: u64 = 1 << 30;

/// Bytes in a terabyte as AWS bills it (1024 GB).
pub const TB: u64 = 1 << 40;

/// Gigabytes in a terabyte (tier boundaries are given in GB: 10 TB = `10 * GB_PER_TB`).
pub const GB_PER_TB: u64 = 1024;

const PICO_PER_USD: u128 = 1_000_000_000_000;

/// An exact amount of US dollars, kept as an integer number of pico-dollars (10⁻¹² USD).
///
/// Every cost this crate computes is integer arithmetic on request counts, byte counts and prices
/// kept to the nano-dollar, so the cost of `n` requests is exactly `n` times the price of one: no
/// rounding creeps in however many requests are added up. Only [`Usd::as_f64`] (and the JSON form,
/// a number of dollars) is a float, made at the very end. Sums saturate instead of overflowing
/// (at about 3.4 × 10²⁶ USD).
///
/// `Display` shows the exact amount (`$0.0000378`, `$921.60`); a precision rounds it
/// (`{:.2}` → `$0.00`), and width and alignment pad it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u128);

impl Usd {
    /// Nothing.
    pub const ZERO: Usd = Usd(0);

    /// An amount in pico-dollars (10⁻¹² USD).
    #[must_use]
    pub const fn from_pico_usd(pico: u128) -> Self {
        Self(pico)
    }

    /// An amount in nano-dollars (10⁻⁹ USD).
    #[must_use]
    pub const fn from_nano_usd(nano: u64) -> Self {
        Self(nano as u128 * 1000)
    }

    /// The amount in pico-dollars (exact).
    #[must_use]
    pub const fn pico_usd(self) -> u128 {
        self.0
    }

    /// The amount in dollars, as a float (for display and JSON; not exact beyond ~15 digits).
    #[must_use]
    pub fn as_f64(self) -> f64 {
        let whole = (self.0 / PICO_PER_USD) as f64;
        let fraction = (self.0 % PICO_PER_USD) as f64 / PICO_PER_USD as f64;
        whole + fraction
    }

    /// The sum, saturating.
    #[must_use]
    pub const fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// Whether this is zero.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, other: Usd) -> Usd {
        self.saturating_add(other)
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, other: Usd) {
        *self = self.saturating_add(other);
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Usd::saturating_add)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match f.precision() {
            Some(p) => {
                let p = p.min(12);
                let unit = 10u128.pow(12 - p as u32);
                // Round half up to `p` decimals.
                let rounded = self.0.saturating_add(unit / 2) / unit;
                let scale = 10u128.pow(p as u32);
                if p == 0 {
                    format!("${rounded}")
                } else {
                    format!("${}.{:0p$}", rounded / scale, rounded % scale)
                }
            }
            None => {
                let whole = self.0 / PICO_PER_USD;
                let fraction = format!("{:012}", self.0 % PICO_PER_USD);
                let trimmed = fraction.trim_end_matches('0');
                let shown = if trimmed.len() < 2 {
                    &fraction[..2]
                } else {
                    trimmed
                };
                format!("${whole}.{shown}")
            }
        };
        // `pad` would treat the precision as a truncation: format it ourselves, then pad.
        match f.width() {
            Some(width) => {
                let fill = width.saturating_sub(text.chars().count());
                let (left, right) = match f.align() {
                    Some(fmt::Alignment::Left) => (0, fill),
                    Some(fmt::Alignment::Center) => (fill / 2, fill - fill / 2),
                    Some(fmt::Alignment::Right) | None => (fill, 0),
                };
                let c = f.fill();
                for _ in 0..left {
                    write!(f, "{c}")?;
                }
                f.write_str(&text)?;
                for _ in 0..right {
                    write!(f, "{c}")?;
                }
                Ok(())
            }
            None => f.write_str(&text),
        }
    }
}

impl Serialize for Usd {
    /// A number of dollars.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

/// Bytes in binary units, for tables: `512 B`, `1.50 KiB`, `10.00 TiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_exactly() {
        assert_eq!(Usd::from_pico_usd(37_800_000).to_string(), "$0.0000378");
        assert_eq!(
            Usd::from_pico_usd(921_600_000_000_000).to_string(),
            "$921.60"
        );
        assert_eq!(Usd::ZERO.to_string(), "$0.00");
        assert_eq!(Usd::from_pico_usd(1).to_string(), "$0.000000000001");
        assert_eq!(format!("{:.2}", Usd::from_pico_usd(4_999_999_999)), "$0.00");
        assert_eq!(format!("{:.2}", Usd::from_pico_usd(5_000_000_000)), "$0.01");
        assert_eq!(
            format!("{:.0}", Usd::from_pico_usd(1_500_000_000_000)),
            "$2"
        );
        assert_eq!(format!("{:>8}", Usd::from_nano_usd(90_000_000)), "   $0.09");
        assert_eq!(
            format!("{:<8}|", Usd::from_nano_usd(90_000_000)),
            "$0.09   |"
        );
        assert!((Usd::from_nano_usd(90_000_000).as_f64() - 0.09).abs() < 1e-15);
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(10 * TB), "10.00 TiB");
    }
}
