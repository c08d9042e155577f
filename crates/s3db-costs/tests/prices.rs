//! Prices: request prices, storage and transfer tiers at their boundaries, the free tier, free
//! transfer in, custom prices and refused ones, and the monthly estimate (pure functions).

use std::time::Duration;

use s3db_core::RequestKind;
use s3db_costs::{
    CostsPlugin, FREE_TIER_TRANSFER_OUT_GB, GB, GB_PER_TB, MONTH, PriceError, Prices, TB, Tier,
    Usage, Usd,
};

/// Dollars with up to 9 decimals, as an exact amount (test helper: `usd(921, 600_000_000)`).
fn usd(dollars: u64, nanos: u64) -> Usd {
    Usd::from_pico_usd((u128::from(dollars) * 1_000_000_000 + u128::from(nanos)) * 1000)
}

/// `n` × `price` where `price` is in nano-dollars per GB: the exact cost of whole GB.
fn gb_at(n: u64, nanos_per_gb: u64) -> Usd {
    Usd::from_pico_usd(u128::from(n) * u128::from(nanos_per_gb) * 1000)
}

const N_09: u64 = 90_000_000;
const N_085: u64 = 85_000_000;
const N_07: u64 = 70_000_000;
const N_05: u64 = 50_000_000;
const N_023: u64 = 23_000_000;
const N_022: u64 = 22_000_000;
const N_021: u64 = 21_000_000;

#[test]
fn default_request_prices_are_aws_s3_standard() {
    let p = Prices::default();
    // $0.005 per 1000 = $0.000005 = 5,000,000 pico-dollars per request.
    for kind in [
        RequestKind::Put,
        RequestKind::Copy,
        RequestKind::List,
        RequestKind::Post,
    ] {
        assert_eq!(p.request_price(kind).pico_usd(), 5_000_000, "{kind}");
    }
    // $0.0004 per 1000 = 400,000 pico-dollars per request.
    for kind in [RequestKind::Get, RequestKind::Head, RequestKind::Delete] {
        assert_eq!(p.request_price(kind).pico_usd(), 400_000, "{kind}");
    }
    // Exact for any count: 1000 PUTs are $0.005, a million GETs $0.40, 3 PUTs $0.000015.
    assert_eq!(p.requests_cost(RequestKind::Put, 1000), usd(0, 5_000_000));
    assert_eq!(
        p.requests_cost(RequestKind::Get, 1_000_000),
        usd(0, 400_000_000)
    );
    assert_eq!(
        p.requests_cost(RequestKind::Put, 3).to_string(),
        "$0.000015"
    );
    assert_eq!(
        p.requests_cost(RequestKind::Head, 7).to_string(),
        "$0.0000028"
    );
    // No float drift: 10^12 requests cost exactly 10^12 × the unit price.
    assert_eq!(
        p.requests_cost(RequestKind::Get, 1_000_000_000_000),
        usd(400_000, 0)
    );
    assert_eq!(
        p.transfer_in_cost(1000 * TB),
        Usd::ZERO,
        "transfer in is free"
    );
}

#[test]
fn transfer_out_tiers_at_their_boundaries() {
    let p = Prices::default();
    let at_10tb = gb_at(10 * GB_PER_TB, N_09); // 10240 GB × $0.09
    assert_eq!(at_10tb, usd(921, 600_000_000));
    let at_50tb = at_10tb + gb_at(40 * GB_PER_TB, N_085);
    assert_eq!(at_50tb, usd(4403, 200_000_000));
    let at_150tb = at_50tb + gb_at(100 * GB_PER_TB, N_07);
    assert_eq!(at_150tb, usd(11_571, 200_000_000));

    assert_eq!(p.transfer_out_cost(0), Usd::ZERO);
    assert_eq!(p.transfer_out_cost(GB), usd(0, 90_000_000));
    // One byte at $0.09/GB is 83.8 pico-dollars, rounded to 84.
    assert_eq!(p.transfer_out_cost(1).pico_usd(), 84);
    assert_eq!(p.transfer_out_cost(10 * TB - GB), less_gb(at_10tb, 1, N_09));
    assert_eq!(
        p.transfer_out_cost(10 * TB),
        at_10tb,
        "exactly 10 TB: all at $0.09"
    );
    assert_eq!(
        p.transfer_out_cost(10 * TB + GB),
        at_10tb + gb_at(1, N_085),
        "just above 10 TB: the next GB at $0.085"
    );
    // One byte above: 85e9 / 2^30 = 79.16 pico-dollars.
    assert_eq!(
        p.transfer_out_cost(10 * TB + 1).pico_usd(),
        at_10tb.pico_usd() + 79
    );
    assert_eq!(p.transfer_out_cost(50 * TB), at_50tb);
    assert_eq!(p.transfer_out_cost(50 * TB + GB), at_50tb + gb_at(1, N_07));
    assert_eq!(p.transfer_out_cost(150 * TB), at_150tb);
    assert_eq!(
        p.transfer_out_cost(150 * TB + GB),
        at_150tb + gb_at(1, N_05)
    );
    assert_eq!(
        p.transfer_out_cost(1024 * TB),
        at_150tb + gb_at(874 * GB_PER_TB, N_05)
    );
}

/// `amount` less `n` GB at `nanos_per_gb` (`Usd` has no subtraction: costs only add up).
fn less_gb(amount: Usd, n: u64, nanos_per_gb: u64) -> Usd {
    Usd::from_pico_usd(amount.pico_usd() - gb_at(n, nanos_per_gb).pico_usd())
}

#[test]
fn storage_tiers_at_their_boundaries() {
    let p = Prices::default();
    let at_50tb = gb_at(50 * GB_PER_TB, N_023); // 51200 GB × $0.023
    assert_eq!(at_50tb, usd(1177, 600_000_000));
    let at_500tb = at_50tb + gb_at(450 * GB_PER_TB, N_022);
    assert_eq!(at_500tb, usd(11_315, 200_000_000));

    assert_eq!(p.storage_cost(0), Usd::ZERO);
    assert_eq!(p.storage_cost(GB), usd(0, 23_000_000));
    assert_eq!(p.storage_cost(50 * TB - GB), less_gb(at_50tb, 1, N_023));
    assert_eq!(
        p.storage_cost(50 * TB),
        at_50tb,
        "exactly 50 TB: all at $0.023"
    );
    assert_eq!(p.storage_cost(50 * TB + GB), at_50tb + gb_at(1, N_022));
    assert_eq!(p.storage_cost(500 * TB), at_500tb, "exactly 500 TB");
    assert_eq!(p.storage_cost(500 * TB + GB), at_500tb + gb_at(1, N_021));
    assert_eq!(
        p.storage_cost(1024 * TB),
        at_500tb + gb_at(524 * GB_PER_TB, N_021)
    );
    let plugin = CostsPlugin::default();
    assert_eq!(plugin.storage_cost(50 * TB), at_50tb);
}

#[test]
fn free_tier_takes_100_gb_off_before_the_tiers() {
    let free = Prices::default().free_tier(true);
    assert_eq!(free.free_transfer_out(), FREE_TIER_TRANSFER_OUT_GB);
    assert_eq!(free.transfer_out_cost(50 * GB), Usd::ZERO);
    assert_eq!(
        free.transfer_out_cost(100 * GB),
        Usd::ZERO,
        "exactly 100 GB"
    );
    assert_eq!(free.free_out_used(100 * GB), 100 * GB);
    assert_eq!(
        free.transfer_out_cost(100 * GB + 1).pico_usd(),
        84,
        "one byte over"
    );
    assert_eq!(free.transfer_out_cost(101 * GB), usd(0, 90_000_000));
    assert_eq!(free.free_out_used(101 * GB), 100 * GB);
    // The allowance comes off the top: 10 TB + 100 GB cost what 10 TB cost without it.
    assert_eq!(
        free.transfer_out_cost(10 * TB + 100 * GB),
        Prices::default().transfer_out_cost(10 * TB)
    );
    // Without the free tier, the first 100 GB are billed.
    assert_eq!(
        Prices::default().transfer_out_cost(100 * GB),
        usd(9, 0),
        "100 GB × $0.09"
    );
    // And it can be switched off again.
    assert_eq!(
        free.free_tier(false).transfer_out_cost(GB),
        usd(0, 90_000_000)
    );
    let plugin = CostsPlugin::default().free_tier(true);
    assert_eq!(plugin.transfer_out_cost(100 * GB), Usd::ZERO);
    // Storage has no free tier.
    assert_eq!(plugin.storage_cost(GB), usd(0, 23_000_000));
}

#[test]
fn custom_prices_are_used() -> Result<(), PriceError> {
    let prices = Prices::default()
        .write_requests_per_1000(0.0054)
        .read_requests_per_1000(0.00043)
        .requests_per_1000(RequestKind::Delete, 0.0)
        .storage_tiers([Tier::new(0, 0.025), Tier::new(100, 0.02)])
        .transfer_out_tiers([Tier::new(0, 0.12), Tier::new(1, 0.1)])
        .transfer_in_per_gb(0.01)
        .free_transfer_out_gb(2);
    let plugin = CostsPlugin::with_prices(prices)?;
    let p = plugin.prices();
    assert_eq!(p.request_price(RequestKind::Put).pico_usd(), 5_400_000);
    assert_eq!(p.request_price(RequestKind::List).pico_usd(), 5_400_000);
    assert_eq!(p.request_price(RequestKind::Get).pico_usd(), 430_000);
    assert_eq!(p.request_price(RequestKind::Delete), Usd::ZERO);
    assert_eq!(
        plugin.requests_cost(RequestKind::Head, 1000),
        usd(0, 430_000)
    );
    // Storage: 100 GB at 0.025 then 0.02.
    assert_eq!(plugin.storage_cost(101 * GB), usd(2, 520_000_000));
    // Transfer out: 2 GB free, then 1 GB at 0.12, then 0.1 (5 GB: 1 × 0.12 + 2 × 0.1).
    assert_eq!(plugin.transfer_out_cost(2 * GB), Usd::ZERO);
    assert_eq!(plugin.transfer_out_cost(3 * GB), usd(0, 120_000_000));
    assert_eq!(plugin.transfer_out_cost(5 * GB), usd(0, 320_000_000));
    assert_eq!(p.transfer_in_cost(10 * GB), usd(0, 100_000_000));
    Ok(())
}

#[test]
fn invalid_prices_are_refused() {
    let refused = |prices: Prices, needle: &str| match CostsPlugin::with_prices(prices) {
        Ok(_) => panic!("accepted prices that should be refused ({needle})"),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(needle), "{text:?} should mention {needle:?}");
            // Converts into the core error type, naming the plugin.
            let core: s3db_core::Error = e.into();
            assert!(core.to_string().contains("costs"), "{core}");
        }
    };
    refused(
        Prices::default().requests_per_1000(RequestKind::Get, -0.0004),
        "negative",
    );
    refused(
        Prices::default().write_requests_per_1000(f64::NAN),
        "finite",
    );
    refused(
        Prices::default().read_requests_per_1000(f64::INFINITY),
        "finite",
    );
    refused(Prices::default().transfer_in_per_gb(-1.0), "negative");
    refused(Prices::default().write_requests_per_1000(2e6), "1,000,000");
    refused(
        Prices::default().write_requests_per_1000(0.000_000_000_1),
        "nano-dollar",
    );
    refused(Prices::default().storage_tiers([]), "at least one tier");
    refused(
        Prices::default().storage_tiers([Tier::new(1, 0.02)]),
        "start at 0",
    );
    refused(
        Prices::default().storage_tiers([Tier::new(0, 0.023), Tier::new(0, 0.022)]),
        "strictly ascending",
    );
    refused(
        Prices::default().transfer_out_tiers([
            Tier::new(0, 0.09),
            Tier::new(50 * GB_PER_TB, 0.085),
            Tier::new(10 * GB_PER_TB, 0.07),
        ]),
        "strictly ascending",
    );
    refused(
        Prices::default().transfer_out_tiers([Tier::new(0, 0.09), Tier::new(5, -0.01)]),
        "negative",
    );
    refused(
        Prices::default().storage_tiers([Tier::new(0, 0.09), Tier::new(u64::MAX, 0.01)]),
        "beyond",
    );
    refused(Prices::default().free_transfer_out_gb(u64::MAX), "beyond");
    // Zero is a valid price, and the defaults are valid.
    assert!(Prices::default().validate().is_ok());
    assert!(CostsPlugin::with_prices(Prices::default().read_requests_per_1000(0.0)).is_ok());
}

#[test]
fn monthly_estimate_scales_the_window_to_30_days() {
    let p = Prices::default().free_tier(true);
    let mut day = Usage::default();
    day.add_requests(RequestKind::Put, 1000);
    day.add_requests(RequestKind::Get, 10_000);
    day.bytes_in = GB;
    day.bytes_out = 5 * GB;
    let m = p.monthly_estimate(&day, Duration::from_secs(24 * 3600), Some(200 * GB));
    assert_eq!(m.usage.count(RequestKind::Put), 30_000);
    assert_eq!(m.usage.count(RequestKind::Get), 300_000);
    assert_eq!(m.usage.bytes_out, 150 * GB);
    // 30,000 PUT × $0.000005 + 300,000 GET × $0.0000004 = $0.15 + $0.12.
    assert_eq!(m.request_cost, usd(0, 270_000_000));
    // 150 GB out, 100 free: 50 GB × $0.09.
    assert_eq!(m.transfer_out_cost, usd(4, 500_000_000));
    assert_eq!(m.transfer_in_cost, Usd::ZERO);
    // 200 GB × $0.023.
    assert_eq!(m.storage_cost, usd(4, 600_000_000));
    assert_eq!(m.total, usd(9, 370_000_000));

    // A window of a whole month is the month itself; of an hour, ×720.
    let same = p.monthly_estimate(&day, MONTH, None);
    assert_eq!(same.usage, day);
    assert_eq!(same.storage_cost, Usd::ZERO);
    let hour = p.monthly_estimate(&day, Duration::from_secs(3600), None);
    assert_eq!(hour.usage.count(RequestKind::Put), 720_000);
    // 3600 GB out in a month: 100 free, 3500 × $0.09.
    assert_eq!(hour.transfer_out_cost, gb_at(3500, N_09));
    // A rate that crosses a tier is priced through it: 1 TB a day = 30 TB a month.
    let mut busy = Usage::default();
    busy.bytes_out = TB;
    let m = Prices::default().monthly_estimate(&busy, Duration::from_secs(24 * 3600), None);
    assert_eq!(
        m.transfer_out_cost,
        gb_at(10 * GB_PER_TB, N_09) + gb_at(20 * GB_PER_TB, N_085)
    );
    // Rounded to whole requests: 1 request in 7 days = 4.29 a month → 4.
    let mut one = Usage::default();
    one.add_requests(RequestKind::Put, 1);
    let m = p.monthly_estimate(&one, Duration::from_secs(7 * 24 * 3600), None);
    assert_eq!(m.usage.count(RequestKind::Put), 4);
    // A zero window does not divide by zero.
    let m = p.monthly_estimate(&one, Duration::ZERO, None);
    assert!(m.usage.count(RequestKind::Put) > 0);
}
