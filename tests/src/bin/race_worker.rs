//! A worker process for multi-process race tests.
//!
//! - `race_worker counter <connection string> <key> <rounds>`: increments the counter at `key`
//!   `rounds` times with read-increment-conditional-write.
//! - `race_worker update-field <connection string> <resource> <id> <field> <rounds>`: sets
//!   `field` of record `id` to 1, 2, … `rounds` with `Resource::update`.
//!
//! - `race_worker create-resource <connection string> <name>`: creates a resource.
//!
//! - `race_worker plugin-counter <connection string> <slug> <path> <rounds> <tasks>`: `tasks`
//!   concurrent tasks each increment the `PluginStorage` counter at `plugin=<slug>/<path>` (`path`
//!   is `/`-separated) `rounds` times.
//! - `race_worker plugin-lock <connection string> <slug> <lock> <rounds> <log file> <worker>`:
//!   `rounds` times, acquires the `PluginStorage` lock `<lock>` (waiting up to 5 minutes), appends
//!   `start <worker> <n>` to the log, sleeps 1 ms, appends `end <worker> <n>`, releases.
//!
//! Exits 0, or 1 on error.

use s3db_core::testing::conformance::increment_counter;
use std::time::Duration;

use s3db_core::plugin::{LockOptions, PluginStorage};
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
        [mode, conn, slug, path, rounds, tasks] if mode == "plugin-counter" => {
            let storage = PluginStorage::new(Store::open(conn.as_str())?, slug)?;
            let parts: Vec<&str> = path.split('/').collect();
            let key = storage.key(None, &parts)?;
            let rounds: usize = rounds.parse()?;
            let tasks: usize = tasks.parse()?;
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let storage = storage.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        for _ in 0..rounds {
                            storage.increment(&key, 1).await?;
                        }
                        Ok::<_, s3db_core::Error>(())
                    })
                })
                .collect();
            for handle in handles {
                handle.await??;
            }
            Ok(())
        }
        [mode, conn, slug, lock, rounds, log, worker] if mode == "plugin-lock" => {
            let storage = PluginStorage::new(Store::open(conn.as_str())?, slug)?;
            let rounds: usize = rounds.parse()?;
            let log = std::path::Path::new(log);
            for n in 0..rounds {
                let opts = LockOptions::new()
                    .ttl(Duration::from_secs(60))
                    .timeout(Duration::from_secs(300))
                    .owner(worker.as_str());
                let guard = storage
                    .acquire_lock(lock, opts)
                    .await?
                    .ok_or_else(|| format!("{worker}: lock {lock} not acquired in 5 minutes"))?;
                s3db_tests::append_line(log, &format!("start {worker} {n}"))?;
                tokio::time::sleep(Duration::from_millis(1)).await;
                s3db_tests::append_line(log, &format!("end {worker} {n}"))?;
                guard.release().await?;
            }
            Ok(())
        }
        _ => Err("usage: race_worker counter <conn> <key> <rounds> | update-field <conn> <resource> <id> <field> <rounds> \
                  | create-resource <conn> <name> | plugin-counter <conn> <slug> <path> <rounds> \
                  | plugin-lock <conn> <slug> <lock> <rounds> <log> <worker>"
            .into()),
    }
}
