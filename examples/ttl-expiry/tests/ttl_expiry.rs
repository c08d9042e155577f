//! The example plugin: conformance, hiding, sweeping, and one sweeper at a time across databases.

use std::sync::Arc;
use std::time::Duration;

use s3db_core::testing::TestStore;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_core::{Database, Error, Filter, ResourceConfig};
use s3db_ttl_expiry::{Sweep, TtlExpiry, TtlExpiryExt};
use serde_json::json;

type TestResult = Result<(), Error>;

fn sessions() -> ResourceConfig {
    ResourceConfig::new("sessions")
        .attribute("user", "string|required")
        .attribute("last_seen", "date|required")
}

fn plugin() -> TtlExpiry {
    TtlExpiry::new("sessions", Duration::from_secs(3600))
        .unwrap_or_else(|e| panic!("{e}"))
        .field("last_seen")
}

/// One session seen long ago, one seen now.
async fn seed(db: &Database) -> TestResult {
    let sessions = db
        .resource("sessions")
        .unwrap_or_else(|| panic!("sessions"));
    sessions
        .insert(json!({"id": "old", "user": "ann", "last_seen": "2020-01-01T00:00:00Z"}))
        .await?;
    sessions
        .insert(json!({"id": "new", "user": "bob", "last_seen": chrono::Utc::now().to_rfc3339()}))
        .await?;
    Ok(())
}

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(plugin),
        resource: sessions(),
        exercise: Arc::new(|db, _sessions| {
            Box::pin(async move {
                seed(&db).await?;
                let p = db
                    .plugin::<TtlExpiry>()
                    .unwrap_or_else(|| panic!("installed"));
                assert_eq!(p.sweep(&db).await?, Sweep::Deleted(1));
                assert_eq!(p.swept_total(&db).await?, 1);
                Ok(())
            })
        }),
    })
    .await
}

#[tokio::test]
async fn hides_expired_records_at_once_and_sweeps_them() -> TestResult {
    let t = TestStore::memory("ttl_hide");
    let db = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let p = db.use_plugin(plugin()).await?;
    db.create_resource(sessions()).await?;
    seed(&db).await?;
    let sessions = db
        .resource("sessions")
        .unwrap_or_else(|| panic!("sessions"));
    assert!(matches!(
        sessions.get("old").await,
        Err(Error::NotFound { .. })
    ));
    assert!(sessions.get("new").await.is_ok());
    let listed: Vec<String> = sessions
        .list()
        .await?
        .iter()
        .map(|r| r.id().to_owned())
        .collect();
    assert_eq!(listed, ["new"]);
    assert_eq!(sessions.query(Filter::eq("user", "ann")).await?.len(), 0);
    assert_eq!(sessions.count().await?, 2, "hidden, not yet deleted");
    // The capability on the resource itself, through the extension trait.
    let handle = sessions
        .ttl_expiry()
        .unwrap_or_else(|| panic!("installed on sessions"));
    assert_eq!(handle.sweep().await?, Sweep::Deleted(1));
    assert_eq!(sessions.count().await?, 1);
    assert_eq!(p.sweep(&db).await?, Sweep::Deleted(0));
    db.uninstall_plugin("ttl-expiry:sessions", false).await?;
    assert!(
        sessions.ttl_expiry().is_none(),
        "uninstall removes the capability"
    );
    Ok(())
}

#[tokio::test]
async fn the_background_task_sweeps_and_stops_with_the_plugin() -> TestResult {
    let t = TestStore::memory("ttl_background");
    let db = Database::builder()
        .connection(t.conn.clone())
        .plugin(plugin().interval(Duration::from_millis(30)))
        .connect()
        .await?;
    db.create_resource(sessions()).await?;
    seed(&db).await?;
    let sessions = db
        .resource("sessions")
        .unwrap_or_else(|| panic!("sessions"));
    let mut waited = Duration::ZERO;
    while sessions.count().await? > 1 && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert_eq!(
        sessions.count().await?,
        1,
        "the sweeper deleted the expired session"
    );
    let name = db.plugins().pop().unwrap_or_default();
    let cx = db
        .plugin_context(&name)
        .unwrap_or_else(|| panic!("context"));
    assert_eq!(cx.running_tasks(), 1);
    db.disconnect().await?;
    assert_eq!(cx.running_tasks(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_one_database_sweeps_at_a_time() -> TestResult {
    // Several databases on one folder (as separate processes would be) sweep at once: the lock
    // lets one of them in, and every expired record is counted exactly once.
    let t = TestStore::file("ttl_one_sweeper");
    let first = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    first.use_plugin(plugin()).await?;
    let sessions = first.create_resource(sessions()).await?;
    for i in 0..20 {
        sessions
            .insert(json!({"id": format!("s{i}"), "user": "u", "last_seen": "2021-06-01"}))
            .await?;
    }
    let mut handles = Vec::new();
    for _ in 0..4 {
        let conn = t.conn.clone();
        handles.push(tokio::spawn(async move {
            let db = Database::builder().connection(conn).connect().await?;
            let p = db.use_plugin(plugin()).await?;
            p.sweep(&db).await
        }));
    }
    let mut deleted = 0;
    for h in handles {
        match h.await.unwrap_or_else(|e| panic!("{e}"))? {
            Sweep::Deleted(n) => deleted += n,
            Sweep::Busy => {}
        }
    }
    assert_eq!(deleted, 20, "every record deleted once");
    let p = first
        .plugin::<TtlExpiry>()
        .unwrap_or_else(|| panic!("installed"));
    assert_eq!(p.swept_total(&first).await?, 20);
    assert_eq!(sessions.count().await?, 0);
    Ok(())
}

#[test]
fn bad_configuration_is_refused() {
    assert!(TtlExpiry::new("", Duration::from_secs(1)).is_err());
    assert!(TtlExpiry::new("x", Duration::ZERO).is_err());
}
