//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use s3db_core::{ConnectionString, Database, Resource, ResourceConfig};
use s3db_statemachine::{Machine, MachineBuilder, MachineHandle, State, StateMachinePlugin};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// pending --PAY--> paid --SHIP--> shipped; pending --CANCEL--> cancelled.
pub fn order_machine() -> MachineBuilder {
    Machine::builder("order", "orders")
        .initial("pending")
        .state(
            State::new("pending")
                .on("PAY", "paid")
                .on("CANCEL", "cancelled"),
        )
        .state(State::new("paid").on("SHIP", "shipped"))
        .state(State::final_state("shipped"))
        .state(State::final_state("cancelled"))
}

pub fn orders() -> ResourceConfig {
    ResourceConfig::new("orders")
        .attribute("status", "string")
        .attribute("deadline", "string")
        .attribute("packed", "boolean")
}

pub fn plugin_with(machine: MachineBuilder) -> StateMachinePlugin {
    StateMachinePlugin::builder()
        .machine(machine)
        .lock_ttl(Duration::from_secs(5))
        .lock_timeout(Duration::from_secs(60))
        .trigger_check_interval(Duration::from_millis(50))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Connects to `conn` with `plugin`, creates `orders`, and returns the machine `order`.
pub async fn open(
    conn: &ConnectionString,
    plugin: StateMachinePlugin,
) -> Result<
    (Database, Arc<StateMachinePlugin>, Resource, MachineHandle),
    Box<dyn std::error::Error + Send + Sync>,
> {
    let db = Database::builder()
        .connection(conn.clone())
        .connect()
        .await?;
    let plugin = db.use_plugin(plugin).await?;
    let orders = db.create_resource(orders()).await?;
    let machine = plugin.machine("order")?;
    Ok((db, plugin, orders, machine))
}

/// Polls `check` every 10 ms for up to `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
