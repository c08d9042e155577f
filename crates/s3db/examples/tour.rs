//! A tour of s3db on the embedded `file://` backend (or any connection string given as the first
//! argument). Run it with `cargo run --release --example tour`.
//!
//! For now it shows the storage layer every other part stands on: objects with metadata,
//! conditional create and update, a race without lost updates, listing pages, copy, delete, refused
//! input, and the S3 requests it all took. It grows as the resource model and the plugins land.

use std::time::Instant;

use futures::TryStreamExt;
use s3db::prelude::*;

const DEFAULT_CONNECTION: &str = "file://./data/tour";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match tour().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tour failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn tour() -> Result<()> {
    let conn = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_CONNECTION.to_owned());
    let store = Store::open(conn.as_str())?;
    println!("s3db tour on {}", ConnectionString::parse(&conn)?);
    let root = Key::parse("tour")?;
    let cleared = store.delete_prefix(&root).await?;
    if cleared > 0 {
        println!("  (removed {cleared} objects left by an earlier run)");
    }
    let started = Instant::now();

    step("1. An object with user metadata and a body");
    let alice = root.join("users")?.join("id=alice")?;
    let meta = Metadata::new().with("name", "Alice").with("region", "eu");
    let etag = store
        .create(&alice, &meta, r#"{"bio":"likes S3"}"#.into())
        .await?;
    let object = store.get(&alice).await?;
    println!(
        "   created {} -> ETag {etag}; read back metadata {:?} and body {}",
        object.head.key,
        object.head.metadata,
        String::from_utf8_lossy(&object.body)
    );

    step("2. Conditional create: the same key twice");
    match store.create(&alice, &Metadata::new(), "{}".into()).await {
        Err(e @ Error::AlreadyExists { .. }) => println!("   second create refused: {e}"),
        other => println!("   unexpected: {other:?}"),
    }

    step("3. Conditional update: current ETag wins, stale ETag is refused");
    let newer = store
        .update(
            &alice,
            &meta.clone().with("region", "us"),
            r#"{"bio":"moved"}"#.into(),
            &etag,
        )
        .await?;
    println!("   update based on {etag} -> {newer}");
    match store.update(&alice, &meta, "{}".into(), &etag).await {
        Err(e @ Error::PreconditionFailed { .. }) => println!("   stale update refused: {e}"),
        other => println!("   unexpected: {other:?}"),
    }

    step("4. A race: 8 tasks x 10 read-increment-conditional-write on one counter");
    let counter = root.join("counter")?;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut conflicts = 0u32;
                for _ in 0..10 {
                    conflicts += increment(&store, &counter).await?;
                }
                Ok::<_, Error>(conflicts)
            })
        })
        .collect();
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.map_err(|e| Error::Storage {
            operation: "tour task",
            key: counter.to_string(),
            transient: false,
            source: Box::new(e),
        })??;
    }
    let value = String::from_utf8_lossy(&store.get(&counter).await?.body).into_owned();
    println!("   counter = {value} (expected 80), after {conflicts} lost races that were retried");

    step("5. Listing by prefix, in pages");
    let items = root.join("items")?;
    for i in 0..25 {
        store
            .put(
                &items.join(&format!("id={i:03}"))?,
                &Metadata::new(),
                "x".into(),
            )
            .await?;
    }
    let mut start_after = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_page(Some(&items), start_after.as_ref(), 10)
            .await?;
        pages += 1;
        let first = page.entries.first().map(|e| e.key.last_part().to_owned());
        let last = page.entries.last().map(|e| e.key.last_part().to_owned());
        println!(
            "   page {pages}: {} keys ({} .. {})",
            page.entries.len(),
            first.unwrap_or_default(),
            last.unwrap_or_default()
        );
        match page.next_start_after {
            Some(next) => start_after = Some(next),
            None => break,
        }
    }
    let total: Vec<_> = store.list(Some(&root)).try_collect().await?;
    println!("   {} objects below {root}", total.len());

    step("6. Copy and delete");
    let archived = root.join("archive")?.join("id=alice")?;
    store.copy(&alice, &archived).await?;
    store.delete(&alice).await?;
    println!(
        "   copied to {archived} (metadata kept: {:?}); original exists: {}",
        store.head(&archived).await?.metadata,
        store.exists(&alice).await?
    );

    step("7. Bad input is refused before any request");
    let before = store.requests();
    for bad in ["users/../secrets", "id=a\u{7}b"] {
        if let Err(e) = Key::parse(bad) {
            println!("   {e}");
        }
    }
    if let Err(e) = store
        .put(&alice, &Metadata::new().with("Name", "upper"), "{}".into())
        .await
    {
        println!("   {e}");
    }
    println!(
        "   requests made meanwhile: {}",
        store.requests().since(&before).total()
    );

    step("8. What it cost");
    let stats = store.requests();
    println!("   {stats}");
    println!("   in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}

/// One increment with retries; returns how many conflicts it lost first.
async fn increment(store: &Store, key: &Key) -> Result<u32> {
    let mut conflicts = 0;
    loop {
        let attempt = match store.get(key).await {
            Ok(object) => {
                let value: u64 = String::from_utf8_lossy(&object.body).parse().unwrap_or(0);
                store
                    .update(
                        key,
                        &Metadata::new(),
                        (value + 1).to_string().into(),
                        &object.head.etag,
                    )
                    .await
            }
            Err(Error::NotFound { .. }) => store.create(key, &Metadata::new(), "1".into()).await,
            Err(e) => return Err(e),
        };
        match attempt {
            Ok(_) => return Ok(conflicts),
            Err(e) if e.is_conflict() => {
                conflicts += 1;
                tokio::task::yield_now().await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn step(title: &str) {
    println!("\n{title}");
}
