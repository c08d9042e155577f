//! `secret` attributes in archives: encrypted under the backup passphrase, refused without
//! configuration, in clear only on explicit opt-in; the passphrase never leaks.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use s3db_backup::{
    BackupError, BackupInfo, BackupKind, BackupPlugin, ConfigError, RestoreMode, RestoreOptions,
    SecretsMode,
};
use s3db_core::testing::TestStore;
use s3db_core::{ConnectionString, Database, RequestKind, Resource, ResourceConfig};
use serde_json::{Value, json};

const BACKUP_PASS: &str = "backup-passphrase-Zq81";
const TOKEN: &str = "tok-PLAINTEXT-a1b2c3";
const PASSWORD: &str = "pw-PLAINTEXT-d4e5f6";
const LATER_TOKEN: &str = "tok-PLAINTEXT-later-9z";

fn accounts_config() -> ResourceConfig {
    ResourceConfig::new("accounts")
        .attribute("name", "string|required")
        .attribute("token", "secret")
        .attribute("creds", json!({"user": "string", "password": "secret"}))
}

async fn connect_with(conn: &ConnectionString, db_passphrase: &str) -> s3db_core::Result<Database> {
    Database::builder()
        .connection(conn.clone())
        .passphrase(db_passphrase)
        .connect()
        .await
}

fn builder(dir: &Path) -> s3db_backup::BackupBuilder {
    BackupPlugin::builder()
        .filesystem(format!("{}/{{date}}", dir.display()))
        .temp_dir(dir.join("tmp"))
}

fn location(info: &BackupInfo) -> PathBuf {
    PathBuf::from(
        info.drivers[0]
            .location
            .clone()
            .unwrap_or_else(|| panic!("no location")),
    )
}

/// The archive after gunzip: the whole tar stream, names and contents.
fn tar_bytes(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("gunzip: {e}"));
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Copies a backup's status record into another database, as a user moving backups would.
async fn copy_status(from: &Database, to: &Database, id: &str) -> s3db_core::Result<()> {
    let meta = |db: &Database| {
        db.resource(s3db_backup::METADATA_RESOURCE)
            .unwrap_or_else(|| panic!("meta"))
    };
    let rec = meta(from).get(id).await?;
    meta(to).insert_with_id(id, rec.data()).await?;
    Ok(())
}

async fn seed_accounts(accounts: &Resource) -> s3db_core::Result<()> {
    accounts
        .insert(json!({"id": "a1", "name": "Ann", "token": TOKEN, "creds": {"user": "ann", "password": PASSWORD}}))
        .await?;
    accounts
        .insert(json!({"id": "a2", "name": "Bob", "token": "tok-PLAINTEXT-bob"}))
        .await?;
    Ok(())
}

/// A backup of secrets holds no plaintext; another database (its own database passphrase, the
/// same backup passphrase) gets the plaintext back, full then incremental; the wrong backup
/// passphrase, or none, is refused before any write.
async fn encrypted_cycle(
    source: TestStore,
    target: TestStore,
    other: fn(&str) -> TestStore,
) -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = connect_with(&source.conn, "database-one-pass").await?;
    let backup = db
        .use_plugin(
            builder(dir.path())
                .secrets_passphrase(BACKUP_PASS)
                .build()?,
        )
        .await?;
    let accounts = db.create_resource(accounts_config()).await?;
    let notes = db.create_resource(common::notes()).await?;
    seed_accounts(&accounts).await?;
    notes.insert(json!({"id": "n1", "text": "hello"})).await?;

    let full = backup.backup(BackupKind::Full).await?;
    assert_eq!(full.secrets, SecretsMode::Encrypted);
    assert_eq!(full.resources["accounts"].records, 2);
    let bytes = tar_bytes(&location(&full));
    for plain in [TOKEN, PASSWORD, "tok-PLAINTEXT-bob", BACKUP_PASS] {
        assert!(!contains(&bytes, plain), "{plain} is in the archive");
    }
    let archive = read_archive(&location(&full));
    let manifest: Value = serde_json::from_str(&archive["manifest.json"])?;
    assert_eq!(manifest["secrets"]["mode"], "encrypted");
    assert_eq!(
        manifest["secrets"]["paths"]["accounts"],
        json!(["creds.password", "token"])
    );
    assert!(manifest["secrets"]["kdf"]["salt"].is_string());
    let line = archive
        .iter()
        .find(|(k, _)| k.starts_with("resources/accounts/records/"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let first: Value = serde_json::from_str(line.lines().next().unwrap_or_default())?;
    assert!(
        first["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("s1:")),
        "{first}"
    );
    assert_eq!(first["creds"]["user"], "ann", "other fields stay readable");
    // Each archive has its own salt.
    let second = backup.full().await?;
    let second_manifest: Value =
        serde_json::from_str(&read_archive(&location(&second))["manifest.json"])?;
    assert_ne!(
        manifest["secrets"]["kdf"]["salt"],
        second_manifest["secrets"]["kdf"]["salt"]
    );
    backup.delete(&second.id).await?;
    // The status record says how secrets are held, and nothing of the passphrase.
    let stored = db
        .resource(s3db_backup::METADATA_RESOURCE)
        .unwrap_or_else(|| panic!("meta"))
        .get(&full.id)
        .await?;
    assert_eq!(stored.data()["secrets"], "encrypted");
    assert!(!stored.to_json().to_string().contains(BACKUP_PASS));

    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    accounts.update("a1", json!({"token": LATER_TOKEN})).await?;
    accounts.delete("a2").await?;
    let inc = backup.incremental().await?;
    assert_eq!(inc.secrets, SecretsMode::Encrypted);
    assert_eq!(
        (
            inc.resources["accounts"].records,
            inc.resources["accounts"].deleted
        ),
        (1, 1)
    );
    assert!(!contains(&tar_bytes(&location(&inc)), LATER_TOKEN));

    // Another database, its own database passphrase, the same backup passphrase.
    let db2 = connect_with(&target.conn, "database-two-pass").await?;
    let p2 = db2
        .use_plugin(
            builder(dir.path())
                .secrets_passphrase(BACKUP_PASS)
                .build()?,
        )
        .await?;
    let accounts2 = db2.create_resource(accounts_config()).await?;
    db2.create_resource(common::notes()).await?;
    copy_status(&db, &db2, &full.id).await?;
    copy_status(&db, &db2, &inc.id).await?;
    let report = p2.restore(&full.id, RestoreMode::Replace).await?;
    assert_eq!(report.total().failed, 0, "{:?}", report.errors);
    assert_eq!(report.resources["accounts"].written, 2);
    let a1 = accounts2.get("a1").await?;
    assert_eq!(a1.data()["token"], TOKEN);
    assert_eq!(a1.data()["creds"]["password"], PASSWORD);
    assert_eq!(
        accounts2.get("a2").await?.data()["token"],
        "tok-PLAINTEXT-bob"
    );
    let report = p2.restore(&inc.id, RestoreMode::Merge).await?;
    assert_eq!(
        (
            report.resources["accounts"].written,
            report.resources["accounts"].deleted
        ),
        (1, 1)
    );
    assert_eq!(accounts2.get("a1").await?.data()["token"], LATER_TOKEN);
    assert_eq!(
        accounts2.get("a1").await?.data()["creds"]["password"],
        PASSWORD
    );
    assert!(!accounts2.exists("a2").await?);
    // Skip mode decrypts too.
    accounts2.delete("a1").await?;
    let report = p2.restore(&full.id, RestoreMode::Skip).await?;
    assert_eq!(report.resources["accounts"].written, 2);
    assert_eq!(accounts2.get("a1").await?.data()["token"], TOKEN);

    // A third database: wrong backup passphrase, then none. Refused, zero writes.
    for (i, (plugin, wrong)) in [
        (
            builder(dir.path()).secrets_passphrase("not-the-passphrase"),
            true,
        ),
        (builder(dir.path()), false),
        (builder(dir.path()).plaintext_secrets(true), false),
    ]
    .into_iter()
    .enumerate()
    {
        let other = other(&format!("bk-sec-other-{i}"));
        let db3 = connect_with(&other.conn, "database-three-pass").await?;
        let p3 = db3.use_plugin(plugin.build()?).await?;
        let accounts3 = db3.create_resource(accounts_config()).await?;
        db3.create_resource(common::notes()).await?;
        copy_status(&db, &db3, &full.id).await?;
        let before = db3.store().requests().count(RequestKind::Put);
        for mode in [RestoreMode::Merge, RestoreMode::Replace, RestoreMode::Skip] {
            let err = p3.restore(&full.id, mode).await;
            if wrong {
                assert!(
                    matches!(&err, Err(BackupError::WrongSecretsPassphrase { id }) if *id == full.id),
                    "{err:?}"
                );
            } else {
                assert!(
                    matches!(&err, Err(BackupError::SecretsPassphraseRequired { id }) if *id == full.id),
                    "{err:?}"
                );
            }
            let text = err.map(|_| ()).err().map(|e| format!("{e} {e:?}"));
            assert!(!text.unwrap_or_default().contains("not-the-passphrase"));
        }
        assert_eq!(
            db3.store().requests().count(RequestKind::Put),
            before,
            "nothing was written"
        );
        assert_eq!(accounts3.count().await?, 0);
        if wrong {
            let core: s3db_core::Error =
                BackupError::WrongSecretsPassphrase { id: "x".into() }.into();
            assert!(matches!(core, s3db_core::Error::Plugin { .. }), "{core:?}");
        } else {
            // Resources without secrets restore from an encrypted archive without the passphrase.
            let report = p3
                .restore(
                    &full.id,
                    RestoreOptions::new(RestoreMode::Merge).resources(["notes"]),
                )
                .await?;
            assert_eq!(report.resources["notes"].written, 1);
        }
        db3.disconnect().await?;
    }
    db.disconnect().await?;
    db2.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn secrets_are_encrypted_in_archives_memory() -> TestResult {
    encrypted_cycle(
        TestStore::memory("bk-sec"),
        TestStore::memory("bk-sec-target"),
        TestStore::memory,
    )
    .await
}

#[tokio::test]
async fn secrets_are_encrypted_in_archives_file() -> TestResult {
    encrypted_cycle(
        TestStore::file("bk-sec"),
        TestStore::file("bk-sec-target"),
        TestStore::file,
    )
    .await
}

#[tokio::test]
async fn secrets_are_encrypted_in_archives_on_the_s3_server() -> TestResult {
    let Some(ts) = TestStore::s3("bk-sec") else {
        return Ok(());
    };
    encrypted_cycle(ts, TestStore::memory("bk-sec-s3-target"), TestStore::memory).await
}

async fn refused_without_configuration(ts: TestStore) -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = connect_with(&ts.conn, "database-pass").await?;
    let backup = db.use_plugin(builder(dir.path()).build()?).await?;
    let accounts = db.create_resource(accounts_config()).await?;
    let users = db.create_resource(common::users()).await?;
    seed_accounts(&accounts).await?;
    seed(&users, 2).await?;
    let before = db.store().requests().count(RequestKind::Put);
    let mut events = db.subscribe();
    for attempt in [
        backup.backup(BackupKind::Full).await,
        backup.incremental().await,
        backup
            .backup_resources(BackupKind::Full, ["users", "accounts"])
            .await,
    ] {
        let Err(e) = attempt else {
            panic!("expected SecretsNotConfigured, got {attempt:?}")
        };
        assert!(
            matches!(&e, BackupError::SecretsNotConfigured { resources } if resources == &["accounts"]),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("accounts")
                && text.contains("secrets_passphrase")
                && text.contains("plaintext_secrets"),
            "{text}"
        );
    }
    assert_eq!(
        db.store().requests().count(RequestKind::Put),
        before,
        "nothing recorded, nothing uploaded"
    );
    assert!(backup.list().await?.is_empty());
    assert!(backup_events(&mut events).is_empty());
    let archives = walk(dir.path());
    assert!(archives.is_empty(), "{archives:?}");
    // Resources without secrets back up as before.
    let ok = backup.backup_resources(BackupKind::Full, ["users"]).await?;
    assert_eq!(ok.secrets, SecretsMode::None);
    assert_eq!(ok.resources["users"].records, 2);
    db.disconnect().await?;
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn secrets_without_configuration_are_refused_memory() -> TestResult {
    refused_without_configuration(TestStore::memory("bk-sec-refuse")).await
}

#[tokio::test]
async fn secrets_without_configuration_are_refused_file() -> TestResult {
    refused_without_configuration(TestStore::file("bk-sec-refuse")).await
}

async fn plaintext_opt_in(source: TestStore, target: TestStore) -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = connect_with(&source.conn, "database-one-pass").await?;
    let backup = db
        .use_plugin(builder(dir.path()).plaintext_secrets(true).build()?)
        .await?;
    let accounts = db.create_resource(accounts_config()).await?;
    seed_accounts(&accounts).await?;
    let full = backup.full().await?;
    assert_eq!(full.secrets, SecretsMode::Plaintext);
    assert!(
        contains(&tar_bytes(&location(&full)), TOKEN),
        "in clear, as asked"
    );
    let manifest: Value = serde_json::from_str(&read_archive(&location(&full))["manifest.json"])?;
    assert_eq!(manifest["secrets"]["mode"], "plaintext");
    assert!(manifest["secrets"].get("kdf").is_none());

    // Restores without a passphrase (no secrets configuration at all).
    let db2 = connect_with(&target.conn, "database-two-pass").await?;
    let p2 = db2.use_plugin(builder(dir.path()).build()?).await?;
    let accounts2 = db2.create_resource(accounts_config()).await?;
    copy_status(&db, &db2, &full.id).await?;
    let report = p2.restore(&full.id, RestoreMode::Merge).await?;
    assert_eq!(report.resources["accounts"].written, 2);
    assert_eq!(report.total().failed, 0, "{:?}", report.errors);
    let a1 = accounts2.get("a1").await?;
    assert_eq!(a1.data()["token"], TOKEN);
    assert_eq!(a1.data()["creds"]["password"], PASSWORD);
    db.disconnect().await?;
    db2.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn plaintext_opt_in_round_trips_memory() -> TestResult {
    plaintext_opt_in(
        TestStore::memory("bk-sec-plain"),
        TestStore::memory("bk-sec-plain-t"),
    )
    .await
}

#[tokio::test]
async fn plaintext_opt_in_round_trips_file() -> TestResult {
    plaintext_opt_in(
        TestStore::file("bk-sec-plain"),
        TestStore::file("bk-sec-plain-t"),
    )
    .await
}

#[tokio::test]
async fn the_passphrase_never_shows_in_debug_output() -> TestResult {
    let secret = "sup3r-s3cret-backup-passphrase";
    let b = BackupPlugin::builder()
        .filesystem("./backups")
        .secrets_passphrase(secret);
    let shown = format!("{b:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("secrets_passphrase"), "{shown}");
    let plugin = b.build()?;
    let shown = format!("{plugin:?} {plugin:#?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("Encrypt"), "{shown}");

    let ts = TestStore::memory("bk-sec-debug");
    let db = connect(&ts.conn).await?;
    let installed = db.use_plugin(plugin).await?;
    let shown = format!("{installed:?}");
    assert!(!shown.contains(secret), "{shown}");
    db.disconnect().await?;
    Ok(())
}

#[test]
fn secrets_options_are_validated() {
    let ok = || BackupPlugin::builder().filesystem("./b");
    assert_eq!(
        ok().secrets_passphrase("").build().err(),
        Some(ConfigError::EmptySecretsPassphrase)
    );
    assert_eq!(
        ok().secrets_passphrase("p")
            .plaintext_secrets(true)
            .build()
            .err(),
        Some(ConfigError::ConflictingSecretsOptions)
    );
    assert!(ok().plaintext_secrets(false).build().is_ok());
}
