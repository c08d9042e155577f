//! The core plugin conformance suite; configuration errors; uninstall stops replication and
//! leaves nothing running; deferred setup for resources created after install.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use s3db_core::Database;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_replicator::{
    Action, ConfigError, LOGS_RESOURCE, Replicator, ReplicatorPlugin, ResourceRule, S3dbTarget,
    WebhookTarget,
};
use serde_json::json;

fn switch_plugin(target: SwitchTarget) -> ReplicatorPlugin {
    ReplicatorPlugin::builder()
        .replicator(
            Replicator::new("switch", target)
                .resource("users")
                .max_retries(0),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn passes_the_plugin_conformance_suite() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(|| switch_plugin(SwitchTarget::default())),
        resource: users(),
        exercise: Arc::new(|db, users| {
            Box::pin(async move {
                users.insert(json!({"id": "c1", "name": "C"})).await?;
                users.update("c1", json!({"age": 2})).await?;
                users.delete("c1").await?;
                let plugin = replicator_of(&db);
                assert_eq!(plugin.stats()["switch"].replicated, 3);
                // Every change was delivered: nothing in the failure log.
                let logs = db.resource(LOGS_RESOURCE).unwrap_or_else(|| panic!("log"));
                assert_eq!(logs.count().await?, 0);
                Ok(())
            })
        }),
    })
    .await
}

#[tokio::test]
async fn purge_removes_the_log_and_uninstall_stops_replication() -> TestResult {
    let target = SwitchTarget::default();
    let db = Database::connect("memory://repl-lifecycle/purge").await?;
    let users = db.create_resource(users()).await?;
    db.use_plugin(switch_plugin(target.clone())).await?;
    target.set_down(true);
    users.insert(json!({"id": "a", "name": "A"})).await?;
    let logs = db.resource(LOGS_RESOURCE).unwrap_or_else(|| panic!("log"));
    assert_eq!(logs.count().await?, 1);
    target.set_down(false);
    users.insert(json!({"id": "b", "name": "B"})).await?;
    assert_eq!(target.sent().len(), 1);
    let cx = db
        .plugin_context("replicator")
        .unwrap_or_else(|| panic!("cx"));
    db.uninstall_plugin("replicator", true).await?;
    assert_eq!(cx.running_tasks(), 0);
    assert_eq!(
        users.interceptor_count(),
        (0, 0),
        "no hook or middleware left"
    );
    users.insert(json!({"id": "c", "name": "C"})).await?;
    users.delete("a").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(target.sent().len(), 1, "nothing replicated after uninstall");
    assert_eq!(
        db.store()
            .list_keys(Some(&s3db_core::Key::parse(&format!(
                "resource={LOGS_RESOURCE}"
            ))?))
            .await?
            .len(),
        0,
        "the log is purged"
    );
    Ok(())
}

#[tokio::test]
async fn follows_resources_created_after_install_and_by_other_processes() -> TestResult {
    let target = SwitchTarget::default();
    let db = Database::builder()
        .connection(s3db_core::ConnectionString::parse(
            "memory://repl-lifecycle/deferred",
        )?)
        .plugin(switch_plugin(target.clone()))
        .connect()
        .await?;
    let other = Database::connect("memory://repl-lifecycle/deferred").await?;
    other.create_resource(users()).await?;
    db.reload().await?;
    let users = db.resource("users").unwrap_or_else(|| panic!("users"));
    users.insert(json!({"id": "x", "name": "X"})).await?;
    assert_eq!(
        target.sent().iter().map(|c| c.action).collect::<Vec<_>>(),
        [Action::Insert]
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn deletes_read_the_record_only_when_followed() -> TestResult {
    let target = SwitchTarget::default();
    let db = Database::connect("memory://repl-lifecycle/delete-reads").await?;
    db.use_plugin(
        ReplicatorPlugin::builder()
            .replicator(
                Replicator::new("switch", target.clone())
                    .resource("users")
                    .resource(
                        ResourceRule::new("orders").actions([Action::Insert, Action::Update]),
                    ),
            )
            .build()?,
    )
    .await?;
    let users = db.create_resource(users()).await?;
    let orders = db
        .create_resource(
            s3db_core::ResourceConfig::new("orders")
                .attribute("name", "string|required")
                .paranoid(false),
        )
        .await?;
    // Hooks only: the core reads deleted records for them, no middleware does.
    assert_eq!(users.interceptor_count(), (1, 0));
    assert_eq!(orders.interceptor_count(), (1, 0));
    users.insert(json!({"id": "u", "name": "U"})).await?;
    orders.insert(json!({"id": "o", "name": "O"})).await?;
    let gets = |before: &s3db_core::RequestStats| {
        db.store()
            .requests()
            .since(before)
            .count(s3db_core::RequestKind::Get)
    };

    // Followed deletes read the record once and carry it as `before`.
    let before = db.store().requests();
    users.delete("u").await?;
    assert_eq!(gets(&before), 1);
    let sent = target.sent();
    let delete = sent.last().unwrap_or_else(|| panic!("a change"));
    assert_eq!(delete.action, Action::Delete);
    assert_eq!(
        delete.before.clone().map(serde_json::Value::Object),
        Some(json!({"name": "U"}))
    );
    // Deleting what is not there changes nothing and is not replicated.
    users.delete("u").await?;
    users.delete("never").await?;
    assert_eq!(target.sent().len(), sent.len());

    // Deletes no replicator follows read nothing.
    let before = db.store().requests();
    orders.delete("o").await?;
    assert_eq!(gets(&before), 0);
    assert_eq!(target.sent().len(), sent.len());
    Ok(())
}

#[test]
fn bad_configurations_are_refused_with_what_to_fix() {
    let hook = || WebhookTarget::new("http://127.0.0.1:1/x");
    let err = |b: s3db_replicator::ReplicatorBuilder| b.build().err();
    assert_eq!(
        err(ReplicatorPlugin::builder()),
        Some(ConfigError::NoReplicators)
    );
    assert!(matches!(
        err(ReplicatorPlugin::builder().replicator(Replicator::new("a b", hook()).resource("u"))),
        Some(ConfigError::BadReplicatorName { .. })
    ));
    assert!(matches!(
        err(ReplicatorPlugin::builder()
            .replicator(Replicator::new("a", hook()).resource("u"))
            .replicator(Replicator::new("a", hook()).resource("u"))),
        Some(ConfigError::DuplicateReplicator { .. })
    ));
    assert!(matches!(
        err(ReplicatorPlugin::builder().replicator(Replicator::new("a", hook()))),
        Some(ConfigError::NoResources { .. })
    ));
    assert!(matches!(
        err(ReplicatorPlugin::builder().replicator(Replicator::new("a", hook()).resource("plg_x"))),
        Some(ConfigError::BadResource { .. })
    ));
    assert!(matches!(
        err(ReplicatorPlugin::builder().replicator(
            Replicator::new("a", hook())
                .resource("u")
                .resource(ResourceRule::new("u").rename("v"))
        )),
        Some(ConfigError::BadResource { .. })
    ));
    assert!(matches!(
        err(ReplicatorPlugin::builder()
            .replicator(Replicator::new("a", hook()).resource(ResourceRule::new("u").actions([])))),
        Some(ConfigError::NoActions { .. })
    ));
    assert!(matches!(
        err(ReplicatorPlugin::builder().replicator(
            Replicator::new("a", hook())
                .resource("u")
                .timeout(Duration::ZERO)
        )),
        Some(ConfigError::Zero {
            setting: "timeout",
            ..
        })
    ));
    assert!(matches!(
        err(ReplicatorPlugin::builder()
            .replicator(Replicator::new("a", hook()).resource("u").concurrency(0))),
        Some(ConfigError::Zero {
            setting: "concurrency",
            ..
        })
    ));
    let bad_url = err(ReplicatorPlugin::builder()
        .replicator(Replicator::new("a", WebhookTarget::new("ftp://x/y")).resource("u")));
    assert!(
        matches!(&bad_url, Some(ConfigError::BadTarget { kind: "webhook", reason, .. }) if reason.contains("ftp")),
        "{bad_url:?}"
    );
    let bad_conn = err(ReplicatorPlugin::builder()
        .replicator(Replicator::new("a", S3dbTarget::new("nope://x")).resource("u")));
    assert!(
        matches!(bad_conn, Some(ConfigError::BadTarget { kind: "s3db", .. })),
        "{bad_conn:?}"
    );
    // Credentials never show.
    let target =
        S3dbTarget::new("http://KEY:SUPERSECRET@127.0.0.1:9/bucket").passphrase("pass-phrase-x");
    let shown = format!("{target:?}");
    assert!(
        !shown.contains("SUPERSECRET") && !shown.contains("pass-phrase-x"),
        "{shown}"
    );
}

#[tokio::test]
async fn without_the_log_failures_are_only_counted() -> TestResult {
    let target = SwitchTarget::default();
    let db = Database::connect("memory://repl-lifecycle/nolog").await?;
    let plugin = db
        .use_plugin(
            ReplicatorPlugin::builder()
                .log_failures(false)
                .replicator(
                    Replicator::new("s", target.clone())
                        .resource("users")
                        .max_retries(0),
                )
                .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    target.set_down(true);
    users.insert(json!({"id": "a", "name": "A"})).await?;
    assert_eq!(
        (plugin.stats()["s"].failed, plugin.stats()["s"].logged),
        (1, 0)
    );
    assert!(db.resource(LOGS_RESOURCE).is_none());
    assert!(matches!(
        plugin.retry_failed().await,
        Err(s3db_core::Error::Refused { .. })
    ));
    Ok(())
}
