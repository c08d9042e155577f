//! The index follows every kind of write, and equals a brute-force scan of the records.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use s3db_core::testing::TestStore;
use serde_json::json;

#[tokio::test]
async fn insert_update_delete_and_bulk_keep_the_index_exact_memory() -> TestResult {
    writes_keep_the_index_exact(TestStore::memory("ft_writes")).await
}

#[tokio::test]
async fn insert_update_delete_and_bulk_keep_the_index_exact_file() -> TestResult {
    writes_keep_the_index_exact(TestStore::file("ft_writes_file")).await
}

async fn writes_keep_the_index_exact(t: TestStore) -> TestResult {
    let (db, articles) = open(&t.conn, plugin()).await?;
    let ft = fulltext(&db);

    articles
        .insert(json!({"id": "a", "title": "Rust buckets", "body": "Objects in buckets", "tags": ["storage"]}))
        .await?;
    // An insert without an id.
    let minted = articles
        .insert(json!({"title": "Minted id", "body": "rusty runtime"}))
        .await?;
    assert_index_matches(&db, &articles).await?;
    assert_eq!(
        ft.postings("articles", Some(&["buckets"])).await?["buckets"]["a"],
        map_of(&[("title", 1), ("body", 1)])
    );

    // Update: old terms go, new ones come; patch, replace and upsert too.
    articles
        .update("a", json!({"title": "Zebra zeal", "body": "zebra"}))
        .await?;
    assert!(
        ft.postings("articles", Some(&["buckets"]))
            .await?
            .is_empty()
    );
    assert_eq!(ft.search("articles", "zebra").await?.len(), 1);
    articles.patch("a", json!({"body": "tokio await"})).await?;
    articles
        .replace(minted.id(), json!({"title": "Replaced entirely"}))
        .await?;
    articles
        .upsert("u", json!({"title": "Upserted tokio", "tags": ["async"]}))
        .await?;
    articles
        .upsert("u", json!({"title": "Upserted again", "tags": ["await"]}))
        .await?;
    assert_index_matches(&db, &articles).await?;

    // Delete: every posting and the length entry go.
    articles.delete("a").await?;
    assert!(ft.search("articles", "zebra").await?.is_empty());
    assert_index_matches(&db, &articles).await?;

    // Bulk insert and delete.
    let docs: Vec<_> = (0..40)
        .map(|i| json!({"id": format!("bulk-{i:02}"), "title": format!("Bulk {i} storage"), "body": if i % 2 == 0 { "even search" } else { "odd index" }}))
        .collect();
    for r in articles.insert_many(docs).await {
        r?;
    }
    assert_eq!(ft.search("articles", all("storage")).await?.len(), 40);
    assert_index_matches(&db, &articles).await?;
    let gone: Vec<String> = (0..40).step_by(3).map(|i| format!("bulk-{i:02}")).collect();
    for r in articles.delete_many(&gone).await {
        r?;
    }
    assert_eq!(
        ft.search("articles", all("storage")).await?.len(),
        40 - gone.len()
    );
    assert_index_matches(&db, &articles).await?;

    // delete_all empties the index.
    articles.delete_all().await?;
    assert!(ft.postings("articles", None).await?.is_empty());
    assert_eq!(ft.stats("articles").await?.records, 0);
    Ok(())
}

fn all(q: &str) -> s3db_fulltext::SearchQuery {
    s3db_fulltext::SearchQuery::new(q).limit(10_000)
}

#[tokio::test]
async fn random_operations_match_a_brute_force_scan_memory() -> TestResult {
    random_operations(TestStore::memory("ft_random"), 160, 7).await
}

#[tokio::test]
async fn random_operations_match_a_brute_force_scan_file() -> TestResult {
    random_operations(TestStore::file("ft_random_file"), 100, 11).await
}

async fn random_operations(t: TestStore, ops: usize, seed: u64) -> TestResult {
    let (db, articles) = open(&t.conn, builder().stemming(seed % 2 == 1).build()?).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ids: Vec<String> = Vec::new();
    for step in 0..ops {
        match rng.random_range(0..10) {
            0..=3 => {
                let id = format!("r{step}");
                articles
                    .insert(json!({"id": id, "title": random_text(&mut rng, 4).chars().chain("x".chars()).collect::<String>(), "body": random_text(&mut rng, 12), "tags": [random_text(&mut rng, 2)]}))
                    .await?;
                ids.push(id);
            }
            4..=6 if !ids.is_empty() => {
                let id = &ids[rng.random_range(0..ids.len())];
                let change = if rng.random_bool(0.5) {
                    json!({"body": random_text(&mut rng, 12)})
                } else {
                    json!({"title": format!("t {}", random_text(&mut rng, 3)), "tags": []})
                };
                articles.update(id, change).await?;
            }
            7 if !ids.is_empty() => {
                let id = ids.swap_remove(rng.random_range(0..ids.len()));
                articles.delete(&id).await?;
            }
            8 => {
                // A concurrent burst.
                let batch: Vec<_> = (0..5)
                    .map(|i| {
                        let id = format!("b{step}-{i}");
                        ids.push(id.clone());
                        json!({"id": id, "title": "burst", "body": random_text(&mut rng, 6)})
                    })
                    .collect();
                for r in articles.insert_many(batch).await {
                    r?;
                }
            }
            _ if !ids.is_empty() => {
                let picked: Vec<String> = (0..3)
                    .map(|_| ids[rng.random_range(0..ids.len())].clone())
                    .collect();
                let updates = picked.iter().map(|id| {
                    let body = random_text(&mut rand::rng(), 8);
                    let articles = articles.clone();
                    let id = id.clone();
                    async move { articles.update(&id, json!({"body": body})).await }
                });
                for r in futures::future::join_all(updates).await {
                    r?;
                }
            }
            _ => {}
        }
        if step % 40 == 39 {
            assert_index_matches(&db, &articles).await?;
        }
    }
    assert_index_matches(&db, &articles).await?;
    // Brute force for random multi-word queries, both modes.
    let ft = fulltext(&db);
    let records = articles.list().await?;
    let tokenizer = ft.tokenizer();
    for _ in 0..20 {
        let q = random_text(&mut rng, 3);
        let exact = rng.random_bool(0.3);
        let all = rng.random_bool(0.5);
        let mut query = s3db_fulltext::SearchQuery::new(q.clone()).limit(100_000);
        if exact {
            query = query.exact();
        }
        if all {
            query = query.match_all();
        }
        let found: std::collections::BTreeSet<String> = ft
            .search("articles", query)
            .await?
            .into_iter()
            .map(|h| h.record.id().to_owned())
            .collect();
        assert_eq!(
            found,
            brute_force(
                &records,
                &["title", "body", "tags"],
                &tokenizer,
                &q,
                exact,
                all
            ),
            "query {q:?} exact={exact} all={all}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn rebuild_reproduces_the_index_and_clear_empties_it() -> TestResult {
    let t = TestStore::memory("ft_rebuild");
    let (db, articles) = open(&t.conn, plugin()).await?;
    let ft = fulltext(&db);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let docs: Vec<_> = (0..30)
        .map(|i| json!({"id": format!("d{i}"), "title": random_text(&mut rng, 3) + " doc", "body": random_text(&mut rng, 10)}))
        .collect();
    for r in articles.insert_many(docs).await {
        r?;
    }
    let before = ft.postings("articles", None).await?;
    let stats = ft.stats("articles").await?;
    assert_eq!(stats.records, 30);

    assert!(ft.clear("articles").await? > 0);
    assert!(ft.postings("articles", None).await?.is_empty());
    assert!(ft.search("articles", "doc").await?.is_empty());
    assert_eq!(ft.stats("articles").await?.records, 0);
    // Records are untouched.
    assert_eq!(articles.count().await?, 30);

    assert_eq!(ft.rebuild("articles").await?, 30);
    assert_eq!(ft.postings("articles", None).await?, before);
    assert_eq!(ft.stats("articles").await?, stats);
    assert_eq!(ft.search("articles", "doc").await?.len(), 30);

    // A rebuild over a stale index (records written while the plugin was away) fixes it.
    let bare = s3db_core::Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let bare_articles = bare.create_resource(common::articles()).await?;
    bare_articles
        .insert(json!({"id": "unseen", "title": "Written without the plugin"}))
        .await?;
    bare_articles.delete("d0").await?;
    assert!(ft.search("articles", "plugin").await?.is_empty());
    assert_eq!(ft.rebuild("articles").await?, 30);
    assert_index_matches(&db, &articles).await?;
    assert_eq!(ft.search("articles", "plugin").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn installing_on_a_resource_with_records_indexes_them() -> TestResult {
    let t = TestStore::memory("ft_late_install");
    let db = s3db_core::Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let articles = db.create_resource(common::articles()).await?;
    articles
        .insert(json!({"id": "old", "title": "Existing record"}))
        .await?;
    db.use_plugin(plugin()).await?;
    assert_eq!(fulltext(&db).search("articles", "existing").await?.len(), 1);
    assert_index_matches(&db, &articles).await?;
    Ok(())
}
