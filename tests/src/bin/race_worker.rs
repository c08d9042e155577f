//! A worker process for multi-process race tests.
//!
//! - `race_worker counter <connection string> <key> <rounds>`: increments the counter at `key`
//!   `rounds` times with read-increment-conditional-write.
//! - `race_worker update-field <connection string> <resource> <id> <field> <rounds>`: sets
//!   `field` of record `id` to 1, 2, … `rounds` with `Resource::update`.
//!
//! - `race_worker create-resource <connection string> <name>`: creates a resource.
//!
//! Exits 0, or 1 on error.

use s3db_core::testing::conformance::increment_counter;
use s3db_core::{Database, Key, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("race_worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, conn, key, rounds] if mode == "counter" => {
            let store = Store::open(conn.as_str())?;
            let key = Key::parse(key)?;
            let rounds: usize = rounds.parse()?;
            for _ in 0..rounds {
                increment_counter(&store, &key).await?;
            }
            Ok(())
        }
        [mode, conn, name] if mode == "create-resource" => {
            let db = Database::connect(conn).await?;
            db.create_resource(s3db_core::ResourceConfig::new(name.as_str()).attribute("v", "number"))
                .await?;
            Ok(())
        }
        [mode, conn, resource, id, field, rounds] if mode == "update-field" => {
            let db = Database::connect(conn).await?;
            let resource = db
                .resource(resource)
                .ok_or_else(|| format!("no resource {resource} in s3db.json"))?;
            let rounds: u64 = rounds.parse()?;
            for n in 1..=rounds {
                resource
                    .update(id, serde_json::json!({ field.as_str(): n }))
                    .await?;
            }
            Ok(())
        }
        _ => Err("usage: race_worker counter <conn> <key> <rounds> | update-field <conn> <resource> <id> <field> <rounds>".into()),
    }
}
