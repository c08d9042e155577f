//! `secret` attributes in archives.
//!
//! Records are read through the resource API, which decrypts `secret` attributes. Before a
//! record goes into an archive its secrets are encrypted again, under a key derived from the
//! plugin's *backup* passphrase and a random salt made for that archive (PBKDF2-HMAC-SHA256, then
//! AES-256-GCM: core's [`s3db_core::secret`]). The manifest keeps the salt, the dotted paths
//! encrypted per resource and a small value encrypted under the key (the *check*), never the
//! passphrase. A restore derives the key from the configured passphrase and the archive's salt
//! and decrypts the check before anything is written: a wrong passphrase is refused up front.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use s3db_core::connection::SecretString;
use s3db_core::schema::Schema;
use s3db_core::secret::{self, PBKDF2_ROUNDS, SecretKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::archive::hex;
use crate::error::{BackupError, BackupResult};
use crate::metadata::SecretsMode;

/// The key derivation written in manifests (the only one read).
const KDF_ALGORITHM: &str = "pbkdf2-hmac-sha256";
/// What the check value decrypts to under the right key.
const CHECK_TEXT: &str = "s3db-backup secrets check v1";
/// The field name the check is encrypted under (only named in errors).
const CHECK_FIELD: &str = "manifest.secrets.check";

/// What the configuration says about secrets.
#[derive(Clone, Default)]
pub(crate) enum SecretsPolicy {
    /// Resources with secrets are refused (nothing configured).
    #[default]
    Refuse,
    /// Secrets go into archives in clear (explicit opt-in).
    Plaintext,
    /// Secrets are encrypted under a key derived from this passphrase.
    Encrypt(SecretString),
}

impl fmt::Debug for SecretsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretsPolicy::Refuse => f.write_str("Refuse"),
            SecretsPolicy::Plaintext => f.write_str("Plaintext"),
            SecretsPolicy::Encrypt(_) => f.write_str("Encrypt(passphrase: ***)"),
        }
    }
}

/// How the archive's key was derived; stored in the manifest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kdf {
    /// [`KDF_ALGORITHM`].
    algorithm: String,
    /// PBKDF2 rounds.
    rounds: u32,
    /// The archive's salt, hex.
    salt: String,
    /// [`CHECK_TEXT`] encrypted under the key.
    check: String,
}

impl fmt::Debug for Kdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kdf")
            .field("algorithm", &self.algorithm)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

/// The manifest's account of secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManifestSecrets {
    /// How they are held.
    #[serde(default)]
    pub(crate) mode: SecretsMode,
    /// For `encrypted`: how to get the key back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kdf: Option<Kdf>,
    /// Per resource, the dotted paths of its secret attributes (resources without any are
    /// absent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) paths: BTreeMap<String, Vec<String>>,
}

/// Derives a key on the blocking pool (PBKDF2 is deliberately slow).
async fn derive(passphrase: &SecretString, salt: Vec<u8>) -> BackupResult<SecretKey> {
    let passphrase = passphrase.clone();
    tokio::task::spawn_blocking(move || SecretKey::derive(passphrase.expose(), &salt))
        .await
        .map_err(|e| {
            BackupError::Core(s3db_core::Error::Refused {
                operation: "backup key derivation",
                reason: e.to_string(),
            })
        })
}

/// The secrets side of one backup being made: the key is derived when the first resource with
/// secrets is archived.
pub(crate) struct BackupSecrets<'a> {
    policy: &'a SecretsPolicy,
    key: Option<(SecretKey, Kdf)>,
    paths: BTreeMap<String, Vec<String>>,
}

impl<'a> BackupSecrets<'a> {
    pub(crate) fn new(policy: &'a SecretsPolicy) -> Self {
        Self {
            policy,
            key: None,
            paths: BTreeMap::new(),
        }
    }

    /// Registers a resource's secret paths; returns the key to encrypt its records with (none:
    /// no secrets, or plaintext opted in).
    ///
    /// # Errors
    /// [`BackupError::SecretsNotConfigured`] if it has secrets and nothing is configured.
    pub(crate) async fn resource(
        &mut self,
        resource: &str,
        paths: Vec<String>,
    ) -> BackupResult<Option<SecretKey>> {
        if paths.is_empty() {
            return Ok(None);
        }
        let passphrase = match self.policy {
            SecretsPolicy::Refuse => {
                return Err(BackupError::SecretsNotConfigured {
                    resources: vec![resource.to_owned()],
                });
            }
            SecretsPolicy::Plaintext => {
                self.paths.insert(resource.to_owned(), paths);
                return Ok(None);
            }
            SecretsPolicy::Encrypt(passphrase) => passphrase,
        };
        self.paths.insert(resource.to_owned(), paths);
        if self.key.is_none() {
            let salt = SecretKey::new_salt();
            let key = derive(passphrase, salt.to_vec()).await?;
            let check = key.encrypt(CHECK_FIELD, CHECK_TEXT)?;
            let kdf = Kdf {
                algorithm: KDF_ALGORITHM.to_owned(),
                rounds: PBKDF2_ROUNDS,
                salt: hex(&salt),
                check,
            };
            self.key = Some((key, kdf));
        }
        Ok(self.key.as_ref().map(|(key, _)| key.clone()))
    }

    /// What the manifest says.
    pub(crate) fn manifest(self) -> ManifestSecrets {
        let (mode, kdf) = match (self.key, self.paths.is_empty()) {
            (Some((_, kdf)), _) => (SecretsMode::Encrypted, Some(kdf)),
            (None, false) => (SecretsMode::Plaintext, None),
            (None, true) => (SecretsMode::None, None),
        };
        ManifestSecrets {
            mode,
            kdf,
            paths: self.paths,
        }
    }
}

/// Encrypts a record's secrets (as read: plaintext) for the archive.
pub(crate) fn encrypt_record(
    schema: &Schema,
    doc: &mut Map<String, Value>,
    key: &SecretKey,
) -> s3db_core::Result<()> {
    secret::encrypt_fields(schema, doc, key)
}

/// Decrypts, in place, the string values at these dotted paths (what [`encrypt_record`]
/// encrypted; missing, null and non-string values are left alone). Independent of the target
/// resource's current schema: the paths are those of the archive.
///
/// # Errors
/// [`s3db_core::Error::SecretDecryption`] naming the path; `doc` may then be partly decrypted
/// (the caller drops it).
pub(crate) fn decrypt_record(
    doc: &mut Map<String, Value>,
    paths: &[String],
    key: &SecretKey,
) -> s3db_core::Result<()> {
    for path in paths {
        let mut parts = path.split('.').peekable();
        let mut object = &mut *doc;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                if let Some(Value::String(text)) = object.get_mut(part) {
                    *text = key.decrypt(path, text)?;
                }
                break;
            }
            match object.get_mut(part) {
                Some(Value::Object(inner)) => object = inner,
                _ => break,
            }
        }
    }
    Ok(())
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// The key to decrypt the restored resources' secrets with, checked against the archive's check
/// value — before anything is written. `None` when nothing restored holds encrypted secrets.
///
/// # Errors
/// [`BackupError::SecretsPassphraseRequired`], [`BackupError::WrongSecretsPassphrase`],
/// [`BackupError::CorruptArchive`] (unreadable key derivation).
pub(crate) async fn restore_key(
    policy: &SecretsPolicy,
    manifest: &ManifestSecrets,
    id: &str,
    resources: &BTreeSet<String>,
) -> BackupResult<Option<SecretKey>> {
    if manifest.mode != SecretsMode::Encrypted
        || !manifest
            .paths
            .iter()
            .any(|(r, paths)| resources.contains(r) && !paths.is_empty())
    {
        return Ok(None);
    }
    let SecretsPolicy::Encrypt(passphrase) = policy else {
        return Err(BackupError::SecretsPassphraseRequired { id: id.to_owned() });
    };
    let corrupt = |reason: &str| BackupError::CorruptArchive {
        id: id.to_owned(),
        reason: reason.to_owned(),
    };
    let kdf = manifest
        .kdf
        .as_ref()
        .ok_or_else(|| corrupt("the manifest says secrets are encrypted but has no key salt"))?;
    if kdf.algorithm != KDF_ALGORITHM || kdf.rounds != PBKDF2_ROUNDS {
        return Err(corrupt(&format!(
            "secrets were encrypted with key derivation {} ({} rounds); this version uses {KDF_ALGORITHM} ({PBKDF2_ROUNDS} rounds)",
            kdf.algorithm, kdf.rounds
        )));
    }
    let salt = unhex(&kdf.salt).ok_or_else(|| corrupt("the secrets salt is not hex"))?;
    let key = derive(passphrase, salt).await?;
    match key.decrypt(CHECK_FIELD, &kdf.check) {
        Ok(text) if text == CHECK_TEXT => Ok(Some(key)),
        _ => Err(BackupError::WrongSecretsPassphrase { id: id.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0x7f, 0xff, 0x10];
        assert_eq!(unhex(&hex(&bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é0"), None);
    }

    #[test]
    fn decrypt_record_follows_nested_paths_and_skips_the_rest() {
        let key = SecretKey::derive("p", b"0123456789abcdef");
        let sealed = |t: &str| key.encrypt("f", t).unwrap_or_else(|e| panic!("{e}"));
        let Value::Object(mut doc) = json!({
            "token": sealed("t"),
            "account": {"password": sealed("pw"), "user": "u"},
            "empty": null,
        }) else {
            panic!("object")
        };
        let paths = ["token", "account.password", "empty", "missing.deep"].map(str::to_owned);
        decrypt_record(&mut doc, &paths, &key).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            Value::Object(doc),
            json!({"token": "t", "account": {"password": "pw", "user": "u"}, "empty": null})
        );
        let Value::Object(mut plain) = json!({"token": "not encrypted"}) else {
            panic!("object")
        };
        let err = decrypt_record(&mut plain, &paths, &key);
        assert!(
            matches!(&err, Err(s3db_core::Error::SecretDecryption { field }) if field == "token"),
            "{err:?}"
        );
    }

    #[test]
    fn policy_debug_hides_the_passphrase() {
        let p = SecretsPolicy::Encrypt(SecretString::new("hunter2-passphrase"));
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
