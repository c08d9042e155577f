//! `render()` is valid Prometheus text exposition and carries the scripted workload.

mod common;

use std::time::Duration;

use common::{EXPECTED, connect, parse_prometheus, users, workload};
use s3db_core::Error;
use s3db_core::testing::TestStore;
use s3db_metrics::MetricsPlugin;

#[tokio::test]
async fn render_parses_and_matches_the_workload() -> Result<(), Error> {
    let t = TestStore::memory("metrics_render");
    let db = connect(t.conn.clone()).await?;
    let metrics = db
        .use_plugin(
            MetricsPlugin::builder()
                .slow_threshold(Duration::from_secs(3600))
                .build()?,
        )
        .await?;
    let empty = parse_prometheus(&metrics.render());
    assert!(
        empty
            .samples
            .iter()
            .all(|s| s.name.ends_with("threshold_seconds"))
    );
    let users = db.create_resource(users()).await?;
    workload(&users).await?;
    let text = metrics.render();
    let exposition = parse_prometheus(&text);

    for (family, kind) in [
        ("s3db_operations_total", "counter"),
        ("s3db_operation_errors_total", "counter"),
        ("s3db_slow_operations_total", "counter"),
        ("s3db_operation_duration_seconds", "summary"),
        ("s3db_slow_operation_threshold_seconds", "gauge"),
    ] {
        assert_eq!(
            exposition.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
        assert!(exposition.help.contains_key(family), "HELP for {family}");
    }
    for (op, count, errors) in EXPECTED {
        let ok = count - errors;
        let labels = |status| [("resource", "users"), ("operation", op), ("status", status)];
        assert_eq!(
            exposition.value("s3db_operations_total", &labels("ok")),
            Some(ok as f64),
            "{op} ok"
        );
        assert_eq!(
            exposition.value("s3db_operations_total", &labels("error")),
            Some(errors as f64),
            "{op} error"
        );
        assert_eq!(
            exposition.value(
                "s3db_slow_operations_total",
                &[("resource", "users"), ("operation", op)]
            ),
            Some(0.0)
        );
        // A summary per status that ran: quantiles ordered, _count right, _sum plausible.
        for (status, n) in [("ok", ok), ("error", errors)] {
            let count = exposition.value("s3db_operation_duration_seconds_count", &labels(status));
            if n == 0 {
                assert_eq!(count, None, "{op} {status}: no summary without samples");
                continue;
            }
            assert_eq!(count, Some(n as f64), "{op} {status} count");
            let q = |quantile| {
                exposition
                    .value(
                        "s3db_operation_duration_seconds",
                        &[
                            ("resource", "users"),
                            ("operation", op),
                            ("status", status),
                            ("quantile", quantile),
                        ],
                    )
                    .unwrap_or_else(|| panic!("{op} {status} quantile {quantile}"))
            };
            let (p50, p95, p99) = (q("0.5"), q("0.95"), q("0.99"));
            assert!(
                0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 < 30.0,
                "{op}: {p50} {p95} {p99}"
            );
            let sum = exposition
                .value("s3db_operation_duration_seconds_sum", &labels(status))
                .unwrap_or_else(|| panic!("{op} sum"));
            assert!(sum >= p99 && sum < 30.0 * n as f64, "{op} sum {sum}");
        }
    }
    assert_eq!(
        exposition.value(
            "s3db_operation_errors_total",
            &[
                ("resource", "users"),
                ("operation", "get"),
                ("kind", "not_found")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        exposition.value(
            "s3db_operation_errors_total",
            &[
                ("resource", "users"),
                ("operation", "insert"),
                ("kind", "validation")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        exposition.value("s3db_slow_operation_threshold_seconds", &[]),
        Some(3600.0)
    );
    // Store requests of the users resource, by kind.
    for family in [
        "s3db_store_requests_total",
        "s3db_store_bytes_sent_total",
        "s3db_store_bytes_received_total",
    ] {
        assert_eq!(
            exposition.types.get(family).map(String::as_str),
            Some("counter")
        );
    }
    assert_eq!(
        exposition
            .types
            .get("s3db_store_request_duration_seconds")
            .map(String::as_str),
        Some("summary")
    );
    let puts = exposition
        .value(
            "s3db_store_requests_total",
            &[
                ("scope", "resource"),
                ("name", "users"),
                ("kind", "PUT"),
                ("status", "ok"),
            ],
        )
        .unwrap_or_else(|| panic!("PUTs of users in {text}"));
    assert!(puts >= 7.0);
    assert!(
        exposition
            .value(
                "s3db_store_bytes_sent_total",
                &[("scope", "resource"), ("name", "users"), ("kind", "PUT")]
            )
            .is_some_and(|b| b > 0.0)
    );
    assert!(
        exposition
            .value(
                "s3db_store_request_duration_seconds_count",
                &[("scope", "database"), ("name", ""), ("kind", "PUT")]
            )
            .is_some(),
        "s3db.json writes"
    );

    // Agrees with the snapshot.
    let snapshot = metrics.snapshot();
    let total: f64 = exposition
        .samples
        .iter()
        .filter(|s| s.name == "s3db_operations_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, snapshot.count as f64);
    db.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn the_prefix_renames_every_family() -> Result<(), Error> {
    let t = TestStore::memory("metrics_prefix");
    let db = connect(t.conn.clone()).await?;
    let metrics = db
        .use_plugin(
            MetricsPlugin::builder()
                .prefix("app_db")
                .facade(false)
                .build()?,
        )
        .await?;
    let users = db.create_resource(users()).await?;
    users.insert(serde_json::json!({"name": "x"})).await?;
    let exposition = parse_prometheus(&metrics.render());
    assert!(
        exposition
            .types
            .keys()
            .all(|name| name.starts_with("app_db_"))
    );
    assert_eq!(
        exposition.value(
            "app_db_operations_total",
            &[
                ("resource", "users"),
                ("operation", "insert"),
                ("status", "ok")
            ]
        ),
        Some(1.0)
    );
    db.disconnect().await?;
    Ok(())
}
