//! No lost update: many tasks, and several OS processes, update different fields of one record at
//! once; every update is present at the end. Partition references stay exact under random
//! operations. Processes creating different resources at once all end up in `s3db.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, Key, ResourceConfig};
use s3db_tests::Workers;
use serde_json::{Value, json};

type TestResult = Result<(), Error>;

/// A resource `counters` with number fields f0..f{n-1} and the record `shared` at zero.
async fn shared_record(t: &TestStore, fields: usize) -> Result<Database, Error> {
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let mut config = ResourceConfig::new("counters");
    for i in 0..fields {
        config = config.attribute(format!("f{i}"), "number|default:0");
    }
    let r = db.create_resource(config).await?;
    r.insert(json!({"id": "shared"})).await?;
    Ok(db)
}

async fn tasks_race(t: TestStore, tasks: usize, rounds: u64) -> TestResult {
    let db = shared_record(&t, tasks).await?;
    let r = db
        .resource("counters")
        .unwrap_or_else(|| panic!("registered"));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move {
                for n in 1..=rounds {
                    r.update("shared", json!({ format!("f{i}"): n })).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap_or_else(|e| panic!("task panicked: {e}"))?;
    }
    let rec = r.get("shared").await?;
    for i in 0..tasks {
        assert_eq!(
            rec.get(&format!("f{i}")),
            Some(&json!(rounds)),
            "field f{i} of {:?}",
            rec.data()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_8_tasks_50_updates() -> TestResult {
    tasks_race(TestStore::memory("race_tasks"), 8, 50).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_8_tasks_50_updates() -> TestResult {
    tasks_race(TestStore::file("race_tasks"), 8, 50).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_8_tasks_updates() -> TestResult {
    let Some(t) = TestStore::s3("race_tasks") else {
        return Ok(());
    };
    tasks_race(t, 8, 15).await
}

async fn processes_race(t: TestStore, rounds: u64, timeout: Duration) -> TestResult {
    const PROCESSES: usize = 4;
    let db = shared_record(&t, PROCESSES).await?;
    let conn = t.conn.to_string_with_secrets();
    let rounds_arg = rounds.to_string();
    let mut workers = Workers::new();
    for i in 0..PROCESSES {
        let field = format!("f{i}");
        workers.spawn(
            &format!("worker-{i}"),
            env!("CARGO_BIN_EXE_race_worker"),
            &[
                "update-field",
                &conn,
                "counters",
                "shared",
                &field,
                &rounds_arg,
            ],
        );
    }
    let statuses = tokio::task::spawn_blocking(move || workers.wait_all(timeout))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, status) in statuses {
        assert!(status.success(), "{name}: {status}");
    }
    let r = db
        .resource("counters")
        .unwrap_or_else(|| panic!("registered"));
    let rec = r.get("shared").await?;
    for i in 0..PROCESSES {
        assert_eq!(
            rec.get(&format!("f{i}")),
            Some(&json!(rounds)),
            "{:?}",
            rec.data()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_4_processes_update_one_record() -> TestResult {
    processes_race(
        TestStore::file("race_processes"),
        50,
        Duration::from_secs(120),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_4_processes_update_one_record() -> TestResult {
    let Some(t) = TestStore::s3("race_processes") else {
        return Ok(());
    };
    processes_race(t, 15, Duration::from_secs(300)).await
}

/// After random inserts, updates (moving partitions) and deletes, the partition references are
/// exactly those the records call for.
async fn partitions_stay_exact(t: TestStore, ops: usize) -> TestResult {
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let r = db
        .create_resource(
            ResourceConfig::new("things")
                .attribute("color", "string")
                .attribute("size", "integer")
                .partition("byColor", ["color"])
                .partition("byColorSize", ["color", "size"]),
        )
        .await?;
    let colors = ["red", "green", "blue/ish", ""];
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut alive: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..ops {
        let choice = rng.random_range(0..10);
        let doc = json!({"color": colors[rng.random_range(0..colors.len())], "size": rng.random_range(0..3)});
        if choice < 4 || alive.is_empty() {
            let id = format!("t{i}");
            r.insert_with_id(&id, doc.clone()).await?;
            alive.insert(id, doc);
        } else if choice < 8 {
            let idx = rng.random_range(0..alive.len());
            let id = alive.keys().nth(idx).cloned().unwrap_or_default();
            r.update(&id, doc.clone()).await?;
            alive.insert(id, doc);
        } else {
            let idx = rng.random_range(0..alive.len());
            let id = alive.keys().nth(idx).cloned().unwrap_or_default();
            r.delete(&id).await?;
            alive.remove(&id);
        }
    }
    // Expected references from the surviving records.
    let mut expected = BTreeSet::new();
    for (id, doc) in &alive {
        let color = s3db_core::resource::partition::encode_value(&doc["color"]);
        let size = &doc["size"];
        expected.insert(format!(
            "resource=things/partition=byColor/color={color}/id={id}"
        ));
        expected.insert(format!(
            "resource=things/partition=byColorSize/color={color}/size={size}/id={id}"
        ));
    }
    let actual: BTreeSet<String> = t
        .store
        .list_keys(Some(&Key::parse("resource=things")?))
        .await?
        .into_iter()
        .map(|k| k.to_string())
        .filter(|k| k.starts_with("resource=things/partition="))
        .collect();
    assert_eq!(actual, expected);
    assert_eq!(r.count().await?, alive.len() as u64);
    for color in colors {
        let want = alive
            .values()
            .filter(|d| d["color"] == json!(color))
            .count();
        assert_eq!(
            r.list_partition("byColor", json!({"color": color}))
                .await?
                .len(),
            want,
            "color {color:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_partitions_after_200_random_ops() -> TestResult {
    partitions_stay_exact(TestStore::memory("partitions"), 200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_partitions_after_200_random_ops() -> TestResult {
    partitions_stay_exact(TestStore::file("partitions"), 200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_partitions_after_random_ops() -> TestResult {
    let Some(t) = TestStore::s3("partitions") else {
        return Ok(());
    };
    partitions_stay_exact(t, 40).await
}

/// Several databases (as separate processes would) create different resources at once: all of
/// them end up registered in s3db.json.
async fn concurrent_create_resource(t: TestStore) -> TestResult {
    let mut handles = Vec::new();
    for i in 0..6 {
        let conn = t.conn.clone();
        handles.push(tokio::spawn(async move {
            let db = Database::builder().connection(conn).connect().await?;
            db.create_resource(ResourceConfig::new(format!("r{i}")).attribute("v", "number"))
                .await?;
            Ok::<_, Error>(())
        }));
    }
    for h in handles {
        h.await.unwrap_or_else(|e| panic!("{e}"))?;
    }
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    assert_eq!(
        db.resources(),
        (0..6).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_concurrent_create_resource() -> TestResult {
    concurrent_create_resource(TestStore::memory("create_race")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_concurrent_create_resource() -> TestResult {
    concurrent_create_resource(TestStore::file("create_race")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_concurrent_create_resource() -> TestResult {
    let Some(t) = TestStore::s3("create_race") else {
        return Ok(());
    };
    concurrent_create_resource(t).await
}

/// Separate OS processes create different resources at once: all end up in s3db.json.
async fn processes_create_resources(t: TestStore) -> TestResult {
    // The database exists first, so every process races on updating s3db.json.
    Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let conn = t.conn.to_string_with_secrets();
    let mut workers = Workers::new();
    for i in 0..4 {
        let name = format!("p{i}");
        workers.spawn(
            &name,
            env!("CARGO_BIN_EXE_race_worker"),
            &["create-resource", &conn, &name],
        );
    }
    let statuses = tokio::task::spawn_blocking(move || workers.wait_all(Duration::from_secs(120)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, status) in statuses {
        assert!(status.success(), "{name}: {status}");
    }
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    assert_eq!(db.resources(), ["p0", "p1", "p2", "p3"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_processes_create_resources() -> TestResult {
    processes_create_resources(TestStore::file("create_processes")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_processes_create_resources() -> TestResult {
    let Some(t) = TestStore::s3("create_processes") else {
        return Ok(());
    };
    processes_create_resources(t).await
}
