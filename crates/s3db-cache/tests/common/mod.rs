//! Helpers shared by the cache tests.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use s3db_cache::CachePlugin;
use s3db_core::testing::{FaultPlan, FaultyStore, TestStore};
use s3db_core::{ConnectionString, Database, Filter, Page, Resource, ResourceConfig, Result};
use serde_json::{Value, json};

pub type TestResult = Result<()>;

/// Users with a partition on `region`.
pub fn users() -> ResourceConfig {
    ResourceConfig::new("users")
        .attribute("name", "string|required")
        .attribute("region", "string|required")
        .attribute("age", "integer")
        .partition("byRegion", ["region"])
        .paranoid(false)
}

/// Notes, without partitions.
pub fn notes() -> ResourceConfig {
    ResourceConfig::new("notes").attribute("text", "string|required")
}

pub async fn connect(conn: &ConnectionString) -> Result<Database> {
    Database::builder().connection(conn.clone()).connect().await
}

/// A database whose every store request takes `latency`.
pub async fn slow_db(t: &TestStore, latency: Duration) -> Result<Database> {
    Database::builder()
        .connection(t.conn.clone())
        .store_layer(move |inner| {
            Arc::new(FaultyStore::new(inner, FaultPlan::new().latency(latency)))
        })
        .connect()
        .await
}

pub fn memory_cache() -> CachePlugin {
    CachePlugin::memory()
        .build()
        .unwrap_or_else(|e| panic!("memory cache: {e}"))
}

pub fn resource(db: &Database, name: &str) -> Resource {
    db.resource(name)
        .unwrap_or_else(|| panic!("resource {name}"))
}

/// Seeds users a, b (eu) and c (us).
pub async fn seed_users(users: &Resource) -> TestResult {
    users
        .insert(json!({"id": "a", "name": "Ann", "region": "eu", "age": 30}))
        .await?;
    users
        .insert(json!({"id": "b", "name": "Bob", "region": "eu", "age": 5}))
        .await?;
    users
        .insert(json!({"id": "c", "name": "Cid", "region": "us", "age": 50}))
        .await?;
    Ok(())
}

/// A read, its answer as JSON (errors as `{"error": …}`, so "not found" compares too).
pub type Read = (
    &'static str,
    Arc<dyn Fn(Resource) -> Pin<Box<dyn Future<Output = Value> + Send>> + Send + Sync>,
);

fn answer<T>(r: Result<T>, f: impl FnOnce(T) -> Value) -> Value {
    match r {
        Ok(v) => f(v),
        Err(s3db_core::Error::NotFound { .. }) => json!({"error": "not found"}),
        Err(e) => json!({"error": e.to_string()}),
    }
}

fn records(rs: Vec<s3db_core::Record>) -> Value {
    Value::Array(rs.iter().map(s3db_core::Record::to_json).collect())
}

macro_rules! read {
    ($name:expr, |$r:ident| $body:expr) => {
        (
            $name,
            Arc::new(|$r: Resource| {
                Box::pin(async move { $body }) as Pin<Box<dyn Future<Output = Value> + Send>>
            })
                as Arc<
                    dyn Fn(Resource) -> Pin<Box<dyn Future<Output = Value> + Send>> + Send + Sync,
                >,
        )
    };
}

/// Every cached read of a resource without partitions.
pub fn plain_reads() -> Vec<Read> {
    vec![
        read!("get a", |r| answer(r.get("a").await, |x| x.to_json())),
        read!("get new (missing at first)", |r| answer(
            r.get("new").await,
            |x| x.to_json()
        )),
        read!("get_many", |r| {
            Value::Array(
                r.get_many(&["a", "b", "new"])
                    .await
                    .into_iter()
                    .map(|x| answer(x, |x| x.to_json()))
                    .collect(),
            )
        }),
        read!("exists new", |r| answer(r.exists("new").await, Value::Bool)),
        read!("list", |r| answer(r.list().await, records)),
        read!("list_ids", |r| answer(r.list_ids().await, |ids| json!(ids))),
        read!("count", |r| answer(r.count().await, |n| json!(n))),
        read!("page 1", |r| answer(r.page(Page::size(2)).await, |p| {
            json!({"items": records(p.items), "next": p.next_cursor})
        })),
        read!("page 2", |r| {
            let first = r.page(Page::size(2)).await;
            match first {
                Ok(p) => match p.next_cursor {
                    Some(c) => answer(
                        r.page(Page::size(2).after(c)).await,
                        |p| json!({"items": records(p.items), "next": p.next_cursor}),
                    ),
                    None => json!("no second page"),
                },
                Err(e) => json!({"error": e.to_string()}),
            }
        }),
    ]
}

/// Every cached read of users, partition reads and queries on the partition field included.
pub fn user_reads() -> Vec<Read> {
    let mut reads = plain_reads();
    reads.extend([
        read!("query region=eu", |r| answer(
            r.query(Filter::eq("region", "eu")).await,
            records
        )),
        read!("query age>10", |r| answer(
            r.query(Filter::gt("age", 10)).await,
            records
        )),
        read!("list_partition eu", |r| {
            answer(
                r.list_partition("byRegion", json!({"region": "eu"})).await,
                records,
            )
        }),
        read!("count_partition eu", |r| {
            answer(
                r.count_partition("byRegion", json!({"region": "eu"})).await,
                |n| json!(n),
            )
        }),
        read!("list_partition us", |r| {
            answer(
                r.list_partition("byRegion", json!({"region": "us"})).await,
                records,
            )
        }),
        read!("count_partition asia", |r| {
            answer(
                r.count_partition("byRegion", json!({"region": "asia"}))
                    .await,
                |n| json!(n),
            )
        }),
    ]);
    reads
}

/// Store requests made by `f`.
pub async fn requests_of<T>(db: &Database, f: impl Future<Output = T>) -> (T, u64) {
    let before = db.store().requests();
    let out = f.await;
    (out, db.store().requests().since(&before).total())
}
