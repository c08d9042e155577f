//! The `plugins` workload: what the cache, costs and metrics plugins cost or save on the resource
//! model (the `users` resource of [`crate::resources_workload`]: body-overflow, partition
//! `byRegion`).
//!
//! 1. **get**: N records are inserted into a database without plugin and into one with the cache
//!    plugin's memory driver; then N sequential gets are timed on each — twice on the cached one:
//!    the first pass misses and fills the cache, the second is answered from it. The ratio is the
//!    second pass over the uncached pass (target: ≥ 10× on the S3 test server).
//! 2. **insert overhead** (memory only): N sequential inserts into a fresh database (its own
//!    prefix) with no plugin, the cache, costs, metrics, and all three; [`INSERT_ROUNDS`] rounds,
//!    each running every variant once, in an order rotating by round. A variant is compared with
//!    the no-plugin run **of the same round** (so slow drifts of a shared machine cancel out):
//!    the median over rounds of its time ÷ that run's time, and of the nanoseconds it added per
//!    insert (target: each plugin ≤ 20 % slower than none).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use s3db_cache::CachePlugin;
use s3db_core::{ConnectionString, Database, Resource};
use s3db_costs::CostsPlugin;
use s3db_metrics::MetricsPlugin;
use serde_json::{Value, json};

use crate::backend::{BackendKind, Target};
use crate::measure::{BoxError, Measurement};
use crate::report::{Header, per_op, rate};
use crate::resources_workload::{document, region, users_config};

/// Rounds of the insert overhead: each runs every variant once (medians over rounds are kept).
pub const INSERT_ROUNDS: usize = 15;

/// Entries of the cache's memory driver (more than any N of the workload).
const CACHE_ENTRIES: u64 = 100_000;

/// The target of the cached ÷ uncached get ratio on the S3 test server.
pub const GET_RATIO_TARGET: f64 = 10.0;

/// The target of each plugin's insert overhead, in percent.
pub const OVERHEAD_TARGET_PCT: f64 = 20.0;

/// A set of plugins installed on a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// No plugin.
    None,
    /// The cache plugin, memory driver.
    Cache,
    /// The costs plugin.
    Costs,
    /// The metrics plugin.
    Metrics,
    /// Cache, costs and metrics together.
    All,
}

impl Variant {
    /// Every variant, in report order.
    pub const ALL: [Self; 5] = [
        Self::None,
        Self::Cache,
        Self::Costs,
        Self::Metrics,
        Self::All,
    ];

    /// The name in reports and prefixes.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Cache => "cache",
            Self::Costs => "costs",
            Self::Metrics => "metrics",
            Self::All => "all",
        }
    }

    /// A database at `conn` with this variant's plugins, and the `users` resource.
    async fn open(self, conn: ConnectionString) -> Result<(Database, Resource), BoxError> {
        let mut builder = Database::builder().connection(conn);
        if matches!(self, Self::Cache | Self::All) {
            builder = builder.plugin(cache()?);
        }
        if matches!(self, Self::Costs | Self::All) {
            builder = builder.plugin(CostsPlugin::default());
        }
        if matches!(self, Self::Metrics | Self::All) {
            builder = builder.plugin(MetricsPlugin::new());
        }
        let db = builder.connect().await?;
        let users = db.create_resource(users_config()).await?;
        Ok((db, users))
    }
}

/// The cache plugin of the workload: memory driver.
fn cache() -> Result<CachePlugin, BoxError> {
    Ok(CachePlugin::memory().max_entries(CACHE_ENTRIES).build()?)
}

/// The get comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct GetResult {
    /// N gets without cache.
    pub uncached: Measurement,
    /// N gets with the cache, first pass (misses that fill it).
    pub cached_first: Measurement,
    /// N gets with the cache, second pass (hits).
    pub cached: Measurement,
    /// Cache hits counted by the plugin during the second pass.
    pub hits: u64,
}

impl GetResult {
    /// Cached (second pass) ops/s ÷ uncached ops/s.
    pub fn ratio(&self) -> f64 {
        self.cached.ops_per_s() / self.uncached.ops_per_s()
    }
}

/// One insert-overhead variant.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertResult {
    /// Which plugins.
    pub variant: Variant,
    /// The median round.
    pub median: Measurement,
    /// Every round, in round order (the no-plugin run of round `i` is its reference).
    pub rounds: Vec<Measurement>,
    /// Median over rounds of (time ÷ the same round's no-plugin time − 1), in percent; `None`
    /// for the no-plugin variant.
    pub overhead_pct: Option<f64>,
    /// Median over rounds of (time − the same round's no-plugin time) ÷ inserts, in
    /// nanoseconds per insert; `None` for the no-plugin variant.
    pub added_ns: Option<f64>,
}

/// The whole workload on one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginsResult {
    /// Which backend.
    pub backend: BackendKind,
    /// Its connection string, credentials redacted.
    pub connection: String,
    /// Records (and operations) per phase.
    pub n: usize,
    /// The get comparison.
    pub get: GetResult,
    /// The insert overhead (memory only), in [`Variant::ALL`] order.
    pub inserts: Vec<InsertResult>,
}

impl PluginsResult {
    /// Overhead of `result` over the no-plugin variant, in percent of its time: the median over
    /// rounds of the ratio to the same round's no-plugin run.
    pub fn overhead_pct(&self, result: &InsertResult) -> Option<f64> {
        result.overhead_pct
    }

    /// The no-plugin time per insert (median round), in nanoseconds.
    pub fn base_ns(&self) -> Option<f64> {
        let none = self.inserts.iter().find(|r| r.variant == Variant::None)?;
        ns_per_op(&none.median)
    }
}

/// Nanoseconds per operation of `m`; `None` without operations.
fn ns_per_op(m: &Measurement) -> Option<f64> {
    (m.ops > 0).then(|| m.elapsed.as_secs_f64() * 1e9 / m.ops as f64)
}

/// The median of `values` (`None` when empty).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// `conn` with `part` appended to its prefix.
fn below(conn: &ConnectionString, part: &str) -> Result<ConnectionString, BoxError> {
    let prefix = if conn.prefix().is_empty() {
        part.to_owned()
    } else {
        format!("{}/{part}", conn.prefix())
    };
    Ok(conn.clone().with_prefix(&prefix)?)
}

/// Inserts records `u0` … `u{n-1}`; returns the time and the requests.
async fn insert_all(db: &Database, users: &Resource, n: usize) -> Result<Measurement, BoxError> {
    let docs: Vec<Value> = (0..n).map(|i| document("u", i)).collect();
    let before = db.store().requests();
    let started = Instant::now();
    for doc in &docs {
        users.insert(doc).await?;
    }
    let elapsed = started.elapsed();
    Ok(Measurement::new(
        n,
        elapsed,
        db.store().requests().since(&before).total(),
    ))
}

/// Gets records `u0` … `u{n-1}` in order, checking each; returns the time and the requests.
async fn get_all(db: &Database, users: &Resource, n: usize) -> Result<Measurement, BoxError> {
    let ids: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let before = db.store().requests();
    let started = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let record = users.get(id).await?;
        if record.get("region") != Some(&json!(region(i))) {
            return Err(format!("record {id}: wrong region {:?}", record.get("region")).into());
        }
    }
    let elapsed = started.elapsed();
    Ok(Measurement::new(
        n,
        elapsed,
        db.store().requests().since(&before).total(),
    ))
}

/// The get comparison below `<base>/get-*`.
async fn run_get(target: &Target, n: usize) -> Result<GetResult, BoxError> {
    let (plain, plain_users) = Variant::None
        .open(below(&target.base, "get-plain")?)
        .await?;
    insert_all(&plain, &plain_users, n).await?;
    let uncached = get_all(&plain, &plain_users, n).await?;
    plain.disconnect().await?;

    let (db, users) = Variant::Cache
        .open(below(&target.base, "get-cached")?)
        .await?;
    insert_all(&db, &users, n).await?;
    let plugin = db
        .plugin::<CachePlugin>()
        .ok_or("the cache plugin is not installed")?;
    let cached_first = get_all(&db, &users, n).await?;
    let hits_before = plugin.stats().hits;
    let cached = get_all(&db, &users, n).await?;
    let hits = plugin.stats().hits - hits_before;
    db.disconnect().await?;
    Ok(GetResult {
        uncached,
        cached_first,
        cached,
        hits,
    })
}

/// One round of one insert variant, below `<base>/ins-<variant>-<round>`.
async fn insert_round(
    target: &Target,
    variant: Variant,
    round: &str,
    n: usize,
) -> Result<Measurement, BoxError> {
    let conn = below(&target.base, &format!("ins-{}-{round}", variant.name()))?;
    let (db, users) = variant.open(conn).await?;
    let m = insert_all(&db, &users, n).await?;
    db.disconnect().await?;
    Ok(m)
}

/// The insert overhead: [`INSERT_ROUNDS`] rounds of every variant, the order rotating by round;
/// each variant compared with the no-plugin run of its round.
async fn run_inserts(target: &Target, n: usize) -> Result<Vec<InsertResult>, BoxError> {
    // Warm-up, not measured: the allocator, the runtime and the first database.
    for variant in Variant::ALL {
        insert_round(target, variant, "warm", n.min(200)).await?;
    }
    let mut rounds: Vec<Vec<Measurement>> = vec![Vec::new(); Variant::ALL.len()];
    for round in 0..INSERT_ROUNDS {
        for k in 0..Variant::ALL.len() {
            let index = (k + round) % Variant::ALL.len();
            let m = insert_round(target, Variant::ALL[index], &round.to_string(), n).await?;
            rounds[index].push(m);
        }
    }
    let none_index = Variant::ALL
        .iter()
        .position(|v| *v == Variant::None)
        .unwrap_or(0);
    let none_rounds = rounds.get(none_index).cloned().unwrap_or_default();
    Ok(Variant::ALL
        .into_iter()
        .zip(rounds)
        .map(|(variant, ms)| {
            let paired = |f: fn(&Measurement, &Measurement) -> Option<f64>| {
                (variant != Variant::None)
                    .then(|| {
                        median(
                            ms.iter()
                                .zip(&none_rounds)
                                .filter_map(|(m, none)| f(m, none))
                                .collect(),
                        )
                    })
                    .flatten()
            };
            let overhead_pct = paired(|m, none| {
                let base = none.elapsed.as_secs_f64();
                (base > 0.0).then(|| (m.elapsed.as_secs_f64() / base - 1.0) * 100.0)
            });
            let added_ns = paired(|m, none| Some(ns_per_op(m)? - ns_per_op(none)?));
            let mut sorted = ms.clone();
            sorted.sort_by_key(|m| m.elapsed);
            let median = sorted
                .get(sorted.len() / 2)
                .copied()
                .unwrap_or_else(|| Measurement::new(0, Duration::ZERO, 0));
            InsertResult {
                variant,
                median,
                rounds: ms,
                overhead_pct,
                added_ns,
            }
        })
        .collect())
}

/// Runs the workload on `target` with `n` records.
pub async fn run(target: &Target, n: usize) -> Result<PluginsResult, BoxError> {
    let get = run_get(target, n).await?;
    let inserts = if target.kind == BackendKind::Memory {
        run_inserts(target, n).await?
    } else {
        Vec::new()
    };
    Ok(PluginsResult {
        backend: target.kind,
        connection: target.description(),
        n,
        get,
        inserts,
    })
}

/// `met` or `missed`.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// The markdown report of one backend.
pub fn markdown(header: &Header, result: &PluginsResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} (`{}`)\n\n{} · machine: {} cores · N = {} (users: body-overflow, partition \
         byRegion) · `{}`\n",
        result.backend, result.connection, header.date, header.cores, result.n, header.command
    );
    let get = &result.get;
    out.push_str("| get, sequential | ops/s | ms | requests | req/op |\n");
    out.push_str("|---|---:|---:|---:|---:|\n");
    for (label, m) in [
        ("no cache", &get.uncached),
        ("cache (memory), 1st pass: misses", &get.cached_first),
        ("cache (memory), 2nd pass: hits", &get.cached),
    ] {
        let _ = writeln!(
            out,
            "| {label} | {} | {:.1} | {} | {} |",
            rate(m.ops_per_s()),
            m.ms(),
            m.requests,
            per_op(m.requests_per_op()),
        );
    }
    let ratio = get.ratio();
    let _ = writeln!(
        out,
        "\nCached (2nd pass) ÷ uncached get = **{ratio:.1}×** ({} cache hits of {}); target ≥ \
         {GET_RATIO_TARGET}× on the S3 test server{}.",
        get.hits,
        result.n,
        if result.backend == BackendKind::S3 {
            format!(": **{}**", verdict(ratio >= GET_RATIO_TARGET))
        } else {
            String::new()
        }
    );
    if !result.inserts.is_empty() {
        let _ = writeln!(
            out,
            "\n| insert, sequential ({INSERT_ROUNDS} rounds) | ops/s | ms | req/op | ns/insert added \
             | overhead vs none | target ≤ {OVERHEAD_TARGET_PCT} % |"
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---|\n");
        for r in &result.inserts {
            let overhead = result.overhead_pct(r);
            let added = match (r.variant, r.added_ns) {
                (Variant::None, _) => result
                    .base_ns()
                    .map_or_else(|| "—".to_owned(), |ns| format!("({ns:.0} per insert)")),
                (_, Some(ns)) => format!("{ns:+.0}"),
                (_, None) => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} | {added} | {} | {} |",
                r.variant.name(),
                rate(r.median.ops_per_s()),
                r.median.ms(),
                per_op(r.median.requests_per_op()),
                overhead.map_or_else(|| "—".to_owned(), |o| format!("{o:+.1} %")),
                match (r.variant, overhead) {
                    (Variant::None, _) | (_, None) => "—",
                    (Variant::All, Some(_)) => "(all three: no target)",
                    (_, Some(o)) => verdict(o <= OVERHEAD_TARGET_PCT),
                },
            );
        }
        out.push_str(
            "\nops/s and ms: the median round. Each round inserts into a fresh database and prefix \
             per variant, the variants' order rotating by round; ns/insert added and overhead: \
             medians over rounds of the difference from, and the ratio to, the no-plugin run of \
             the same round.\n",
        );
    }
    out
}

/// A measurement in JSON.
fn side(m: &Measurement) -> Value {
    json!({
        "ops": m.ops,
        "ms": m.ms(),
        "ops_per_s": m.ops_per_s(),
        "requests": m.requests,
        "requests_per_op": m.requests_per_op(),
    })
}

/// The JSON report of one backend (one line).
pub fn json(header: &Header, result: &PluginsResult) -> Value {
    let get = &result.get;
    json!({
        "workload": "plugins",
        "backend": result.backend.name(),
        "connection": result.connection,
        "n": result.n,
        "date": header.date,
        "cores": header.cores,
        "command": header.command,
        "get": {
            "uncached": side(&get.uncached),
            "cached_first_pass": side(&get.cached_first),
            "cached": side(&get.cached),
            "cache_hits": get.hits,
            "ratio": get.ratio(),
            "ratio_target": GET_RATIO_TARGET,
        },
        "insert_rounds": INSERT_ROUNDS,
        "overhead_target_pct": OVERHEAD_TARGET_PCT,
        "inserts": result.inserts.iter().map(|r| json!({
            "variant": r.variant.name(),
            "median": side(&r.median),
            "ns_per_insert": ns_per_op(&r.median),
            "added_ns_per_insert": r.added_ns,
            "overhead_pct": result.overhead_pct(r),
            "rounds_ms": r.rounds.iter().map(Measurement::ms).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Prepared, prepare, run_id};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_run_on_memory() -> Result<(), BoxError> {
        let Prepared::Ready(target) = prepare(BackendKind::Memory, run_id())? else {
            return Err("memory is always available".into());
        };
        let result = run(&target, 20).await?;
        assert_eq!(result.get.hits, 20);
        assert_eq!(result.get.cached.requests, 0);
        assert!(result.get.uncached.requests >= 20);
        assert_eq!(result.inserts.len(), Variant::ALL.len());
        assert!(result.inserts.iter().all(|r| r.median.ops == 20));
        assert!(
            result
                .inserts
                .iter()
                .all(|r| r.rounds.len() == INSERT_ROUNDS
                    && r.added_ns.is_some() == (r.variant != Variant::None)
                    && r.overhead_pct.is_some() == (r.variant != Variant::None))
        );
        let header = Header::now("test");
        assert!(markdown(&header, &result).contains("| all |"));
        assert_eq!(json(&header, &result)["get"]["cache_hits"], 20);
        Ok(())
    }
}
