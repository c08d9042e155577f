//! The index survives a crash: nothing is kept only in memory, and unfinished changes are redone.

mod common;

use std::time::Duration;

use common::*;
use s3db_core::plugin::{PluginStorage, SetOptions};
use s3db_core::testing::TestStore;
use s3db_core::{Database, Store};
use serde_json::json;

#[tokio::test]
async fn a_database_dropped_without_stopping_loses_nothing() -> TestResult {
    let t = TestStore::file("ft_crash");
    {
        let (db, articles) = open(&t.conn, plugin()).await?;
        articles
            .insert(json!({"id": "a", "title": "Durable index", "body": "bucket"}))
            .await?;
        articles
            .insert(json!({"id": "b", "title": "Second", "body": "bucket rust"}))
            .await?;
        let docs: Vec<_> = (0..20)
            .map(|i| json!({"id": format!("m{i}"), "title": "many", "body": "bulk rust"}))
            .collect();
        for r in articles.insert_many(docs).await {
            r?;
        }
        articles.update("a", json!({"body": "zebra"})).await?;
        articles.delete("m3").await?;
        // No disconnect, no stop: the process "dies" here.
        drop(articles);
        drop(db);
    }
    let (db, articles) = open(&t.conn, plugin()).await?;
    let ft = fulltext(&db);
    assert_eq!(ft.search("articles", "zebra").await?.len(), 1);
    assert_eq!(
        ft.search(
            "articles",
            s3db_fulltext::SearchQuery::new("rust").limit(100)
        )
        .await?
        .len(),
        20
    );
    assert_eq!(ft.search("articles", "many").await?.len(), 19);
    assert_index_matches(&db, &articles).await?;
    Ok(())
}

/// Simulates a writer that died after writing the record but before its index change: the
/// record is written by a database without the plugin, and the marker the plugin's before-hook
/// would have left is put in place by hand.
async fn crashed_writes(t: &TestStore) -> TestResult {
    let bare = Database::builder()
        .connection(t.conn.clone())
        .connect()
        .await?;
    let articles = bare.create_resource(common::articles()).await?;
    articles
        .insert(json!({"id": "lost", "title": "Written before a crash"}))
        .await?;
    articles
        .insert(json!({"id": "anon-1", "title": "Anonymous crash"}))
        .await?;
    articles
        .update("kept", json!({"title": "Updated before a crash"}))
        .await?;
    articles.delete("gone").await?;
    let storage = PluginStorage::new(Store::open(t.conn.clone())?, "fulltext")?;
    let marker = json!({"at": 0}).as_object().cloned().unwrap_or_default();
    for path in [
        vec!["pending", "lost", "t1"],
        vec!["pending", "kept", "t2"],
        vec!["pending", "gone", "t3"],
        vec!["pending-insert", "t4"],
    ] {
        storage
            .set(
                &storage.key(Some("articles"), &path)?,
                &marker,
                SetOptions::new(),
            )
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn unfinished_changes_are_redone_at_the_next_install() -> TestResult {
    let t = TestStore::file("ft_recover");
    {
        let (db, articles) = open(&t.conn, plugin()).await?;
        articles
            .insert(json!({"id": "kept", "title": "Original title"}))
            .await?;
        articles
            .insert(json!({"id": "gone", "title": "Deleted later"}))
            .await?;
        drop(db);
    }
    crashed_writes(&t).await?;

    // Young markers belong, maybe, to writes still in flight: left alone.
    let (db, articles) = open(&t.conn, plugin()).await?;
    let ft = fulltext(&db);
    assert_eq!(ft.stats("articles").await?.pending, 4);
    assert!(ft.search("articles", "crash").await?.is_empty());
    // The deleted record's postings are stale until recovered (search reads the records and
    // leaves it out all the same).
    assert!(
        !ft.postings("articles", Some(&["deleted"]))
            .await?
            .is_empty()
    );
    assert!(ft.search("articles", "deleted").await?.is_empty());
    drop(db);
    drop(articles);

    // Old enough: redone at install.
    let (db, articles) = open(&t.conn, builder().recovery_grace(Duration::ZERO).build()?).await?;
    let ft = fulltext(&db);
    assert_eq!(ft.stats("articles").await?.pending, 0);
    assert_eq!(ft.search("articles", "crash").await?.len(), 3);
    assert!(
        ft.postings("articles", Some(&["deleted"]))
            .await?
            .is_empty()
    );
    assert!(
        ft.postings("articles", Some(&["original"]))
            .await?
            .is_empty()
    );
    assert_index_matches(&db, &articles).await?;
    Ok(())
}

#[tokio::test]
async fn changing_the_settings_rebuilds_the_index_at_install() -> TestResult {
    let t = TestStore::memory("ft_settings");
    {
        let (db, articles) = open(&t.conn, plugin()).await?;
        articles
            .insert(json!({"id": "a", "title": "Running fast"}))
            .await?;
        assert!(
            fulltext(&db)
                .search("articles", SearchQueryExt::exact("run"))
                .await?
                .is_empty()
        );
    }
    let (db, _articles) = open(&t.conn, builder().stemming(true).build()?).await?;
    assert_eq!(
        fulltext(&db)
            .search("articles", SearchQueryExt::exact("run"))
            .await?
            .len(),
        1
    );
    Ok(())
}

struct SearchQueryExt;
impl SearchQueryExt {
    fn exact(q: &str) -> s3db_fulltext::SearchQuery {
        s3db_fulltext::SearchQuery::new(q).exact()
    }
}
