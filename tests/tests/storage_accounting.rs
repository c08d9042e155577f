//! Request accounting counts exactly the requests a scripted workload makes, on every backend,
//! and observers see each one.

use std::sync::{Arc, Mutex};

use s3db_core::store::{RequestEvent, RequestKind};
use s3db_core::testing::TestStore;
use s3db_core::{Key, Metadata};

fn key(s: &str) -> Key {
    Key::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

/// What the test keeps of each event.
#[derive(Debug, Clone)]
struct Seen {
    kind: RequestKind,
    key: String,
    bytes_sent: u64,
    ok: bool,
}

async fn scripted_workload(t: TestStore) {
    let store = &t.store;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let id = store
        .accounting()
        .observe(Arc::new(move |e: &RequestEvent<'_>| {
            if let Ok(mut events) = sink.lock() {
                events.push(Seen {
                    kind: e.kind,
                    key: e.key.to_owned(),
                    bytes_sent: e.bytes_sent,
                    ok: e.ok,
                });
            }
        }));
    let before = store.requests();
    let meta = Metadata::new().with("a", "1");
    let run = async {
        store.put(&key("w/1"), &meta, "12345".into()).await?; // PUT 5 B
        store.put(&key("w/2"), &meta, "123".into()).await?; // PUT 3 B
        store.create(&key("w/1"), &meta, "x".into()).await.ok(); // PUT (412), 1 B
        store.get(&key("w/1")).await?; // GET 5 B
        store.get(&key("w/missing")).await.ok(); // GET (404)
        store.head(&key("w/2")).await?; // HEAD
        let keys = store.list_keys(Some(&key("w"))).await?; // LIST
        assert_eq!(keys.len(), 2);
        store.copy(&key("w/2"), &key("w/3")).await?; // COPY
        store.delete(&key("w/1")).await?; // DELETE
        store.delete(&key("w/never")).await?; // DELETE (missing, still a request)
        Ok::<(), s3db_core::Error>(())
    };
    run.await
        .unwrap_or_else(|e| panic!("workload on {}: {e}", t.conn));
    let stats = store.requests().since(&before);
    let expected = [
        (RequestKind::Put, 3),
        (RequestKind::Get, 2),
        (RequestKind::Head, 1),
        (RequestKind::List, 1),
        (RequestKind::Copy, 1),
        (RequestKind::Delete, 2),
        (RequestKind::Post, 0),
    ];
    for (kind, n) in expected {
        assert_eq!(
            stats.count(kind),
            n,
            "{kind} requests on {}: {stats}",
            t.conn
        );
    }
    assert_eq!(stats.total(), 10);
    assert_eq!(stats.bytes_sent, 9);
    assert_eq!(stats.bytes_received, 5);

    let events = seen.lock().map(|e| e.clone()).unwrap_or_default();
    assert_eq!(events.len(), 10, "observer saw every request");
    let failed: Vec<_> = events.iter().filter(|e| !e.ok).map(|e| e.kind).collect();
    assert_eq!(failed, vec![RequestKind::Put, RequestKind::Get]);
    let first = &events[0];
    let expected_key = if store.prefix().is_empty() {
        "w/1".to_owned()
    } else {
        format!("{}/w/1", store.prefix())
    };
    assert_eq!(first.key, expected_key, "events carry the full key");
    assert_eq!(first.bytes_sent, 5);

    assert!(store.accounting().unobserve(id));
    store
        .head(&key("w/2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        seen.lock().map(|e| e.len()).unwrap_or_default(),
        10,
        "removed observer sees nothing"
    );
}

#[tokio::test]
async fn memory_counts_exactly() {
    scripted_workload(TestStore::memory("accounting")).await;
}

#[tokio::test]
async fn file_counts_exactly() {
    scripted_workload(TestStore::file("accounting")).await;
}

#[tokio::test]
async fn s3_counts_exactly() {
    let Some(t) = TestStore::s3("accounting") else {
        return;
    };
    scripted_workload(t).await;
}

#[tokio::test]
async fn list_pages_are_counted_per_thousand_keys() {
    let t = TestStore::memory("list_pages");
    let prefix = key("many");
    let meta = Metadata::new();
    for i in 0..2_001 {
        t.store
            .put(
                &prefix
                    .join(&format!("k{i:05}"))
                    .unwrap_or_else(|e| panic!("{e}")),
                &meta,
                bytes::Bytes::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let before = t.store.requests();
    assert_eq!(
        t.store
            .list_keys(Some(&prefix))
            .await
            .map(|k| k.len())
            .unwrap_or(0),
        2_001
    );
    assert_eq!(
        t.store.requests().since(&before).count(RequestKind::List),
        3
    );
    let before = t.store.requests();
    let page = t
        .store
        .list_page(Some(&prefix), None, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.entries.len(), 10);
    assert_eq!(
        t.store.requests().since(&before).count(RequestKind::List),
        1
    );
}
