//! Helpers shared by the backup plugin's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use s3db_backup::{BackupEvent, BackupPlugin};
use s3db_core::plugin::{CustomEvent, Event};
use s3db_core::{ConnectionString, Database, Resource, ResourceConfig, Result};
use serde_json::{Value, json};

pub type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

pub fn users() -> ResourceConfig {
    ResourceConfig::new("users")
        .attribute("name", "string|required")
        .attribute("age", "number")
        .timestamps(true)
}

pub fn notes() -> ResourceConfig {
    ResourceConfig::new("notes").attribute("text", "string")
}

pub async fn connect(conn: &ConnectionString) -> Result<Database> {
    Database::builder().connection(conn.clone()).connect().await
}

/// A database with the plugin and the users resource.
pub async fn open(
    conn: &ConnectionString,
    plugin: BackupPlugin,
) -> Result<(Database, Arc<BackupPlugin>, Resource)> {
    let db = connect(conn).await?;
    let p = db.use_plugin(plugin).await?;
    let users = db.create_resource(users()).await?;
    Ok((db, p, users))
}

pub fn folder_plugin(dir: &Path) -> BackupPlugin {
    BackupPlugin::builder()
        .filesystem(format!("{}/{{date}}", dir.display()))
        .temp_dir(dir.join("tmp"))
        .build()
        .unwrap_or_else(|e| panic!("config: {e}"))
}

pub async fn seed(users: &Resource, n: usize) -> Result<()> {
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("u{i:03}"), "name": format!("user {i}"), "age": i}))
        .collect();
    for r in users.insert_many(docs).await {
        r?;
    }
    Ok(())
}

/// Every record of a resource as id → user fields (timestamps dropped).
pub async fn snapshot(r: &Resource) -> Result<BTreeMap<String, Value>> {
    Ok(r.list()
        .await?
        .into_iter()
        .map(|rec| {
            let mut data = rec.data().clone();
            data.remove("created_at");
            data.remove("updated_at");
            (rec.id().to_owned(), Value::Object(data))
        })
        .collect())
}

/// The entries of a tar.gz archive: name → content.
pub fn read_archive(path: &Path) -> BTreeMap<String, String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in tar.entries().unwrap_or_else(|e| panic!("{e}")) {
        let mut entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let name = entry
            .path()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string_lossy()
            .into_owned();
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{e}"));
        out.insert(name, text);
    }
    out
}

/// The ids (or the `id` fields of JSON lines) in the archive entries under `prefix`.
pub fn ids_under(archive: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    archive
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .flat_map(|(_, v)| v.lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|line| match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(o)) => o
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => line,
        })
        .collect()
}

pub fn backup_events(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<BackupEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Some(b) = BackupEvent::from_event(&e) {
            out.push(b);
        }
    }
    out
}
