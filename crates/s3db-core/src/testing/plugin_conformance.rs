//! The plugin conformance suite: what every plugin crate must satisfy, whoever wrote it.
//!
//! [`check_plugin`] installs the plugin on fresh in-memory databases and checks:
//! 1. **lifecycle order**: `BeforeInstall`, `Installed`, `BeforeStart`, `Started` on install;
//!    `BeforeStop`, `Stopped`, `BeforeUninstall`, (`DataPurged`), `Uninstalled` on uninstall;
//! 2. **deferred setup**: installed before its resource exists or after, the plugin registers the
//!    same hooks and middleware on it, and the exercise works in both orders;
//! 3. **clean uninstall**: no hook, middleware, resource extension, database hook or task of the
//!    plugin remains;
//! 4. **purge**: with `purge_data`, nothing is left under its storage prefixes or its `plg_*`
//!    resources, and the user's records are untouched; without it, its data stays.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::plugin::{Event, Plugin, PluginEvent};
use crate::{ConnectionString, Database, Key, Resource, ResourceConfig, Result};

/// How to test one plugin.
pub struct PluginCase<P> {
    /// Makes a fresh plugin.
    pub make: Box<dyn Fn() -> P + Send + Sync>,
    /// The user resource the plugin works on.
    pub resource: ResourceConfig,
    /// Makes the plugin do its work (and store data), given the database and the resource.
    pub exercise: Arc<dyn Fn(Database, Resource) -> BoxFuture<'static, Result<()>> + Send + Sync>,
}

async fn fresh_db(test: &str) -> Result<Database> {
    let conn = ConnectionString::memory("plugin-conformance", &super::unique_prefix(test))?;
    Database::builder().connection(conn).connect().await
}

fn plugin_events(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    name: &str,
) -> Vec<PluginEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Plugin { plugin, event } = event
            && plugin == name
            && !matches!(event, PluginEvent::Custom { .. })
        {
            out.push(event);
        }
    }
    out
}

/// All keys below the database prefix.
async fn all_keys(db: &Database) -> Result<BTreeSet<String>> {
    Ok(db
        .store()
        .list_keys(None)
        .await?
        .into_iter()
        .map(|k| k.to_string())
        .collect())
}

/// Runs every check; panics with a message naming the broken rule.
///
/// # Errors
/// A storage error, or the plugin's or exercise's own error.
///
/// # Panics
/// When the plugin breaks a rule.
pub async fn check_plugin<P: Plugin>(case: &PluginCase<P>) -> Result<()> {
    let name = (case.make)().name().to_owned();
    let slug = (case.make)().slug();

    // 1 + 3 + 4: install after the resource exists, exercise, uninstall with purge.
    let db = fresh_db("conformance-a").await?;
    let resource = db.create_resource(case.resource.clone()).await?;
    let baseline = (
        resource.interceptor_count(),
        resource.extension_count(),
        db.hook_count(),
        db.store().accounting().observer_count(),
    );
    let mut events = db.subscribe();
    db.use_plugin((case.make)()).await?;
    assert_eq!(
        plugin_events(&mut events, &name),
        [
            PluginEvent::BeforeInstall,
            PluginEvent::Installed,
            PluginEvent::BeforeStart,
            PluginEvent::Started
        ],
        "{name}: install lifecycle order"
    );
    let installed_after = (resource.interceptor_count(), resource.extension_count());
    (case.exercise)(db.clone(), resource.clone()).await?;
    let cx = db
        .plugin_context(&name)
        .unwrap_or_else(|| panic!("{name}: installed plugin has no context"));
    let data_key = Key::parse(&format!("resource={}/data", resource.name()))?;
    let user_data_before = db.store().list_keys(Some(&data_key)).await?;
    db.uninstall_plugin(&name, true).await?;
    let events_seen = plugin_events(&mut events, &name);
    let purged = events_seen
        .iter()
        .any(|e| matches!(e, PluginEvent::DataPurged { .. }));
    let order: Vec<_> = events_seen
        .into_iter()
        .filter(|e| !matches!(e, PluginEvent::DataPurged { .. }))
        .collect();
    assert_eq!(
        order,
        [
            PluginEvent::BeforeStop,
            PluginEvent::Stopped,
            PluginEvent::BeforeUninstall,
            PluginEvent::Uninstalled
        ],
        "{name}: uninstall lifecycle order"
    );
    assert!(purged, "{name}: purge emits DataPurged");
    assert_eq!(
        (
            resource.interceptor_count(),
            resource.extension_count(),
            db.hook_count(),
            db.store().accounting().observer_count(),
        ),
        baseline,
        "{name}: uninstall leaves no hooks, middleware, extensions, database hooks or request observers behind"
    );
    assert_eq!(cx.running_tasks(), 0, "{name}: uninstall stops every task");
    assert!(
        db.plugins().is_empty(),
        "{name}: uninstalled plugin still listed"
    );
    let left: Vec<String> = all_keys(&db)
        .await?
        .into_iter()
        .filter(|k| {
            k.starts_with(&format!("plugin={slug}/"))
                || k.contains(&format!("/plugin={slug}/"))
                || cx
                    .internal_resources()
                    .iter()
                    .any(|r| k.starts_with(&format!("resource={r}/")))
        })
        .collect();
    assert!(left.is_empty(), "{name}: purge left {left:?}");
    assert_eq!(
        db.store().list_keys(Some(&data_key)).await?,
        user_data_before,
        "{name}: purge must not touch user records"
    );

    // 2: deferred setup — install before the resource exists.
    let db = fresh_db("conformance-b").await?;
    db.use_plugin((case.make)()).await?;
    let resource = db.create_resource(case.resource.clone()).await?;
    assert_eq!(
        (resource.interceptor_count(), resource.extension_count()),
        installed_after,
        "{name}: deferred setup registers the same hooks, middleware and extensions as immediate setup"
    );
    (case.exercise)(db.clone(), resource.clone()).await?;

    // 4: without purge, the plugin's data stays.
    let before = all_keys(&db).await?;
    db.uninstall_plugin(&name, false).await?;
    let after = all_keys(&db).await?;
    assert_eq!(
        before, after,
        "{name}: uninstall without purge keeps every object"
    );

    // Duplicate names are refused.
    let db = fresh_db("conformance-c").await?;
    db.use_plugin((case.make)()).await?;
    assert!(
        db.use_plugin((case.make)()).await.is_err(),
        "{name}: a second plugin with the same name must be refused"
    );
    db.disconnect().await?;
    Ok(())
}
