//! A tour of s3db on the embedded `file://` backend (or any connection string given as the first
//! argument). Run it with `cargo run --release --example tour`.
//!
//! It creates two resources (one with a partition and an encrypted field), inserts, updates,
//! queries through a partition, pages, deletes, shows what bad input gets, races a few writers on
//! one record, and — with plugins installed — searches users by name (full-text), keeps loyalty
//! points as consolidated transactions (eventual consistency), shows who changed a record
//! (audit), cache hits, the latency of each operation and what the run would cost on S3.

use std::time::Instant;

use s3db::prelude::*;
use s3db_audit::{AuditPlugin, AuditQuery, AuditUser};
use s3db_cache::{CacheExt, CachePlugin};
use s3db_costs::CostsPlugin;
use s3db_eventual::{EventualConsistencyPlugin, EventualExt, Mode};
use s3db_fulltext::{FullTextExt, FullTextPlugin};
use s3db_metrics::MetricsPlugin;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const DEFAULT_CONNECTION: &str = "file://./data/tour";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match tour().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tour failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: Option<String>,
    customer: String,
    status: String,
    total: f64,
}

async fn tour() -> Result<()> {
    let conn = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_CONNECTION.to_owned());
    let db = Database::builder()
        .connection_string(&conn)
        .passphrase("tour passphrase: keep it out of your code")
        // Metrics first: the first plugin's middleware is the outermost, so it also times reads
        // that the cache answers.
        .plugin(MetricsPlugin::new())
        .plugin(CachePlugin::memory().max_entries(10_000).build()?)
        .plugin(CostsPlugin::default())
        .plugin(AuditPlugin::new())
        .plugin(
            FullTextPlugin::builder()
                .resource("users", ["name"])
                .build()?,
        )
        .plugin(
            EventualConsistencyPlugin::builder()
                .field("users", "points")
                .mode(Mode::Sync)
                .build()?,
        )
        .connect()
        .await?;
    println!("s3db tour on {}", ConnectionString::parse(&conn)?);
    let started = Instant::now();

    step("1. Two resources: users (partitioned by region, with a secret) and orders");
    let users = db
        .create_resource(
            ResourceConfig::new("users")
                .attribute("name", "string|required|min:2")
                .attribute("email", "email|required")
                .attribute("region", "enum:eu,us,ap|default:eu")
                .attribute("api_key", "secret")
                .attribute("points", "number|default:0")
                .partition("byRegion", ["region"])
                .behavior(Behavior::BodyOverflow)
                .timestamps(true)
                .paranoid(false),
        )
        .await?;
    let orders = db
        .create_resource(
            ResourceConfig::new("orders")
                .attribute("customer", "string|required")
                .attribute("status", "enum:open,paid,shipped|default:open")
                .attribute("total", "number|min:0")
                .partition("byStatus", ["status"])
                .paranoid(false),
        )
        .await?;
    // Start from a clean slate when the tour runs again on the same folder.
    let cleared = users.delete_all().await? + orders.delete_all().await?;
    println!(
        "   users {} and orders {} ready{}",
        users.version(),
        orders.version(),
        if cleared > 0 {
            format!(" (cleared {cleared} objects of an earlier run)")
        } else {
            String::new()
        }
    );

    step("2. Inserts");
    let alice = users
        .insert(json!({"id": "alice", "name": "Alice", "email": "alice@example.com", "region": "eu", "api_key": "sk-alice-123"}))
        .await?;
    users
        .insert(json!({"id": "bob", "name": "Bob", "email": "bob@example.com", "region": "us"}))
        .await?;
    users
        .insert(json!({"id": "chen", "name": "Chen", "email": "chen@example.com", "region": "ap"}))
        .await?;
    println!("   {} -> {}", alice.id(), alice.to_json());
    let key = Key::parse("resource=users/data/id=alice")?;
    let tour_started = chrono::Utc::now();
    let stored = db.store().get(&key).await?;
    println!(
        "   at rest the api_key is ciphertext: {}",
        !format!(
            "{:?}{}",
            stored.head.metadata,
            String::from_utf8_lossy(&stored.body)
        )
        .contains("sk-alice-123")
    );
    let typed_orders = orders.typed::<Order>();
    for (i, (customer, total)) in [
        ("alice", 30.0),
        ("bob", 12.5),
        ("alice", 99.9),
        ("chen", 5.0),
    ]
    .into_iter()
    .enumerate()
    {
        typed_orders
            .insert(&Order {
                id: Some(format!("o{i}")),
                customer: customer.to_owned(),
                status: "open".to_owned(),
                total,
            })
            .await?;
    }
    println!("   4 orders inserted through a typed view");

    step("3. Bad input is refused with every reason, and nothing is written");
    match users
        .insert(json!({"name": "X", "email": "nope", "region": "mars", "nick": "x"}))
        .await
    {
        Err(Error::Validation(errors)) => {
            for e in errors {
                println!("   - {e}");
            }
        }
        other => println!("   unexpected: {other:?}"),
    }
    match users
        .insert(json!({"id": "alice", "name": "Alice 2", "email": "a2@example.com"}))
        .await
    {
        Err(e @ Error::AlreadyExists { .. }) => println!("   duplicate id: {e}"),
        other => println!("   unexpected: {other:?}"),
    }

    step("4. Updates: merge, move between partitions, and a race without lost updates");
    let moved = users.update("bob", json!({"region": "eu"})).await?;
    println!(
        "   bob moved to {}",
        moved.get("region").cloned().unwrap_or_default()
    );
    let writers: Vec<_> = ["o0", "o1", "o2", "o3"]
        .into_iter()
        .map(|id| {
            let orders = orders.clone();
            tokio::spawn(async move { orders.update(id, json!({"status": "paid"})).await })
        })
        .collect();
    for w in writers {
        w.await.map_err(|e| Error::Refused {
            operation: "tour",
            reason: e.to_string(),
        })??;
    }
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let orders = orders.clone();
            tokio::spawn(async move {
                orders
                    .update("o2", json!({ "total": 100.0 + f64::from(i) }))
                    .await
            })
        })
        .collect();
    for r in racers {
        r.await.map_err(|e| Error::Refused {
            operation: "tour",
            reason: e.to_string(),
        })??;
    }
    println!(
        "   8 concurrent updates of o2: each applied in turn, none lost to a conflict; total now {} (the last one)",
        orders
            .get("o2")
            .await?
            .get("total")
            .cloned()
            .unwrap_or_default()
    );

    step("5. Queries: through a partition, and with comparisons");
    let before = db.store().requests();
    let in_eu = users.query(Filter::eq("region", "eu")).await?;
    let spent = db.store().requests().since(&before);
    println!(
        "   users in eu: {:?} ({} LIST + {} GET: only the partition was read)",
        in_eu.iter().map(Record::id).collect::<Vec<_>>(),
        spent.count(RequestKind::List),
        spent.count(RequestKind::Get)
    );
    let big = orders
        .query(Filter::eq("status", "paid").and(Filter::gte("total", 20)))
        .await?;
    println!(
        "   paid orders of 20 or more: {:?}",
        big.iter().map(Record::id).collect::<Vec<_>>()
    );
    println!(
        "   orders: {}, paid: {}",
        orders.count().await?,
        orders
            .count_partition("byStatus", json!({"status": "paid"}))
            .await?
    );

    step("6. Pages of 2");
    let mut page = orders.page(Page::size(2)).await?;
    let mut n = 1;
    loop {
        println!(
            "   page {n}: {:?}",
            page.items.iter().map(Record::id).collect::<Vec<_>>()
        );
        let Some(cursor) = page.next_cursor.clone() else {
            break;
        };
        page = orders.page(Page::size(2).after(cursor)).await?;
        n += 1;
    }

    step("7. Events and delete");
    let mut events = users.subscribe();
    users.delete("chen").await?;
    if let Ok(event) = events.try_recv() {
        println!("   event: {}", describe(&event));
    }
    println!("   users left: {:?}", users.list_ids().await?);

    step("8. The cache: a repeated read makes no request");
    users.get("alice").await?;
    users.count().await?;
    let before = db.store().requests();
    for _ in 0..3 {
        users.get("alice").await?;
        users.count().await?;
    }
    let stats = users.cache().map(|c| c.stats()).unwrap_or_default();
    println!(
        "   3 x (get + count) after a first read: {} requests; cache hits {}, misses {}, hit ratio {:.0}%",
        db.store().requests().since(&before).total(),
        stats.hits,
        stats.misses,
        stats.hit_ratio() * 100.0
    );
    users
        .update("alice", json!({"name": "Alice Liddell"}))
        .await?;
    println!(
        "   after an update the next read sees it: {}",
        users
            .get("alice")
            .await?
            .get("name")
            .cloned()
            .unwrap_or_default()
    );

    step("9. Full-text search: prefix matching, kept up to date by every write");
    if let Some(index) = users.fulltext() {
        // chen was deleted in step 7: the index forgot him too.
        for query in ["ali", "liddell", "chen"] {
            let hits = index.search(query).await?;
            let found: Vec<String> = hits
                .iter()
                .map(|h| format!("{} ({:.2})", h.record.id(), h.score))
                .collect();
            println!("   search {query:?}: {found:?}");
        }
    }

    step("10. Eventual consistency: points as transactions, consolidated exactly once");
    let points = users.eventual("points");
    points.add("alice", 10).await?;
    points.add("alice", 5).await?;
    let after = points.sub("alice", 3).await?;
    println!(
        "   +10 +5 -3 -> {:?}; the record holds {}; replaying the log gives {}",
        after.value,
        users
            .get("alice")
            .await?
            .get("points")
            .cloned()
            .unwrap_or_default(),
        points.recalculate("alice").await?
    );

    step("11. Audit: who changed alice, and what");
    AuditUser::scope("support-desk", async {
        users
            .update("alice", json!({"region": "us"}))
            .await
            .map(|_| ())
    })
    .await?;
    if let Some(audit) = db.plugin::<AuditPlugin>() {
        let history = audit
            .query(
                &AuditQuery::new()
                    .resource("users")
                    .record("alice")
                    .since(tour_started),
            )
            .await?;
        for entry in &history {
            // The fields this update changed (timestamps aside).
            let changed: Vec<String> = match (&entry.old_data, &entry.new_data) {
                (Some(old), Some(Value::Object(new))) => new
                    .iter()
                    .filter(|(k, v)| k.as_str() != "updated_at" && old.get(k.as_str()) != Some(*v))
                    .map(|(k, v)| {
                        let was = old.get(k.as_str()).cloned().unwrap_or_default();
                        format!("{k}: {was} -> {v}")
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let changed = changed.join(", ");
            println!(
                "   {} {:<6} by {:<12} {changed}",
                entry.timestamp.format("%H:%M:%S%.3f"),
                entry.operation.as_str(),
                entry.user
            );
        }
    }

    step("12. Metrics: every operation timed");
    if let Some(metrics) = db.plugin::<MetricsPlugin>() {
        let snapshot = metrics.snapshot();
        for (operation, m) in &snapshot.operations {
            println!(
                "   {operation:<10} count {:>3}  errors {:>2}  p50 {:>8.3} ms  p99 {:>8.3} ms",
                m.count,
                m.errors,
                m.latency.p50.as_secs_f64() * 1000.0,
                m.latency.p99.as_secs_f64() * 1000.0
            );
        }
    }

    step("13. What it cost");
    println!("   {}", db.store().requests());
    if let Some(costs) = db.plugin::<CostsPlugin>() {
        let snapshot = costs.snapshot();
        println!(
            "   on AWS S3 this run would cost {} (requests {} + transfer {})",
            snapshot.total, snapshot.request_cost, snapshot.transfer_out_cost
        );
    }
    println!("   in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    db.disconnect().await?;
    Ok(())
}

fn describe(event: &Event) -> String {
    match event {
        Event::Deleted { resource, id, .. } => format!("deleted {resource}/{id}"),
        other => format!("{other:?}"),
    }
}

fn step(title: &str) {
    println!("\n{title}");
}
