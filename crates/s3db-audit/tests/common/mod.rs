//! Helpers shared by the audit tests.
#![allow(dead_code)]

use s3db_core::plugin::CustomEvent;
use std::sync::Arc;

use s3db_audit::{AuditEvent, AuditPlugin};
use s3db_core::plugin::Event;
use s3db_core::{ConnectionString, Database, Resource, ResourceConfig, Result};

pub type TestResult = Result<()>;

/// Users with a partition on `region` and a secret.
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
    ResourceConfig::new("notes")
        .attribute("text", "string|required")
        .paranoid(false)
}

pub async fn connect(conn: &ConnectionString) -> Result<Database> {
    Database::builder().connection(conn.clone()).connect().await
}

pub fn audit_of(db: &Database) -> Arc<AuditPlugin> {
    db.plugin::<AuditPlugin>()
        .unwrap_or_else(|| panic!("the audit plugin is installed"))
}

pub fn resource(db: &Database, name: &str) -> Resource {
    db.resource(name)
        .unwrap_or_else(|| panic!("resource {name}"))
}

/// The audit events received so far.
pub fn audit_events(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Some(e) = AuditEvent::from_event(&event) {
            out.push(e);
        }
    }
    out
}
