//! Counts, errors, percentiles and the slow-operation log for a scripted workload, on memory and
//! file stores; which resources are measured; the resource extension; reset; the facade.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{EXPECTED, connect, users, workload};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use s3db_core::RequestKind;
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, ResourceConfig};
use s3db_metrics::{MetricsExt, MetricsPlugin, MetricsSnapshot, StoreOwner};
use serde_json::json;

type TestResult = Result<(), Error>;

fn plugin(threshold: Duration) -> MetricsPlugin {
    MetricsPlugin::builder()
        .slow_threshold(threshold)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn check_counts(snapshot: &MetricsSnapshot) {
    let users = snapshot
        .resource("users")
        .unwrap_or_else(|| panic!("users measured: {snapshot:?}"));
    for (op, count, errors) in EXPECTED {
        let m = users
            .operation(op)
            .unwrap_or_else(|| panic!("{op} measured"));
        assert_eq!((m.count, m.errors), (count, errors), "{op}");
        let l = &m.latency;
        assert!(
            l.min <= l.p50 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max,
            "{op}: ordered {l:?}"
        );
        assert!(l.min > Duration::ZERO, "{op}: an operation takes some time");
        assert!(l.max < Duration::from_secs(30), "{op}: plausible {l:?}");
        assert!(l.mean >= l.min && l.mean <= l.max, "{op}: mean {l:?}");
        assert!(l.total >= l.max, "{op}: total {l:?}");
    }
    let get = users.operation("get").unwrap_or_else(|| panic!("get"));
    assert_eq!(get.errors_by_kind.get("not_found"), Some(&2));
    let insert = users
        .operation("insert")
        .unwrap_or_else(|| panic!("insert"));
    assert_eq!(insert.errors_by_kind.get("validation"), Some(&1));
    assert_eq!(insert.errors_by_kind.get("already_exists"), Some(&1));
    let update = users
        .operation("update")
        .unwrap_or_else(|| panic!("update"));
    assert_eq!(update.errors_by_kind.get("not_found"), Some(&1));
    assert_eq!(users.operations.len(), EXPECTED.len(), "nothing else ran");
    let total: u64 = EXPECTED.iter().map(|(_, c, _)| c).sum();
    let errors: u64 = EXPECTED.iter().map(|(_, _, e)| e).sum();
    assert_eq!((users.count, users.errors), (total, errors));
    assert_eq!((snapshot.count, snapshot.errors), (total, errors));
    assert!(snapshot.since <= snapshot.taken_at);
    // Per operation over every resource (only users here): the same numbers.
    for (op, count, errors) in EXPECTED {
        let all = snapshot
            .operations
            .get(op)
            .unwrap_or_else(|| panic!("{op} over every resource"));
        assert_eq!(
            (all.resource.as_str(), all.count, all.errors),
            ("*", count, errors)
        );
        assert_eq!(Some(&all.latency), users.operation(op).map(|m| &m.latency));
    }
    assert_eq!(snapshot.latency, users.latency);
}

async fn scripted_workload_on(store: &TestStore) -> TestResult {
    let db = connect(store.conn.clone()).await?;
    let metrics = db.use_plugin(plugin(Duration::from_secs(3600))).await?;
    let users = db.create_resource(common::users()).await?;
    workload(&users).await?;
    let snapshot = metrics.snapshot();
    check_counts(&snapshot);
    assert_eq!(snapshot.slow, 0);
    assert!(
        metrics.slow_operations().is_empty(),
        "a huge threshold logs nothing"
    );
    // The same through the resource, and through typed access.
    assert_eq!(users.metrics().as_ref(), snapshot.resource("users"));
    let found = db
        .plugin::<MetricsPlugin>()
        .unwrap_or_else(|| panic!("installed"));
    assert_eq!(found.resource("users").as_ref(), snapshot.resource("users"));
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn counts_errors_and_latency_on_memory() -> TestResult {
    scripted_workload_on(&TestStore::memory("metrics_workload_memory")).await
}

#[tokio::test]
async fn counts_errors_and_latency_on_file() -> TestResult {
    scripted_workload_on(&TestStore::file("metrics_workload_file")).await
}

#[tokio::test]
async fn a_tiny_threshold_logs_every_operation_most_recent_first_kept() -> TestResult {
    let t = TestStore::memory("metrics_slow_tiny");
    let db = connect(t.conn.clone()).await?;
    let metrics = db
        .use_plugin(
            MetricsPlugin::builder()
                .slow_threshold(Duration::from_nanos(1))
                .slow_log_capacity(5)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await?;
    let users = db.create_resource(users()).await?;
    workload(&users).await?;
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.slow, snapshot.count, "every operation is slow");
    let slow = metrics.slow_operations();
    assert_eq!(slow.len(), 5, "bounded to the capacity");
    // The most recent five: ... query, count, delete, in order.
    let ops: Vec<&str> = slow.iter().map(|s| s.operation.as_str()).collect();
    assert_eq!(ops, ["update", "list", "query", "count", "delete"]);
    let delete = &slow[4];
    assert_eq!(delete.resource, "users");
    assert_eq!(delete.id.as_deref(), Some("u4"));
    assert!(delete.error.is_none() && delete.duration > Duration::ZERO);
    assert!(slow.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    let failed = &slow[0];
    assert_eq!(failed.id.as_deref(), Some("missing-3"));
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not found"))
    );
    let handle = users.metrics_handle().unwrap_or_else(|| panic!("measured"));
    assert_eq!(handle.slow_operations(), slow);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn resources_created_later_are_measured_internal_and_excluded_ones_are_not() -> TestResult {
    let t = TestStore::memory("metrics_which");
    let db = connect(t.conn.clone()).await?;
    let before = db.create_resource(users()).await?;
    let metrics = db
        .use_plugin(
            MetricsPlugin::builder()
                .exclude(["secrets"])
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await?;
    let later = db
        .create_resource(ResourceConfig::new("orders").attribute("total", "number"))
        .await?;
    let excluded = db
        .create_resource(ResourceConfig::new("secrets").attribute("v", "string"))
        .await?;
    let internal = db
        .create_resource(ResourceConfig::new("plg_other_plugin").attribute("v", "string"))
        .await?;
    // Opening a resource again (same definition) does not instrument it twice.
    let again = db.create_resource(users()).await?;
    assert_eq!(again.interceptor_count(), (0, 1));

    before.insert(json!({"name": "a"})).await?;
    later.insert(json!({"total": 3})).await?;
    later.count().await?;
    excluded.insert(json!({"v": "x"})).await?;
    internal.insert(json!({"v": "x"})).await?;

    let snapshot = metrics.snapshot();
    let names: Vec<&String> = snapshot.resources.keys().collect();
    assert_eq!(names, ["orders", "users"]);
    assert_eq!(
        snapshot.operation("orders", "insert").map(|m| m.count),
        Some(1)
    );
    assert_eq!(
        snapshot.operation("orders", "count").map(|m| m.count),
        Some(1)
    );
    assert_eq!(
        snapshot.operation("users", "insert").map(|m| m.count),
        Some(1)
    );
    assert_eq!(snapshot.count, 3);
    assert!(excluded.metrics().is_none() && internal.metrics().is_none());
    assert_eq!(excluded.interceptor_count(), (0, 0));
    assert_eq!(internal.interceptor_count(), (0, 0));
    // Operation families leave them out; store requests are attributed to every owner.
    let text = metrics.render();
    assert!(!text.contains(r#"_total{resource="secrets""#) && !text.contains(r#"{resource="plg_"#));
    let store_owners: Vec<_> = metrics
        .snapshot()
        .store
        .into_iter()
        .map(|s| s.owner)
        .collect();
    assert!(store_owners.contains(&StoreOwner::Resource("secrets".into())));

    // After uninstall nothing is measured and the extension is gone.
    db.uninstall_plugin("metrics", false).await?;
    assert!(before.metrics().is_none());
    assert_eq!(before.interceptor_count(), (0, 0));
    before.insert(json!({"name": "b"})).await?;
    assert_eq!(metrics.snapshot().count, 3);
    Ok(())
}

#[tokio::test]
async fn include_measures_only_the_listed_resources() -> TestResult {
    let t = TestStore::memory("metrics_include");
    let db = connect(t.conn.clone()).await?;
    let metrics = db
        .use_plugin(
            MetricsPlugin::builder()
                .include(["orders"])
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await?;
    let users = db.create_resource(users()).await?;
    let orders = db
        .create_resource(ResourceConfig::new("orders").attribute("total", "number"))
        .await?;
    users.insert(json!({"name": "a"})).await?;
    orders.insert(json!({"total": 1})).await?;
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.resources.keys().collect::<Vec<_>>(), ["orders"]);
    assert!(users.metrics().is_none());
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn reset_forgets_everything_and_measuring_goes_on() -> TestResult {
    let t = TestStore::memory("metrics_reset");
    let db = connect(t.conn.clone()).await?;
    let metrics = db.use_plugin(plugin(Duration::ZERO)).await?;
    let users = db.create_resource(users()).await?;
    workload(&users).await?;
    let before = metrics.snapshot();
    assert!(before.count > 0 && !metrics.slow_operations().is_empty());
    metrics.reset();
    let after = metrics.snapshot();
    assert_eq!((after.count, after.errors, after.slow), (0, 0, 0));
    assert!(after.since >= before.taken_at);
    assert!(metrics.slow_operations().is_empty());
    assert_eq!(users.metrics().map(|m| m.count), Some(0));
    users.get("u0").await?;
    assert_eq!(
        metrics
            .snapshot()
            .operation("users", "get")
            .map(|m| m.count),
        Some(1)
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn percentiles_follow_the_latency_distribution() -> TestResult {
    // A middleware-free check of plausibility: a resource whose gets take ~1 ms or ~20 ms.
    let t = TestStore::memory("metrics_percentiles");
    let db = connect(t.conn.clone()).await?;
    let metrics = db.use_plugin(plugin(Duration::from_millis(15))).await?;
    let users = db.create_resource(users()).await?;
    users.insert(json!({"id": "a", "name": "a"})).await?;
    // Delay some gets with an inner middleware installed after the plugin's (so inside it).
    struct Delay;
    #[s3db_core::plugin::async_trait]
    impl s3db_core::plugin::Middleware for Delay {
        async fn handle(
            &self,
            _r: &s3db_core::Resource,
            op: s3db_core::plugin::Operation,
            next: s3db_core::plugin::Next<'_>,
        ) -> s3db_core::Result<s3db_core::plugin::Outcome> {
            if let s3db_core::plugin::Operation::Get { id } = &op {
                let ms = if id == "a" { 1 } else { 20 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            next.run(op).await
        }
    }
    users.add_middleware(Delay);
    for _ in 0..90 {
        users.get("a").await?;
    }
    for _ in 0..10 {
        assert!(users.get("slow").await.is_err());
    }
    let get = metrics
        .snapshot()
        .operation("users", "get")
        .cloned()
        .unwrap_or_else(|| panic!("gets"));
    assert_eq!((get.count, get.errors), (100, 10));
    assert!(get.slow >= 10, "the 20 ms gets are slow: {get:?}");
    let l = get.latency;
    assert!(
        l.p50 >= Duration::from_millis(1) && l.p50 < Duration::from_millis(15),
        "{l:?}"
    );
    assert!(l.p95 >= Duration::from_millis(19), "{l:?}");
    assert!(
        l.p99 >= Duration::from_millis(19) && l.p99 <= l.max,
        "{l:?}"
    );
    let slow_missing = metrics
        .slow_operations()
        .iter()
        .filter(|s| s.id.as_deref() == Some("slow") && s.error.is_some())
        .count();
    assert_eq!(slow_missing, 10);
    db.disconnect().await?;
    Ok(())
}

// ----- the metrics facade, through a thread-local recorder -----

#[derive(Default)]
struct Capture {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(value);
    }
}

fn key_text(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = counters.entry(key_text(key)).or_default();
        Counter::from_arc(Arc::clone(c))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self
            .histograms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = histograms.entry(key_text(key)).or_default();
        Histogram::from_arc(Arc::clone(h))
    }
}

impl Capture {
    fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn histogram_len(&self, key: &str) -> usize {
        self.histograms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .map_or(0, |h| {
                h.0.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
    }
}

#[tokio::test(flavor = "current_thread")]
async fn emits_through_the_metrics_facade() -> TestResult {
    // A thread-local recorder: the test's operations run on this thread only; nothing global is
    // installed, so other tests are unaffected.
    let capture = Capture::default();
    let _guard = metrics::set_default_local_recorder(&capture);
    let t = TestStore::memory("metrics_facade");
    let db: Database = connect(t.conn.clone()).await?;
    let metrics = db.use_plugin(plugin(Duration::from_nanos(1))).await?;
    let users = db.create_resource(users()).await?;
    workload(&users).await?;
    // Store requests: the facade saw exactly what the plugin's own table counted.
    let mut checked = 0;
    for s in &metrics.snapshot().store {
        let labels = format!(
            "kind={},name={},scope={}",
            s.kind.as_str(),
            s.owner.name(),
            s.owner.scope()
        );
        let requests = |status: &str| {
            capture.counter(&format!(
                "s3db_store_requests_total{{{labels},status={status}}}"
            ))
        };
        assert_eq!(requests("ok"), s.count - s.failures, "{labels}");
        assert_eq!(requests("error"), s.failures, "{labels}");
        assert_eq!(
            capture.histogram_len(&format!("s3db_store_request_duration_seconds{{{labels}}}")),
            usize::try_from(s.count).unwrap_or(usize::MAX),
            "{labels}"
        );
        assert_eq!(
            capture.counter(&format!("s3db_store_bytes_sent_total{{{labels}}}")),
            s.bytes_sent,
            "{labels}"
        );
        assert_eq!(
            capture.counter(&format!("s3db_store_bytes_received_total{{{labels}}}")),
            s.bytes_received,
            "{labels}"
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "PUT, GET and LIST of users at least: {checked}"
    );
    let get_ok = "s3db_operations_total{operation=get,resource=users,status=ok}";
    let get_err = "s3db_operations_total{operation=get,resource=users,status=error}";
    assert_eq!(capture.counter(get_ok), 5);
    assert_eq!(capture.counter(get_err), 2);
    assert_eq!(
        capture.counter("s3db_operation_errors_total{kind=not_found,operation=get,resource=users}"),
        2
    );
    assert_eq!(
        capture.counter("s3db_slow_operations_total{operation=insert,resource=users}"),
        7
    );
    assert_eq!(
        capture.histogram_len(
            "s3db_operation_duration_seconds{operation=insert,resource=users,status=ok}"
        ),
        5
    );
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn the_facade_can_be_turned_off_and_methods_need_an_installed_plugin() -> TestResult {
    let p = MetricsPlugin::builder()
        .facade(false)
        .flush_every(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(p.flush().await, Err(Error::Refused { .. })));
    assert!(matches!(
        p.cleanup(Duration::ZERO).await,
        Err(Error::Refused { .. })
    ));
    let no_flush = MetricsPlugin::new();
    assert!(matches!(
        no_flush.history().await,
        Err(Error::Refused { .. })
    ));
    assert!(no_flush.local_addr().is_none());
    assert_eq!(no_flush.snapshot().count, 0);
    Ok(())
}

#[tokio::test]
async fn store_requests_match_the_store_accounting() -> TestResult {
    let t = TestStore::file("metrics_store_requests");
    let db = connect(t.conn.clone()).await?;
    let metrics = db.use_plugin(MetricsPlugin::new()).await?;
    let users = db.create_resource(users()).await?;
    assert!(
        metrics
            .snapshot()
            .store
            .iter()
            .any(|s| s.owner == StoreOwner::Database),
        "creating a resource wrote s3db.json"
    );
    metrics.reset();
    let before = db.store().accounting().snapshot();
    workload(&users).await?;
    let after = db.store().accounting().snapshot().since(&before);
    let snapshot = metrics.snapshot();
    let owners: std::collections::BTreeSet<&StoreOwner> =
        snapshot.store.iter().map(|s| &s.owner).collect();
    assert_eq!(
        owners.into_iter().collect::<Vec<_>>(),
        [&StoreOwner::Resource("users".into())]
    );
    for kind in RequestKind::ALL {
        let mine: u64 = snapshot
            .store
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.count)
            .sum();
        assert_eq!(mine, after.count(kind), "{kind} requests");
    }
    let sent: u64 = snapshot.store.iter().map(|s| s.bytes_sent).sum();
    let received: u64 = snapshot.store.iter().map(|s| s.bytes_received).sum();
    assert_eq!((sent, received), (after.bytes_sent, after.bytes_received));
    let users_owner = StoreOwner::Resource("users".into());
    let puts = snapshot
        .store_requests(&users_owner, RequestKind::Put)
        .unwrap_or_else(|| panic!("PUTs: {:?}", snapshot.store));
    assert!(puts.count >= 7, "inserts and updates write: {puts:?}");
    let gets = snapshot
        .store_requests(&users_owner, RequestKind::Get)
        .unwrap_or_else(|| panic!("GETs"));
    assert!(gets.failures >= 2, "the missing ids: {gets:?}");
    assert!(gets.latency.p50 <= gets.latency.p99);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn store_requests_can_be_turned_off() -> TestResult {
    let t = TestStore::memory("metrics_store_off");
    let db = connect(t.conn.clone()).await?;
    let observers = db.store().accounting().observer_count();
    let metrics = db
        .use_plugin(MetricsPlugin::builder().store_requests(false).build()?)
        .await?;
    assert_eq!(db.store().accounting().observer_count(), observers);
    let users = db.create_resource(users()).await?;
    workload(&users).await?;
    assert!(metrics.snapshot().store.is_empty());
    assert!(!metrics.render().contains("s3db_store_requests_total{"));
    db.disconnect().await?;
    Ok(())
}
