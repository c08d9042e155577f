//! The cache, costs and metrics plugins together on one database, and uninstalled one at a time:
//! the others keep working.

use s3db_cache::CachePlugin;
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, RequestKind, Resource, ResourceConfig};
use s3db_costs::CostsPlugin;
use s3db_metrics::MetricsPlugin;
use serde_json::json;

type TestResult = Result<(), Error>;

async fn setup(t: &TestStore) -> Result<(Database, Resource), Error> {
    let db = Database::builder()
        .connection(t.conn.clone())
        .plugin(MetricsPlugin::new())
        .plugin(CachePlugin::memory().max_entries(1000).build()?)
        .plugin(CostsPlugin::default())
        .connect()
        .await?;
    let users = db
        .create_resource(
            ResourceConfig::new("users")
                .attribute("name", "string|required")
                .attribute("region", "string")
                .partition("byRegion", ["region"]),
        )
        .await?;
    Ok((db, users))
}

/// Costs counted exactly what the store did since its window started.
fn costs_match(db: &Database, before: &s3db_core::RequestStats) {
    let costs = db
        .plugin::<CostsPlugin>()
        .unwrap_or_else(|| panic!("costs installed"));
    let counted = db.store().requests().since(before);
    let snapshot = costs.snapshot();
    for kind in RequestKind::ALL {
        assert_eq!(snapshot.usage.count(kind), counted.count(kind), "{kind}");
    }
}

fn metric_count(db: &Database, operation: &str) -> u64 {
    db.plugin::<MetricsPlugin>()
        .and_then(|m| m.snapshot().operations.get(operation).map(|o| o.count))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_three_together_then_uninstalled_one_by_one() -> TestResult {
    let t = TestStore::memory("combination");
    let (db, users) = setup(&t).await?;
    let costs = db
        .plugin::<CostsPlugin>()
        .unwrap_or_else(|| panic!("costs"));
    costs.reset();
    let window = db.store().requests();

    users
        .insert(json!({"id": "a", "name": "Ann", "region": "eu"}))
        .await?;
    users.get("a").await?;
    let before = db.store().requests();
    users.get("a").await?;
    assert_eq!(db.store().requests().since(&before).total(), 0, "cache hit");
    assert_eq!(
        metric_count(&db, "get"),
        2,
        "metrics times cached reads too"
    );
    costs_match(&db, &window);

    // Without the cache: reads reach the store, the others still count and time them.
    db.uninstall_plugin(s3db_cache::DEFAULT_NAME, true).await?;
    let before = db.store().requests();
    users.get("a").await?;
    assert_eq!(
        db.store().requests().since(&before).count(RequestKind::Get),
        1
    );
    assert_eq!(metric_count(&db, "get"), 3);
    costs_match(&db, &window);

    // Without costs: metrics keeps working, writes are fine.
    db.uninstall_plugin("costs", false).await?;
    users.update("a", json!({"region": "us"})).await?;
    assert_eq!(metric_count(&db, "update"), 1);
    assert_eq!(
        users
            .query(s3db_core::Filter::eq("region", "us"))
            .await?
            .len(),
        1
    );

    // Without metrics: nothing is left intercepting the resource.
    db.uninstall_plugin("metrics", true).await?;
    assert_eq!(users.interceptor_count(), (0, 0));
    assert!(db.plugins().is_empty());
    assert_eq!(users.get("a").await?.get("region"), Some(&json!("us")));
    Ok(())
}

/// Registers, on every resource it sees, a middleware that holds the plugin's context and a
/// tracker: while the middleware lives, the tracker has more than one owner.
struct Tracker {
    alive: std::sync::Arc<()>,
}

struct HoldsContext {
    _cx: s3db_core::plugin::PluginContext,
    _alive: std::sync::Arc<()>,
}

#[s3db_core::plugin::async_trait]
impl s3db_core::resource::hooks::Middleware for HoldsContext {
    async fn handle(
        &self,
        _resource: &Resource,
        op: s3db_core::resource::hooks::Operation,
        next: s3db_core::resource::hooks::Next<'_>,
    ) -> s3db_core::Result<s3db_core::resource::hooks::Outcome> {
        next.run(op).await
    }
}

#[s3db_core::plugin::async_trait]
impl s3db_core::plugin::Plugin for Tracker {
    fn name(&self) -> &str {
        "tracker"
    }

    async fn install(&self, cx: &s3db_core::plugin::PluginContext) -> s3db_core::Result<()> {
        let alive = std::sync::Arc::clone(&self.alive);
        let setup_cx = cx.clone();
        cx.when_resource("users", move |resource| {
            let cx = setup_cx.clone();
            let alive = std::sync::Arc::clone(&alive);
            async move {
                cx.add_middleware(
                    &resource,
                    HoldsContext {
                        _cx: cx.clone(),
                        _alive: alive,
                    },
                );
                Ok(())
            }
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_database_is_freed_with_its_plugins() -> TestResult {
    // Plugins register on resources things that hold their context; the context must not hold
    // the resources back, or a database dropped without disconnect would never be freed. With
    // the cache, costs and metrics installed too, any of them keeping the database alive would
    // keep `users` (and the tracker's middleware) alive.
    let alive = std::sync::Arc::new(());
    {
        let t = TestStore::memory("combination_drop");
        let (db, users) = setup(&t).await?;
        db.use_plugin(Tracker {
            alive: std::sync::Arc::clone(&alive),
        })
        .await?;
        users.insert(json!({"id": "a", "name": "Ada"})).await?;
        users.get("a").await?;
        users.count().await?;
        assert!(std::sync::Arc::strong_count(&alive) > 1, "registered");
        drop((users, db));
    }
    // Plugin tasks are aborted on drop; give them a moment to go away.
    for _ in 0..100 {
        if std::sync::Arc::strong_count(&alive) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(std::sync::Arc::strong_count(&alive), 1, "database freed");
    Ok(())
}
