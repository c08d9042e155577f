//! The `resources` workload: the resource model on the standard workload of the original s3db.js
//! (`BENCH.md`), so both can be compared phase by phase.
//!
//! The database is connected at the run's connection string and creates `users` (attributes
//! `name`, `email`, `age`, `region`, `bio`; behavior `body-overflow`; timestamps off; partition
//! `byRegion` on `region`). With N records (`u0` … `u{N-1}`, region `i % 4`, a 100-character bio),
//! each phase is timed separately:
//!
//! 1. `insert_seq`: N sequential inserts;
//! 2. `get_seq`: N sequential gets;
//! 3. `update_seq`: N sequential updates of `age` to `age + 1` (the value is known from the insert:
//!    no read before the update, which itself reads once and writes once, conditionally);
//! 4. `count`: one count (one operation);
//! 5. `list`: one listing of the N records (records are the operations);
//! 6. `query_partition`: the records of each of the 4 regions through the partition (records are
//!    the operations);
//! 7. `delete_seq`: N sequential deletes;
//! 8. `insert_conc` / `get_conc`: N inserts, then N gets, of `c0` … `c{N-1}` from 32 tasks.
//!
//! Requests are those the database's store counted during the phase. On memory, the raw
//! `object_store` put rate is measured too, as the `store` workload's raw `put` phase does, to put
//! `insert_seq` in proportion; and the raw puts of exactly the objects the inserts wrote (same
//! paths, metadata and bodies), the floor of any layer that stores these records.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use s3db_core::store::open_object_store;
use s3db_core::{Behavior, Database, RequestStats, Resource, ResourceConfig};
use serde_json::{Value, json};

use crate::backend::{BackendKind, Target};
use crate::measure::{BoxError, CONCURRENCY, Measurement, concurrently};
use crate::store_workload::{Payload, names, raw_put};

/// The phases, in the order they run.
pub const PHASES: [&str; 9] = [
    "insert_seq",
    "get_seq",
    "update_seq",
    "count",
    "list",
    "query_partition",
    "delete_seq",
    "insert_conc",
    "get_conc",
];

/// The regions records are spread over (`i % 4`).
pub const REGIONS: [&str; 4] = ["us-east", "us-west", "eu", "ap"];

/// Length of every record's `bio`.
pub const BIO_CHARS: usize = 100;

/// Name of the resource.
const RESOURCE: &str = "users";

/// Name of the partition on `region`.
const PARTITION: &str = "byRegion";

/// Rounds of the insert-vs-raw-put comparison on memory: each round inserts N records into a new
/// resource of the same definition, then makes N raw puts; the median of the rounds' ratios is
/// kept (a 2000-put memory phase lasts a few ms, so single rounds are noisy).
pub const RAW_PUT_ROUNDS: usize = 7;

/// The result of one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseResult {
    /// Name of the phase (one of [`PHASES`]).
    pub name: &'static str,
    /// Operations, time and total requests.
    pub measurement: Measurement,
    /// Requests by kind.
    pub requests: RequestStats,
}

/// Every phase of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcesResult {
    /// Which backend.
    pub backend: BackendKind,
    /// Its connection string, credentials redacted.
    pub connection: String,
    /// Records per phase.
    pub n: usize,
    /// The phases, in the order they ran.
    pub phases: Vec<PhaseResult>,
    /// On memory: [`RAW_PUT_ROUNDS`] rounds of (N inserts into a new resource of the same
    /// definition, N raw `object_store` puts), run after the phases.
    pub insert_rounds: Vec<InsertRound>,
}

/// One round of the insert-vs-raw-put comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InsertRound {
    /// N sequential inserts (requests: the PUTs they made).
    pub insert: Measurement,
    /// N sequential raw `object_store` puts.
    pub raw_put: Measurement,
    /// Sequential raw `object_store` puts of the objects the N inserts wrote (records and
    /// partition references: same relative paths, metadata and bodies), on new paths.
    pub raw_same_objects: Measurement,
}

impl InsertRound {
    /// Insert ops/s ÷ raw put ops/s.
    pub fn per_insert(&self) -> f64 {
        self.insert.ops_per_s() / self.raw_put.ops_per_s()
    }

    /// The same per object written: PUTs/s of the inserts ÷ raw put ops/s.
    pub fn per_put(&self) -> f64 {
        self.per_insert() * self.insert.requests as f64 / self.insert.ops.max(1) as f64
    }

    /// Insert ops/s ÷ the rate at which raw puts write what one insert writes: the time the raw
    /// puts of the same objects took ÷ the time the inserts took.
    pub fn per_same_objects(&self) -> f64 {
        self.raw_same_objects.elapsed.as_secs_f64() / self.insert.elapsed.as_secs_f64()
    }
}

impl ResourcesResult {
    /// The phase named `name`.
    #[cfg(test)]
    pub fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// The median round of the insert-vs-raw-put comparison by `ratio` (memory only).
    pub fn median_round(&self, ratio: fn(&InsertRound) -> f64) -> Option<f64> {
        let mut ratios: Vec<f64> = self.insert_rounds.iter().map(ratio).collect();
        ratios.sort_by(f64::total_cmp);
        ratios.get(ratios.len() / 2).copied()
    }

    /// Median of the rounds' insert ops/s ÷ raw put ops/s (memory only).
    pub fn insert_vs_raw_put(&self) -> Option<f64> {
        self.median_round(InsertRound::per_insert)
    }

    /// Median of the rounds' PUTs/s of inserts ÷ raw put ops/s (memory only).
    pub fn insert_put_vs_raw_put(&self) -> Option<f64> {
        self.median_round(InsertRound::per_put)
    }

    /// Median of the rounds' [`InsertRound::per_same_objects`] (memory only).
    pub fn insert_vs_raw_same_objects(&self) -> Option<f64> {
        self.median_round(InsertRound::per_same_objects)
    }
}

/// The resource definition of the workload.
pub fn users_config() -> ResourceConfig {
    users_config_named(RESOURCE)
}

/// The resource definition of the workload under another name.
fn users_config_named(name: &str) -> ResourceConfig {
    ResourceConfig::new(name)
        .attribute("name", "string|required")
        .attribute("email", "email|required")
        .attribute("age", "number")
        .attribute("region", "string")
        .attribute("bio", "string")
        .behavior(Behavior::BodyOverflow)
        .partition(PARTITION, ["region"])
        .timestamps(false)
}

/// The age of record `i` when inserted.
fn age(i: usize) -> u64 {
    20 + (i % 50) as u64
}

/// The region of record `i`.
pub fn region(i: usize) -> &'static str {
    REGIONS[i % REGIONS.len()]
}

/// The document of record `i` with id `<prefix><i>`.
pub fn document(prefix: &str, i: usize) -> Value {
    let mut bio = format!("Bio of user {i}: ");
    while bio.len() < BIO_CHARS {
        bio.push_str("lorem ipsum ");
    }
    bio.truncate(BIO_CHARS);
    json!({
        "id": format!("{prefix}{i}"),
        "name": format!("User {i}"),
        "email": format!("user{i}@example.com"),
        "age": age(i),
        "region": region(i),
        "bio": bio,
    })
}

/// Times `work` (which returns the number of operations it did) and counts the requests the
/// database's store made meanwhile.
async fn timed<F>(db: &Database, name: &'static str, work: F) -> Result<PhaseResult, BoxError>
where
    F: Future<Output = Result<usize, BoxError>>,
{
    let before = db.store().requests();
    let started = Instant::now();
    let ops = work.await?;
    let elapsed = started.elapsed();
    let requests = db.store().requests().since(&before);
    Ok(PhaseResult {
        name,
        measurement: Measurement::new(ops, elapsed, requests.total()),
        requests,
    })
}

/// Fails unless `found` equals `expected`.
fn check<T: PartialEq + std::fmt::Debug>(
    what: &str,
    found: T,
    expected: T,
) -> Result<(), BoxError> {
    if found == expected {
        Ok(())
    } else {
        Err(format!("{what}: got {found:?}, expected {expected:?}").into())
    }
}

/// Runs every phase on `target` with `n` records.
pub async fn run(target: &Target, n: usize) -> Result<ResourcesResult, BoxError> {
    let db = Database::builder()
        .connection(target.base.clone())
        .connect()
        .await?;
    let users = db.create_resource(users_config()).await?;

    let docs: Vec<Value> = (0..n).map(|i| document("u", i)).collect();
    let ids: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let mut phases = Vec::with_capacity(PHASES.len());

    phases.push(
        timed(&db, "insert_seq", async {
            for doc in &docs {
                users.insert(doc).await?;
            }
            Ok(n)
        })
        .await?,
    );

    phases.push(
        timed(&db, "get_seq", async {
            for (i, id) in ids.iter().enumerate() {
                let record = users.get(id).await?;
                check("region", record.get("region"), Some(&json!(region(i))))?;
            }
            Ok(n)
        })
        .await?,
    );

    phases.push(
        timed(&db, "update_seq", async {
            for (i, id) in ids.iter().enumerate() {
                let record = users.update(id, json!({ "age": age(i) + 1 })).await?;
                check("age", record.get("age"), Some(&json!(age(i) + 1)))?;
            }
            Ok(n)
        })
        .await?,
    );

    phases.push(
        timed(&db, "count", async {
            check("count", users.count().await?, n as u64)?;
            Ok(1)
        })
        .await?,
    );

    phases.push(
        timed(&db, "list", async {
            let records = users.list().await?;
            check("listed", records.len(), n)?;
            Ok(records.len())
        })
        .await?,
    );

    phases.push(
        timed(&db, "query_partition", async {
            let mut found = 0;
            for region in REGIONS {
                let records = users
                    .list_partition(PARTITION, json!({ "region": region }))
                    .await?;
                for record in &records {
                    check("partition", record.get("region"), Some(&json!(region)))?;
                }
                found += records.len();
            }
            check("records in the partitions", found, n)?;
            Ok(found)
        })
        .await?,
    );

    phases.push(
        timed(&db, "delete_seq", async {
            for id in &ids {
                users.delete(id).await?;
            }
            Ok(n)
        })
        .await?,
    );

    let conc_docs: Arc<Vec<Value>> = Arc::new((0..n).map(|i| document("c", i)).collect());
    phases.push(
        timed(&db, "insert_conc", async {
            let (users, docs) = (users.clone(), Arc::clone(&conc_docs));
            concurrently(n, CONCURRENCY, move |i| {
                let (users, docs) = (users.clone(), Arc::clone(&docs));
                async move {
                    users.insert(&docs[i]).await?;
                    Ok(())
                }
            })
            .await?;
            Ok(n)
        })
        .await?,
    );

    phases.push(
        timed(&db, "get_conc", async {
            let users: Resource = users.clone();
            concurrently(n, CONCURRENCY, move |i| {
                let users = users.clone();
                async move {
                    let record = users.get(&format!("c{i}")).await?;
                    check("region", record.get("region"), Some(&json!(region(i))))
                }
            })
            .await?;
            Ok(n)
        })
        .await?,
    );

    let insert_rounds = if target.kind == BackendKind::Memory {
        measure_insert_vs_raw(&db, target, n).await?
    } else {
        Vec::new()
    };

    Ok(ResourcesResult {
        backend: target.kind,
        connection: target.description(),
        n,
        phases,
        insert_rounds,
    })
}

/// [`RAW_PUT_ROUNDS`] rounds of: `n` sequential inserts of the workload's documents into a new
/// resource of the workload's definition, then `n` raw `object_store` puts measured as the
/// `store` workload's raw `put` phase (200-byte body, 3 metadata entries as attributes) on new
/// keys of the same memory bucket, then raw puts of the very objects the inserts wrote (read
/// back beforehand, untimed) on new keys.
async fn measure_insert_vs_raw(
    db: &Database,
    target: &Target,
    n: usize,
) -> Result<Vec<InsertRound>, BoxError> {
    let raw = open_object_store(&target.base)?;
    let payload = Payload::new();
    let docs: Vec<Value> = (0..n).map(|i| document("r", i)).collect();
    let mut rounds = Vec::with_capacity(RAW_PUT_ROUNDS);
    for round in 0..RAW_PUT_ROUNDS {
        let resource = db
            .create_resource(users_config_named(&format!("{RESOURCE}{round}")))
            .await?;
        let insert = timed(db, "insert_seq", async {
            for doc in &docs {
                resource.insert(doc).await?;
            }
            Ok(n)
        })
        .await?
        .measurement;
        let paths = names(&format!("put{round}"), n)
            .map(|name| target.raw_path(&name))
            .collect::<Result<Vec<_>, _>>()?;
        let raw_put = raw_put(&raw, &paths, &payload).await?;
        let written = written_objects(&raw, target, &format!("{RESOURCE}{round}"), round).await?;
        let raw_same_objects = raw_put_objects(&raw, &written).await?;
        rounds.push(InsertRound {
            insert,
            raw_put,
            raw_same_objects,
        });
    }
    Ok(rounds)
}

/// An object to put raw: path, body and options (metadata as attributes).
type RawObject = (Path, Bytes, PutOptions);

/// Every object of `resource` (records and partition references), read with raw `object_store`,
/// with the path each gets below `raw/same<round>/`.
async fn written_objects(
    raw: &Arc<dyn ObjectStore>,
    target: &Target,
    resource: &str,
    round: usize,
) -> Result<Vec<RawObject>, BoxError> {
    let root = target.path("")?;
    let prefix = target.path(&format!("resource={resource}"))?;
    let listed: Vec<_> = raw.list(Some(&prefix)).try_collect().await?;
    let mut objects = Vec::with_capacity(listed.len());
    for meta in listed {
        let got = raw.get(&meta.location).await?;
        let attributes = got.attributes.clone();
        let body = got.bytes().await?;
        let relative = meta
            .location
            .prefix_match(&root)
            .ok_or("a listed object outside the run's prefix")?
            .map(|part| part.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join("/");
        let path = target.raw_path(&format!("same{round}/{relative}"))?;
        objects.push((
            path,
            body,
            PutOptions {
                attributes,
                ..PutOptions::default()
            },
        ));
    }
    Ok(objects)
}

/// Sequential raw puts of `objects`, each with a copy of its options (as [`raw_put`] does).
async fn raw_put_objects(
    raw: &Arc<dyn ObjectStore>,
    objects: &[RawObject],
) -> Result<Measurement, BoxError> {
    let started = Instant::now();
    for (path, body, options) in objects {
        raw.put_opts(path, PutPayload::from_bytes(body.clone()), options.clone())
            .await?;
    }
    Ok(Measurement::new(
        objects.len(),
        started.elapsed(),
        objects.len() as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Prepared, prepare};
    use s3db_core::RequestKind::{Delete, Get, List, Put};

    #[test]
    fn documents_follow_the_workload() {
        let doc = document("u", 6);
        assert_eq!(doc["id"], "u6");
        assert_eq!(doc["region"], REGIONS[2]);
        assert_eq!(doc["bio"].as_str().map(str::len), Some(BIO_CHARS));
    }

    /// Runs the workload with 40 records and checks the requests of every phase, by kind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_every_phase_with_the_floor_requests() -> Result<(), BoxError> {
        const N: u64 = 40;
        for kind in [BackendKind::Memory, BackendKind::File] {
            let Prepared::Ready(target) = prepare(kind, crate::backend::run_id())? else {
                return Err("memory and file are always available".into());
            };
            let result = run(&target, N as usize).await?;
            let names: Vec<_> = result.phases.iter().map(|p| p.name).collect();
            assert_eq!(names, PHASES);
            let rounds = if kind == BackendKind::Memory {
                RAW_PUT_ROUNDS
            } else {
                0
            };
            assert_eq!(result.insert_rounds.len(), rounds);
            for round in &result.insert_rounds {
                // The same floor as insert_seq: 2 PUTs per insert.
                assert_eq!(round.insert.ops, N);
                assert_eq!(round.insert.requests, 2 * N);
                assert!((round.per_put() - 2.0 * round.per_insert()).abs() < 1e-9);
                // The raw copy wrote exactly what the inserts wrote.
                assert_eq!(round.raw_same_objects.ops, 2 * N);
            }
            // (phase, operations, [(kind, requests)]): every other kind must be zero.
            let expected = [
                // 1 conditional PUT of the record + 1 PUT of its partition reference.
                ("insert_seq", N, vec![(Put, 2 * N)]),
                ("get_seq", N, vec![(Get, N)]),
                // 1 GET + 1 conditional PUT; the region does not change, so no reference moves.
                ("update_seq", N, vec![(Get, N), (Put, N)]),
                ("count", 1, vec![(List, 1)]),
                ("list", N, vec![(List, 1), (Get, N)]),
                ("query_partition", N, vec![(List, 4), (Get, N)]),
                // 1 GET (to find the partition reference) + DELETE of record and reference.
                ("delete_seq", N, vec![(Get, N), (Delete, 2 * N)]),
                ("insert_conc", N, vec![(Put, 2 * N)]),
                ("get_conc", N, vec![(Get, N)]),
            ];
            for (name, ops, counts) in expected {
                let phase = result.phase(name).ok_or("missing phase")?;
                assert_eq!(phase.measurement.ops, ops, "{kind} {name} ops");
                let total: u64 = counts.iter().map(|(_, c)| c).sum();
                assert_eq!(phase.measurement.requests, total, "{kind} {name} requests");
                for (request, count) in counts {
                    assert_eq!(
                        phase.requests.count(request),
                        count,
                        "{kind} {name} {request}"
                    );
                }
            }
        }
        Ok(())
    }
}
