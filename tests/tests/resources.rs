//! The resource model on memory and a local folder (and a smaller set on the S3 test server):
//! CRUD, validation, secrets, ids, timestamps, paranoid, versioning, bulk operations, listing,
//! paging, queries, behaviors and schema versions.

use std::collections::BTreeSet;

use s3db_core::codec::Behavior;
use s3db_core::resource::IdStrategy;
use s3db_core::testing::TestStore;
use s3db_core::{Database, Error, Filter, Page, RequestKind, ResourceConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

type TestResult = Result<(), Error>;

async fn db_on(t: &TestStore) -> Database {
    Database::builder()
        .connection(t.conn.clone())
        .passphrase("correct horse battery staple")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", t.conn))
}

fn users() -> ResourceConfig {
    ResourceConfig::new("users")
        .attribute("name", "string|required|min:2")
        .attribute("email", "email|required")
        .attribute("region", "string")
        .attribute("age", "number|min:0")
        .attribute("bio", "string")
        .attribute("api_key", "secret")
        .partition("byRegion", ["region"])
        .behavior(Behavior::BodyOverflow)
        .timestamps(true)
}

macro_rules! on_memory_and_file {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> super::TestResult {
                    let t = s3db_core::testing::TestStore::memory(stringify!($name));
                    super::$name(t).await
                }
            )*
        }
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> super::TestResult {
                    let t = s3db_core::testing::TestStore::file(stringify!($name));
                    super::$name(t).await
                }
            )*
        }
    };
}

on_memory_and_file!(
    crud,
    validation_collects_every_field_and_writes_nothing,
    secrets_are_encrypted_at_rest,
    ids_and_duplicates,
    timestamps_paranoid_and_versioning,
    update_kinds,
    bulk_operations,
    listing_paging_and_queries,
    behaviors,
    non_ascii_round_trip,
    schema_versions_and_reconnect,
    typed_view,
    definition_view,
);

/// The smaller set on the S3 test server.
mod s3 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crud_on_s3() -> TestResult {
        let Some(t) = TestStore::s3("resources_crud") else {
            return Ok(());
        };
        crud(t).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listing_on_s3() -> TestResult {
        let Some(t) = TestStore::s3("resources_listing") else {
            return Ok(());
        };
        listing_paging_and_queries(t).await
    }
}

async fn crud(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let users = db.create_resource(users()).await?;
    let alice = users
        .insert(json!({"name": "Alice", "email": "a@x.io", "region": "eu", "age": 30, "api_key": "k-1"}))
        .await?;
    assert_eq!(alice.id().len(), 22);
    assert_eq!(alice.get("name"), Some(&json!("Alice")));
    assert!(alice.get("created_at").is_some());

    let before = db.store().requests();
    let got = users.get(alice.id()).await?;
    assert_eq!(
        db.store().requests().since(&before).total(),
        1,
        "get is one request"
    );
    assert_eq!(got.data(), alice.data());
    assert_eq!(got.etag(), alice.etag());
    assert!(users.exists(alice.id()).await?);
    assert!(!users.exists("nobody").await?);

    let updated = users.update(alice.id(), json!({"region": "us"})).await?;
    assert_eq!(updated.get("region"), Some(&json!("us")));
    assert_eq!(updated.get("name"), Some(&json!("Alice")), "update merges");
    assert_eq!(updated.get("api_key"), Some(&json!("k-1")));
    assert_ne!(updated.etag(), alice.etag());

    let in_us = users.query(Filter::eq("region", "us")).await?;
    assert_eq!(in_us.len(), 1);
    assert!(users.query(Filter::eq("region", "eu")).await?.is_empty());

    users.delete(alice.id()).await?;
    assert!(matches!(
        users.get(alice.id()).await,
        Err(Error::NotFound { .. })
    ));
    users.delete(alice.id()).await?; // deleting again is fine
    assert_eq!(users.count().await?, 0);
    assert_eq!(
        users
            .count_partition("byRegion", json!({"region": "us"}))
            .await?,
        0
    );
    Ok(())
}

async fn validation_collects_every_field_and_writes_nothing(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let users = db.create_resource(users()).await?;
    let before = db.store().requests();
    let err = users
        .insert(json!({"name": "B", "email": "not-an-email", "age": -1, "color": "red"}))
        .await
        .err();
    let Some(Error::Validation(errors)) = err else {
        panic!("expected a validation error, got {err:?}");
    };
    let failing: BTreeSet<(String, String)> = errors
        .iter()
        .map(|e| (e.field.clone(), e.rule.clone()))
        .collect();
    for expected in [
        ("name", "min"),
        ("email", "type"),
        ("age", "min"),
        ("color", "unknown"),
    ] {
        assert!(
            failing.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "missing {expected:?} in {failing:?}"
        );
    }
    assert_eq!(
        db.store().requests().since(&before).count(RequestKind::Put),
        0,
        "nothing written"
    );
    assert_eq!(users.count().await?, 0);

    let missing = users.insert(json!({"region": "eu"})).await.err();
    let Some(Error::Validation(errors)) = missing else {
        panic!("{missing:?}")
    };
    let fields: BTreeSet<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, BTreeSet::from(["email", "name"]), "{errors:?}");

    // A bad rule is refused at create_resource, naming the attribute.
    let bad = db
        .create_resource(ResourceConfig::new("bad").attribute("n", "number|min:zero"))
        .await
        .err();
    assert!(
        matches!(bad, Some(Error::BadSchema { ref attribute, .. }) if attribute == "n"),
        "{bad:?}"
    );
    Ok(())
}

async fn secrets_are_encrypted_at_rest(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let users = db.create_resource(users()).await?;
    let rec = users
        .insert(json!({"name": "Carol", "email": "c@x.io", "api_key": "super-secret-value"}))
        .await?;
    // Nothing stored contains the plaintext.
    let key = s3db_core::Key::parse(&format!("resource=users/data/id={}", rec.id()))?;
    let raw = t.store.get(&key).await?;
    let stored = format!(
        "{:?} {}",
        raw.head.metadata,
        String::from_utf8_lossy(&raw.body)
    );
    assert!(!stored.contains("super-secret-value"), "{stored}");
    assert_eq!(
        users.get(rec.id()).await?.get("api_key"),
        Some(&json!("super-secret-value"))
    );

    // Another connection with the wrong passphrase gets a typed error, not garbage.
    let wrong = Database::builder()
        .connection(t.conn.clone())
        .passphrase("wrong")
        .connect()
        .await?;
    let users_wrong = wrong
        .resource("users")
        .unwrap_or_else(|| panic!("users is registered"));
    let err = users_wrong.get(rec.id()).await.err();
    assert!(
        matches!(err, Some(Error::SecretDecryption { .. })),
        "{err:?}"
    );

    // Without a passphrase, a resource with secrets cannot be created.
    let plain = Database::connect(&t.conn.to_string_with_secrets()).await?;
    let err = plain
        .create_resource(ResourceConfig::new("vault").attribute("pin", "secret"))
        .await
        .err();
    assert!(matches!(err, Some(Error::BadSchema { .. })), "{err:?}");
    Ok(())
}

async fn ids_and_duplicates(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let a = db
        .create_resource(
            ResourceConfig::new("a")
                .attribute("v", "number")
                .id_strategy(IdStrategy::UuidV7),
        )
        .await?;
    let b = db
        .create_resource(
            ResourceConfig::new("b")
                .attribute("v", "number")
                .id_strategy(IdStrategy::Ulid),
        )
        .await?;
    let c = db
        .create_resource(
            ResourceConfig::new("c")
                .attribute("v", "number")
                .id_strategy(IdStrategy::custom(|| {
                    format!("c-{}", rand::random::<u32>())
                })),
        )
        .await?;
    assert_eq!(a.insert(json!({"v": 1})).await?.id().len(), 36);
    assert_eq!(b.insert(json!({"v": 1})).await?.id().len(), 26);
    assert!(c.insert(json!({"v": 1})).await?.id().starts_with("c-"));

    a.insert(json!({"id": "fixed", "v": 1})).await?;
    let dup = a.insert(json!({"id": "fixed", "v": 2})).await.err();
    assert!(matches!(dup, Some(Error::AlreadyExists { .. })), "{dup:?}");
    assert_eq!(
        a.get("fixed").await?.get("v"),
        Some(&json!(1)),
        "the first stays"
    );
    let bad = a.insert_with_id("a/b", json!({"v": 1})).await.err();
    assert!(matches!(bad, Some(Error::BadKey { .. })), "{bad:?}");
    let bad = a.insert_with_id("..", json!({"v": 1})).await.err();
    assert!(matches!(bad, Some(Error::BadKey { .. })), "{bad:?}");
    Ok(())
}

async fn timestamps_paranoid_and_versioning(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let docs = db
        .create_resource(
            ResourceConfig::new("docs")
                .attribute("title", "string")
                .timestamps(true)
                .versioning(true),
        )
        .await?;
    let d = docs.insert(json!({"id": "d1", "title": "first"})).await?;
    let created = d.get("created_at").cloned();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let d2 = docs.update("d1", json!({"title": "second"})).await?;
    assert_eq!(d2.get("created_at"), created.as_ref(), "created_at is kept");
    assert_ne!(d2.get("updated_at"), d.get("updated_at"));
    // The previous version is kept.
    let hist = s3db_core::Key::parse("resource=docs/historical/id=d1")?;
    assert!(t.store.exists(&hist).await?);
    docs.delete("d1").await?;
    assert!(t.store.exists(&hist).await?);

    let err = docs.delete_all().await.err();
    assert!(
        matches!(err, Some(Error::Refused { .. })),
        "paranoid by default: {err:?}"
    );
    let scratch = db
        .create_resource(
            ResourceConfig::new("scratch")
                .attribute("v", "number")
                .partition("byV", ["v"])
                .versioning(true)
                .paranoid(false),
        )
        .await?;
    for i in 0..5 {
        scratch
            .insert(json!({"id": format!("s{i}"), "v": i}))
            .await?;
    }
    scratch.update("s0", json!({"v": 10})).await?; // leaves a historical version
    // 5 records + 5 partition references + 1 historical version.
    assert_eq!(scratch.delete_all().await?, 11);
    assert_eq!(scratch.count().await?, 0);
    let left = db
        .store()
        .list_keys(Some(&s3db_core::Key::parse("resource=scratch")?))
        .await?;
    assert!(left.is_empty(), "nothing of the resource is left: {left:?}");
    Ok(())
}

async fn update_kinds(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let users = db.create_resource(users()).await?;
    let u = users
        .insert(json!({"id": "u1", "name": "Dan", "email": "d@x.io", "region": "eu", "age": 40}))
        .await?;

    let patched = users.patch("u1", json!({"age": 41})).await?;
    assert_eq!(patched.get("age"), Some(&json!(41)));
    assert_eq!(patched.get("name"), Some(&json!("Dan")));
    let err = users.patch("u1", json!({"age": -3})).await.err();
    assert!(matches!(err, Some(Error::Validation(_))), "{err:?}");

    let replaced = users
        .replace("u1", json!({"name": "Daniel", "email": "dn@x.io"}))
        .await?;
    assert_eq!(
        replaced.get("region"),
        None,
        "replace drops fields not given"
    );
    assert_eq!(replaced.get("created_at"), u.get("created_at"));

    let upserted = users
        .upsert("u2", json!({"name": "Eve", "email": "e@x.io"}))
        .await?;
    assert_eq!(upserted.get("name"), Some(&json!("Eve")));
    let upserted = users
        .upsert("u2", json!({"name": "Eva", "email": "e@x.io"}))
        .await?;
    assert_eq!(users.get("u2").await?.get("name"), upserted.get("name"));

    let current = users.get("u1").await?;
    users
        .update_if_match("u1", json!({"age": 50}), current.etag())
        .await?;
    let stale = users
        .update_if_match("u1", json!({"age": 60}), current.etag())
        .await
        .err();
    assert!(
        matches!(stale, Some(Error::PreconditionFailed { .. })),
        "{stale:?}"
    );
    assert_eq!(users.get("u1").await?.get("age"), Some(&json!(50)));

    let missing = users.update("nobody", json!({"age": 1})).await.err();
    assert!(
        matches!(missing, Some(Error::NotFound { .. })),
        "{missing:?}"
    );
    let id_change = users.update("u1", json!({"id": "u9"})).await.err();
    assert!(
        matches!(id_change, Some(Error::Validation(_))),
        "{id_change:?}"
    );
    Ok(())
}

async fn bulk_operations(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let users = db.create_resource(users()).await?;
    let items = vec![
        json!({"id": "b1", "name": "Al", "email": "al@x.io"}),
        json!({"id": "b2", "name": "X", "email": "bad"}),
        json!({"id": "b3", "name": "Cy", "email": "cy@x.io"}),
    ];
    let results = users.insert_many(items).await;
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(Error::Validation(_))));
    assert!(results[2].is_ok());
    let got = users.get_many(&["b1", "b2", "b3"]).await;
    assert!(got[0].is_ok() && got[2].is_ok());
    assert!(matches!(got[1], Err(Error::NotFound { .. })));
    let deleted = users.delete_many(&["b1", "b3"]).await;
    assert!(deleted.iter().all(Result::is_ok));
    assert_eq!(users.count().await?, 0);
    Ok(())
}

async fn listing_paging_and_queries(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let users = db.create_resource(users()).await?;
    let regions = ["eu", "us", "ap", "sa"];
    let docs: Vec<Value> = (0..24)
        .map(|i| {
            json!({"id": format!("u{i:02}"), "name": format!("user {i}"), "email": format!("u{i}@x.io"),
                   "region": regions[i % 4], "age": i})
        })
        .collect();
    for r in users.insert_many(docs).await {
        r?;
    }
    assert_eq!(users.count().await?, 24);
    let ids = users.list_ids().await?;
    assert_eq!(ids.len(), 24);
    assert_eq!(ids[0], "u00");
    let all = users.list().await?;
    assert_eq!(
        all.iter().map(|r| r.id().to_owned()).collect::<Vec<_>>(),
        ids
    );

    let mut paged = Vec::new();
    let mut page = users.page(Page::size(10)).await?;
    loop {
        paged.extend(page.items.iter().map(|r| r.id().to_owned()));
        let Some(cursor) = page.next_cursor.clone() else {
            break;
        };
        assert!(page.has_more);
        page = users.page(Page::size(10).after(cursor)).await?;
    }
    assert_eq!(paged, ids);
    let bad = users.page(Page::size(10).after("!!not-ours")).await.err();
    assert!(matches!(bad, Some(Error::BadKey { .. })), "{bad:?}");

    // A query fixed on the partition reads only that partition's prefix.
    let before = db.store().requests();
    let eu = users.query(Filter::eq("region", "eu")).await?;
    let spent = db.store().requests().since(&before);
    assert_eq!(eu.len(), 6);
    assert!(eu.iter().all(|r| r.get("region") == Some(&json!("eu"))));
    assert_eq!(spent.count(RequestKind::List), 1);
    assert_eq!(
        spent.count(RequestKind::Get),
        6,
        "only the partition's records are read"
    );

    let eu_old = users
        .query(Filter::eq("region", "eu").and(Filter::gte("age", 12)))
        .await?;
    assert_eq!(eu_old.len(), 3);
    let young = users.query(Filter::lt("age", 3)).await?;
    assert_eq!(young.len(), 3);
    assert_eq!(
        users
            .list_partition("byRegion", json!({"region": "us"}))
            .await?
            .len(),
        6
    );
    assert_eq!(
        users
            .count_partition("byRegion", json!({"region": "ap"}))
            .await?,
        6
    );
    let unknown = users
        .list_partition("byColor", json!({"color": "red"}))
        .await
        .err();
    assert!(
        matches!(unknown, Some(Error::BadSchema { .. })),
        "{unknown:?}"
    );
    Ok(())
}

async fn behaviors(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let big = "x".repeat(3000);
    let make = |name: &str, b: Behavior| {
        ResourceConfig::new(name)
            .attribute("small", "string")
            .attribute("big", "string")
            .behavior(b)
    };
    // enforce-limits refuses what does not fit, writing nothing.
    let strict = db
        .create_resource(make("strict", Behavior::EnforceLimits))
        .await?;
    strict.insert(json!({"id": "ok", "small": "s"})).await?;
    let err = strict
        .insert(json!({"id": "no", "small": "s", "big": big}))
        .await
        .err();
    assert!(matches!(err, Some(Error::MetadataLimit { .. })), "{err:?}");
    assert!(!strict.exists("no").await?);

    // user-managed writes it to the body and says so.
    let managed = db
        .create_resource(make("managed", Behavior::UserManaged))
        .await?;
    let mut events = managed.subscribe();
    managed
        .insert(json!({"id": "m", "small": "s", "big": big}))
        .await?;
    assert_eq!(managed.get("m").await?.get("big"), Some(&json!(big)));
    let mut saw_overflow = false;
    while let Ok(event) = events.try_recv() {
        saw_overflow |= matches!(
            event,
            s3db_core::resource::hooks::Event::MetadataOverflow { .. }
        );
    }
    assert!(saw_overflow);

    // body-overflow and body-only round-trip big fields.
    for (name, b) in [
        ("overflow", Behavior::BodyOverflow),
        ("bodyonly", Behavior::BodyOnly),
    ] {
        let r = db.create_resource(make(name, b)).await?;
        r.insert(json!({"id": "r", "small": "s", "big": big}))
            .await?;
        let got = r.get("r").await?;
        assert_eq!(got.get("big"), Some(&json!(big)), "{name}");
        assert_eq!(got.get("small"), Some(&json!("s")), "{name}");
    }

    // truncate-data keeps what fits and reports the rest.
    let trunc = db
        .create_resource(make("trunc", Behavior::TruncateData))
        .await?;
    let rec = trunc
        .insert(json!({"id": "t", "small": "s", "big": big}))
        .await?;
    let stored = trunc.get("t").await?;
    let kept = stored
        .get("big")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        kept.len() < big.len() && big.starts_with(kept),
        "kept {} bytes",
        kept.len()
    );
    assert_eq!(
        rec.get("big"),
        stored.get("big"),
        "insert returns what was stored"
    );
    Ok(())
}

async fn non_ascii_round_trip(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let notes = db
        .create_resource(
            ResourceConfig::new("notes")
                .attribute("text", "string")
                .attribute("camelCase", "string")
                .attribute("tags", "array|items:string")
                .attribute("meta", "json")
                .attribute("address", json!({"city": "string", "zip": "string"})),
        )
        .await?;
    let doc = json!({
        "text": "héllo wörld — 你好 🎉  ", "camelCase": "Ünïcode", "tags": ["é", " lead", "trail "],
        "meta": {"nested": [1, 2.5, -3, null, true, "ü"]}, "address": {"city": "São Paulo", "zip": "01000"}
    });
    let rec = notes.insert(doc.clone()).await?;
    let got = notes.get(rec.id()).await?;
    let mut expected = doc.as_object().cloned().unwrap_or_default();
    expected.remove("id");
    assert_eq!(got.data(), &expected);
    Ok(())
}

async fn schema_versions_and_reconnect(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let v1 = db
        .create_resource(ResourceConfig::new("items").attribute("name", "string"))
        .await?;
    assert_eq!(v1.version(), "v1");
    let same = db
        .create_resource(ResourceConfig::new("items").attribute("name", "string"))
        .await?;
    assert_eq!(
        same.version(),
        "v1",
        "the same definition does not mint a version"
    );
    v1.insert(json!({"id": "i1", "name": "old"})).await?;
    let v2 = db
        .create_resource(
            ResourceConfig::new("items")
                .attribute("name", "string")
                .attribute("price", "number|default:0"),
        )
        .await?;
    assert_eq!(v2.version(), "v2");
    let old = v2.get("i1").await?;
    assert_eq!(old.get("name"), Some(&json!("old")));
    assert_eq!(old.schema_version(), "v1");
    v2.insert(json!({"id": "i2", "name": "new"})).await?;
    assert_eq!(
        v2.get("i2").await?.get("price"),
        Some(&json!(0)),
        "default applied"
    );

    // A version that drops an attribute: old records lose it on their next update.
    let v3 = db
        .create_resource(ResourceConfig::new("items").attribute("price", "number|default:0"))
        .await?;
    assert_eq!(v3.version(), "v3");
    let updated = v3.update("i1", json!({"price": 5})).await?;
    assert_eq!(
        updated.get("name"),
        None,
        "a dropped attribute goes away on update"
    );
    assert_eq!(updated.get("price"), Some(&json!(5)));
    let v4 = db
        .create_resource(
            ResourceConfig::new("items")
                .attribute("name", "string")
                .attribute("price", "number|default:0"),
        )
        .await?;
    assert_eq!(
        v4.version(),
        "v4",
        "going back to an earlier definition is a new version"
    );

    // Another connection sees the resources and their data.
    let again = db_on(&t).await;
    let items = again
        .resource("items")
        .unwrap_or_else(|| panic!("items is registered"));
    assert_eq!(items.version(), "v4");
    assert_eq!(items.count().await?, 2);
    assert_eq!(again.resources(), vec!["items".to_owned()]);
    Ok(())
}

/// What plugins read of a resource: its definition, current version included.
async fn definition_view(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let users = db.create_resource(users()).await?;
    let d = users.definition();
    assert_eq!(d.version(), "v1");
    assert_eq!(d.secret_paths(), ["api_key"]);
    assert_eq!(d.behavior(), Behavior::BodyOverflow);
    assert!(d.timestamps() && d.paranoid() && !d.versioning());
    let partitions: Vec<(&str, &[String])> = d
        .partitions()
        .iter()
        .map(|p| (p.name(), p.fields()))
        .collect();
    assert_eq!(partitions, [("byRegion", &["region".to_owned()][..])]);
    let names: Vec<&str> = d
        .schema()
        .attributes()
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains(&"api_key") && names.contains(&"email"));

    // A new version of the definition is what the same handle shows next.
    db.create_resource(
        ResourceConfig::new("users")
            .attribute("name", "string")
            .versioning(true)
            .paranoid(false),
    )
    .await?;
    let d2 = users.definition();
    assert_eq!(d2.version(), "v2");
    assert!(d2.secret_paths().is_empty() && d2.partitions().is_empty());
    assert!(d2.versioning() && !d2.paranoid() && !d2.timestamps());
    assert_eq!(
        d.version(),
        "v1",
        "a definition read before stays as it was"
    );
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    name: String,
    email: String,
    region: Option<String>,
}

async fn typed_view(t: TestStore) -> TestResult {
    let db = db_on(&t).await;
    let users = db.create_resource(users().timestamps(false)).await?;
    let typed = users.typed::<User>();
    let u = typed
        .insert(&User {
            id: Some("t1".into()),
            name: "Tia".into(),
            email: "t@x.io".into(),
            region: Some("eu".into()),
        })
        .await?;
    assert_eq!(u.id.as_deref(), Some("t1"));
    let got: User = typed.get("t1").await?;
    assert_eq!(got, u);
    let moved = typed.update("t1", json!({"region": "us"})).await?;
    assert_eq!(moved.region.as_deref(), Some("us"));
    assert_eq!(typed.query(Filter::eq("region", "us")).await?, vec![moved]);
    Ok(())
}
