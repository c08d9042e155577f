//! Helpers shared by the eventual plugin's tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use s3db_core::testing::{FaultMode, FaultPlan, FaultSwitch, FaultyStore};
use s3db_core::{ConnectionString, Database, RequestKind, ResourceConfig, Result};
use s3db_eventual::{EventualConsistencyPlugin, EventualHandle, Mode, Transaction};

pub type TestResult = Result<()>;

pub fn wallets() -> ResourceConfig {
    ResourceConfig::new("wallets")
        .attribute("balance", "number")
        .attribute("owner", "string")
}

pub fn plugin(mode: Mode) -> EventualConsistencyPlugin {
    EventualConsistencyPlugin::builder()
        .field("wallets", "balance")
        .mode(mode)
        .consolidation_interval(Duration::from_secs(3600))
        .lock_ttl(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("plugin config: {e}"))
}

pub async fn connect(conn: &ConnectionString) -> Result<Database> {
    Database::builder().connection(conn.clone()).connect().await
}

/// A database with the plugin and the wallets resource.
pub async fn open(
    conn: &ConnectionString,
    p: EventualConsistencyPlugin,
) -> Result<(Database, EventualHandle)> {
    let db = connect(conn).await?;
    let p = db.use_plugin(p).await?;
    db.create_resource(wallets()).await?;
    Ok((db, p.field("wallets", "balance")))
}

/// Asserts every transaction of `id` is applied exactly once: all applied, each by one batch.
pub async fn assert_all_applied(h: &EventualHandle, id: &str) -> Result<Vec<Transaction>> {
    let txs = h.transactions(id).await?;
    for t in &txs {
        assert!(
            t.applied && t.batch.is_some(),
            "{id}: transaction {} not applied",
            t.id
        );
    }
    Ok(txs)
}

/// A crash of PUT requests whose key contains one of `needles`, after letting `skip` of them
/// through: arm it with [`FaultSwitch::arm`].
pub fn puts(needles: &[&str], skip: u64, mode: FaultMode) -> FaultPlan {
    crash(RequestKind::Put, needles, skip, mode)
}

/// The same for DELETE requests (PUTs go through).
pub fn deletes(needles: &[&str], skip: u64, mode: FaultMode) -> FaultPlan {
    crash(RequestKind::Delete, needles, skip, mode)
}

fn crash(kind: RequestKind, needles: &[&str], skip: u64, mode: FaultMode) -> FaultPlan {
    FaultPlan::new()
        .only_kinds([kind])
        .keys_containing(needles.iter().copied())
        .skip(skip)
        .fail_all()
        .mode(mode)
}

/// A database whose store goes through core's fault injector, disarmed until a test arms it.
pub async fn crashable(conn: &ConnectionString) -> Result<(Database, FaultSwitch)> {
    let switch = FaultSwitch::new();
    let s = switch.clone();
    let db = Database::builder()
        .connection(conn.clone())
        .store_layer(move |inner| Arc::new(FaultyStore::switched(inner, &s)))
        .connect()
        .await?;
    Ok((db, switch))
}
