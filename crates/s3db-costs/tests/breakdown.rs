//! Per-resource and per-plugin breakdowns, from each request's key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use s3db_core::plugin::{Plugin, PluginContext, PluginStorage, SetOptions, async_trait};
use s3db_core::store::RequestEvent;
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, Key, Metadata, RequestKind, ResourceConfig};
use s3db_costs::{CostsPlugin, Owner, Usage};
use serde_json::{Map, Value, json};

type TestResult = Result<(), Error>;

fn key(k: &str) -> Key {
    Key::parse(k).unwrap_or_else(|e| panic!("{k}: {e}"))
}

fn data(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn usage(counts: &[(RequestKind, u64)], failed: u64, bytes_in: u64, bytes_out: u64) -> Usage {
    let mut u = Usage::default();
    for (kind, n) in counts {
        u.add_requests(*kind, *n);
    }
    u.failed = failed;
    u.bytes_in = bytes_in;
    u.bytes_out = bytes_out;
    u
}

/// Sums every owner of a snapshot: each request is in exactly one.
fn sum_of_owners(snap: &s3db_costs::CostSnapshot) -> Usage {
    let mut sum = Usage::default();
    for (_, cost) in snap.owners() {
        sum.merge(&cost.usage);
    }
    sum
}

#[tokio::test]
async fn keys_are_attributed_exactly_on_memory() -> TestResult {
    // memory:// has a database prefix, stripped from every key.
    attributed(&TestStore::memory("costs_keys")).await
}

#[tokio::test]
async fn keys_are_attributed_exactly_on_file() -> TestResult {
    // file:// has none.
    attributed(&TestStore::file("costs_keys")).await
}

async fn attributed(t: &TestStore) -> TestResult {
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let costs = db.use_plugin(CostsPlugin::default()).await?;
    let store = db.store();
    let probe = PluginStorage::new(store.clone(), "probe")?;
    costs.reset();

    // users: 1 PUT (10 bytes in), 1 GET (10 bytes out), 1 failed HEAD.
    store
        .put(
            &key("resource=users/data/id=1"),
            &Metadata::new(),
            vec![b'u'; 10].into(),
        )
        .await?;
    store.get(&key("resource=users/data/id=1")).await?;
    assert!(!store.exists(&key("resource=users/data/id=2")).await?);
    // orders: a record and a partition reference (2 PUT), a listing of the resource (1 LIST).
    store
        .put(
            &key("resource=orders/data/id=9"),
            &Metadata::new(),
            vec![b'o'; 5].into(),
        )
        .await?;
    store
        .put(
            &key("resource=orders/partition=byDay/day=2024-01-01/id=9"),
            &Metadata::new(),
            "".into(),
        )
        .await?;
    store.list_keys(Some(&key("resource=orders"))).await?;
    // The plugin "probe": global and resource-scoped storage, both its own.
    let global = probe.key(None, &["config"])?;
    let scoped = probe.key(Some("users"), &["u", "1"])?;
    probe
        .set(&global, &data(json!({"a": 1})), SetOptions::new())
        .await?;
    probe
        .set(&scoped, &data(json!({"b": 2})), SetOptions::new())
        .await?;
    assert!(probe.get(&global).await?.is_some());
    // The database: its metadata and a listing of everything.
    store.get(&key("s3db.json")).await?;
    store.list_keys(None).await?;
    // Anything else.
    store
        .put(&key("misc/readme"), &Metadata::new(), "hi".into())
        .await?;

    let snap = costs.snapshot();
    assert_eq!(
        snap.by_resource
            .iter()
            .map(|(name, cost)| (name.as_str(), cost.usage))
            .collect::<BTreeMap<_, _>>(),
        BTreeMap::from([
            (
                "orders",
                usage(&[(RequestKind::Put, 2), (RequestKind::List, 1)], 0, 5, 0)
            ),
            (
                "users",
                usage(
                    &[
                        (RequestKind::Put, 1),
                        (RequestKind::Get, 1),
                        (RequestKind::Head, 1)
                    ],
                    1,
                    10,
                    10
                )
            ),
        ]),
        "resource=users/plugin=probe/… belongs to the plugin, not to users"
    );
    let probe_usage = snap.by_plugin["probe"].usage;
    assert_eq!(snap.by_plugin.len(), 1);
    assert_eq!(probe_usage.count(RequestKind::Put), 2);
    assert_eq!(probe_usage.count(RequestKind::Get), 1);
    assert_eq!(
        probe_usage.requests(),
        3,
        "PluginStorage set and get are one request each"
    );
    assert_eq!(
        snap.database.usage.count(RequestKind::Get),
        1,
        "s3db.json → database"
    );
    assert_eq!(
        snap.database.usage.count(RequestKind::List),
        1,
        "whole-database listing → database"
    );
    assert_eq!(snap.database.usage.requests(), 2);
    assert_eq!(
        snap.other.usage,
        usage(&[(RequestKind::Put, 1)], 0, 2, 0),
        "misc/readme"
    );
    assert_eq!(sum_of_owners(&snap), snap.usage);
    // Each owner's request cost is its own requests priced.
    assert_eq!(
        snap.by_resource["orders"].request_cost.pico_usd(),
        3 * 5_000_000
    );
    assert_eq!(
        snap.by_resource["users"].request_cost.pico_usd(),
        5_000_000 + 2 * 400_000
    );
    let table = snap.to_string();
    for row in [
        "resource orders",
        "resource users",
        "plugin probe",
        "database",
        "other",
    ] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    Ok(())
}

/// A tiny plugin that writes to its storage at install and on demand.
struct Probe;

#[async_trait]
impl Plugin for Probe {
    fn name(&self) -> &str {
        "probe"
    }

    async fn install(&self, cx: &PluginContext) -> s3db_core::Result<()> {
        let k = cx.storage().key(None, &["installed"])?;
        cx.storage()
            .set(&k, &data(json!({"at": "now"})), SetOptions::new())
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn a_workload_on_two_resources_and_a_plugin_splits_by_owner() -> TestResult {
    let t = TestStore::memory("costs_split");
    let db = Database::builder()
        .connection(t.conn.clone())
        .plugin(CostsPlugin::default())
        .connect()
        .await?;
    let costs = db
        .plugin::<CostsPlugin>()
        .unwrap_or_else(|| panic!("installed"));
    // A second opinion: every key the store layer sees, classified by plain string tests.
    let seen: Arc<Mutex<Vec<(RequestKind, String)>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let witness = db
        .store()
        .accounting()
        .observe(Arc::new(move |e: &RequestEvent<'_>| {
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((e.kind, e.key.to_owned()));
        }));

    let users = db
        .create_resource(
            ResourceConfig::new("users")
                .attribute("name", "string|required")
                .attribute("region", "string")
                .partition("byRegion", ["region"]),
        )
        .await?;
    let orders = db
        .create_resource(ResourceConfig::new("orders").attribute("total", "number"))
        .await?;
    db.use_plugin(Probe).await?;
    let probe = db
        .plugin_context("probe")
        .unwrap_or_else(|| panic!("probe installed"));
    for i in 0..4 {
        users
            .insert(json!({"id": format!("u{i}"), "name": "n", "region": "eu"}))
            .await?;
    }
    orders.insert(json!({"id": "o1", "total": 3})).await?;
    orders.get("o1").await?;
    users.list().await?;
    let scoped = probe.storage().key(Some("orders"), &["o1", "note"])?;
    probe
        .storage()
        .set(&scoped, &data(json!({"n": 1})), SetOptions::new())
        .await?;
    probe.storage().get(&scoped).await?;
    probe
        .storage()
        .increment(&probe.storage().key(None, &["hits"])?, 1)
        .await?;
    db.store().accounting().unobserve(witness);

    let snap = costs.snapshot();
    let seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let prefix = format!("{}/", db.store().prefix());
    let count = |pred: &dyn Fn(&str) -> bool| -> u64 {
        seen.iter()
            .filter(|(_, k)| pred(k.strip_prefix(&prefix).unwrap_or(k)))
            .count() as u64
    };
    let users_n = count(&|k| k.starts_with("resource=users/") && !k.contains("/plugin="));
    let orders_n = count(&|k| k.starts_with("resource=orders/") && !k.contains("/plugin="));
    let probe_n = count(&|k| k.starts_with("plugin=probe/") || k.contains("/plugin=probe/"));
    let meta_n = count(&|k| k == "s3db.json");
    assert!(users_n >= 8 && orders_n >= 2 && probe_n >= 4 && meta_n >= 2);
    assert_eq!(snap.by_resource["users"].usage.requests(), users_n);
    assert_eq!(snap.by_resource["orders"].usage.requests(), orders_n);
    assert_eq!(snap.by_plugin["probe"].usage.requests(), probe_n);
    assert_eq!(snap.database.usage.requests(), meta_n);
    assert_eq!(snap.usage.requests(), seen.len() as u64);
    assert_eq!(sum_of_owners(&snap), snap.usage);
    assert!(snap.other.usage.is_empty());
    // The plugin's own key layout is parsed the same way by the public helper.
    for (_, k) in &seen {
        let owner = Owner::of(db.store().prefix(), k);
        assert_ne!(owner, Owner::Other, "{k}");
    }
    db.disconnect().await
}
