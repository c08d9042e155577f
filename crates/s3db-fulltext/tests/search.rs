//! Matching and ranking: prefix vs exact, fields, scores, paging, tokenizer options.

mod common;

use common::*;
use s3db_core::testing::TestStore;
use s3db_fulltext::{FullTextConfigError, FullTextPlugin, IndexedResource, SearchQuery};
use serde_json::json;

fn ids(hits: &[s3db_fulltext::SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.record.id()).collect()
}

#[tokio::test]
async fn prefix_by_default_exact_on_request() -> TestResult {
    let t = TestStore::memory("ft_prefix");
    let (db, articles) = open(&t.conn, plugin()).await?;
    let ft = fulltext(&db);
    articles
        .insert(json!({"id": "a", "title": "Searching"}))
        .await?;
    articles
        .insert(json!({"id": "b", "title": "Search"}))
        .await?;
    articles.insert(json!({"id": "c", "title": "Seal"})).await?;

    let mut prefix = ids(&ft.search("articles", "sea").await?)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    prefix.sort();
    assert_eq!(prefix, ["a", "b", "c"]);
    assert_eq!(
        ids(&ft
            .search("articles", SearchQuery::new("search").exact())
            .await?),
        ["b"]
    );
    assert!(
        ft.search("articles", SearchQuery::new("sea").exact())
            .await?
            .is_empty()
    );
    // A one-letter prefix (shorter than a shard name) is below the minimum length: no terms.
    assert!(ft.search("articles", "s").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn short_prefixes_read_every_matching_shard() -> TestResult {
    let t = TestStore::memory("ft_short");
    let (db, articles) = open(
        &t.conn,
        builder().min_word_length(1).shard_prefix(3).build()?,
    )
    .await?;
    let ft = fulltext(&db);
    articles
        .insert(json!({"id": "a", "title": "apple"}))
        .await?;
    articles
        .insert(json!({"id": "b", "title": "apricot"}))
        .await?;
    articles
        .insert(json!({"id": "c", "title": "banana"}))
        .await?;
    let mut found = ids(&ft.search("articles", "ap").await?)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    found.sort();
    assert_eq!(found, ["a", "b"]);
    assert_eq!(ft.search("articles", "a").await?.len(), 2);
    assert_eq!(
        ids(&ft
            .search("articles", SearchQuery::new("ap").exact())
            .await?),
        Vec::<&str>::new()
    );
    Ok(())
}

#[tokio::test]
async fn field_restriction() -> TestResult {
    let t = TestStore::memory("ft_fields");
    let (db, articles) = open(&t.conn, plugin()).await?;
    let ft = fulltext(&db);
    articles
        .insert(json!({"id": "t", "title": "Tokio", "body": "other"}))
        .await?;
    articles
        .insert(json!({"id": "b", "title": "Other", "body": "tokio"}))
        .await?;
    articles
        .insert(json!({"id": "g", "title": "Other", "tags": ["tokio"]}))
        .await?;
    assert_eq!(ft.search("articles", "tokio").await?.len(), 3);
    assert_eq!(
        ids(&ft
            .search("articles", SearchQuery::new("tokio").fields(["title"]))
            .await?),
        ["t"]
    );
    assert_eq!(
        ids(&ft
            .search("articles", SearchQuery::new("tokio").fields(["tags"]))
            .await?),
        ["g"]
    );
    let hits = ft
        .search(
            "articles",
            SearchQuery::new("tokio").fields(["body", "tags"]),
        )
        .await?;
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.matched_fields != ["title"]));
    // A field that is not indexed is an error naming it.
    let err = ft
        .search("articles", SearchQuery::new("tokio").fields(["author"]))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("author") && err.contains("fulltext"), "{err}");
    // So is a resource that is not indexed.
    assert!(ft.search("users", "tokio").await.is_err());
    Ok(())
}

#[tokio::test]
async fn scores_rank_occurrences_short_fields_and_weights() -> TestResult {
    let t = TestStore::memory("ft_scores");
    let (db, articles) = open(&t.conn, plugin()).await?;
    let ft = fulltext(&db);
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed eiusmod";
    // More occurrences rank higher (same length).
    articles
        .insert(json!({"id": "once", "title": "x", "body": format!("rust {filler}")}))
        .await?;
    articles
        .insert(json!({"id": "thrice", "title": "x", "body": format!("rust rust rust {filler}")}))
        .await?;
    // Shorter field ranks higher (one occurrence each).
    articles
        .insert(json!({"id": "short", "title": "x", "body": "tokio runtime"}))
        .await?;
    articles
        .insert(json!({"id": "long", "title": "x", "body": format!("tokio {filler} {filler}")}))
        .await?;
    // Weight: title (2) beats body (1).
    articles
        .insert(json!({"id": "in-title", "title": "zebra", "body": "plain words here"}))
        .await?;
    articles
        .insert(json!({"id": "in-body", "title": "plain", "body": "zebra words here"}))
        .await?;
    // Unrelated documents, so that the terms are not in every record.
    for i in 0..4 {
        articles
            .insert(json!({"id": format!("n{i}"), "title": "nothing", "body": "unrelated text"}))
            .await?;
    }

    let hits = ft.search("articles", "rust").await?;
    assert_eq!(ids(&hits), ["thrice", "once"]);
    assert!(hits[0].score > hits[1].score && hits[1].score > 0.0);
    assert_eq!(
        ids(&ft.search("articles", "tokio").await?),
        ["short", "long"]
    );
    assert_eq!(
        ids(&ft.search("articles", "zebra").await?),
        ["in-title", "in-body"]
    );
    // Rare terms weigh more: a record with both terms beats one with the common term only.
    let hits = ft.search("articles", "zebra plain").await?;
    assert_eq!(hits.len(), 2);
    // Match all: only records with every term.
    articles
        .insert(json!({"id": "both", "title": "rust tokio"}))
        .await?;
    assert_eq!(
        ids(&ft
            .search("articles", SearchQuery::new("rust tokio").match_all())
            .await?),
        ["both"]
    );
    Ok(())
}

#[tokio::test]
async fn limit_and_offset_page_through_ranked_results() -> TestResult {
    let t = TestStore::memory("ft_paging");
    let (db, articles) = open(&t.conn, builder().max_results(4).build()?).await?;
    let ft = fulltext(&db);
    for i in 1..=10 {
        let body = vec!["word"; i].join(" ") + " other filler text";
        articles
            .insert(json!({"id": format!("d{i:02}"), "title": "t", "body": body}))
            .await?;
    }
    articles
        .insert(json!({"id": "zz", "title": "none"}))
        .await?;
    let everything = ft
        .search("articles", SearchQuery::new("word").limit(100))
        .await?;
    assert_eq!(everything.len(), 10);
    assert!(everything.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(everything[0].record.id(), "d10");
    // The default limit is max_results.
    assert_eq!(ft.search("articles", "word").await?.len(), 4);
    let page = ft
        .search("articles", SearchQuery::new("word").offset(3).limit(3))
        .await?;
    assert_eq!(ids(&page), ids(&everything[3..6]));
    assert!(
        ft.search("articles", SearchQuery::new("word").offset(10))
            .await?
            .is_empty()
    );
    assert!(
        ft.search("articles", SearchQuery::new("word").limit(0))
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn accents_case_min_length_and_stemming() -> TestResult {
    let t = TestStore::memory("ft_tokens");
    let (db, articles) = open(&t.conn, builder().stemming(true).build()?).await?;
    let ft = fulltext(&db);
    articles
        .insert(json!({"id": "a", "title": "CRÈME Brûlée", "body": "Running ponies in a café"}))
        .await?;
    for q in [
        "creme", "brulee", "Crème", "BRÛLÉE", "cafe", "run", "runs", "pony", "ponies",
    ] {
        assert_eq!(
            ft.search("articles", SearchQuery::new(q).exact())
                .await?
                .len(),
            1,
            "{q}"
        );
    }
    // "in" and "a" are shorter than the minimum: neither indexed nor searched.
    assert!(ft.postings("articles", Some(&["in"])).await?.is_empty());
    assert!(ft.search("articles", "in").await?.is_empty());
    Ok(())
}

#[test]
fn bad_configurations_are_refused_with_what_to_fix() {
    let cases: Vec<(s3db_fulltext::FullTextBuilder, FullTextConfigError)> = vec![
        (FullTextPlugin::builder(), FullTextConfigError::NoResources),
        (
            FullTextPlugin::builder().resource("a", Vec::<String>::new()),
            FullTextConfigError::NoFields {
                resource: "a".into(),
            },
        ),
        (
            FullTextPlugin::builder().resource("plg_x", ["f"]),
            FullTextConfigError::InternalResource {
                resource: "plg_x".into(),
            },
        ),
        (
            FullTextPlugin::builder().resource("a", ["f", "f"]),
            FullTextConfigError::DuplicateField {
                resource: "a".into(),
                field: "f".into(),
            },
        ),
        (
            FullTextPlugin::builder().resource("a", ["x..y"]),
            FullTextConfigError::BadField {
                resource: "a".into(),
                field: "x..y".into(),
            },
        ),
        (
            FullTextPlugin::builder()
                .resource("a", ["f"])
                .resource("a", ["g"]),
            FullTextConfigError::DuplicateResource {
                resource: "a".into(),
            },
        ),
        (
            FullTextPlugin::builder().indexed(IndexedResource::new("a").weighted_field("f", 0.0)),
            FullTextConfigError::BadWeight {
                resource: "a".into(),
                field: "f".into(),
                weight: 0.0,
            },
        ),
        (
            FullTextPlugin::builder()
                .resource("a", ["f"])
                .min_word_length(0),
            FullTextConfigError::ZeroMinWordLength,
        ),
        (
            FullTextPlugin::builder()
                .resource("a", ["f"])
                .max_results(0),
            FullTextConfigError::ZeroMaxResults,
        ),
        (
            FullTextPlugin::builder()
                .resource("a", ["f"])
                .shard_prefix(0),
            FullTextConfigError::BadShardPrefix(0),
        ),
        (
            FullTextPlugin::builder()
                .resource("a", ["f"])
                .length_shards(0),
            FullTextConfigError::BadLengthShards(0),
        ),
        (
            FullTextPlugin::builder().resource("a", ["f"]).name("--"),
            FullTextConfigError::BadName { name: "--".into() },
        ),
    ];
    for (builder, expected) in cases {
        assert_eq!(builder.build().err(), Some(expected));
    }
    assert!(
        FullTextPlugin::builder()
            .resource("a", ["f"])
            .build()
            .is_ok()
    );
}
