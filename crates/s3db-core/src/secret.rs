//! Encryption of `secret` attributes at rest.
//!
//! Secrets are encrypted with AES-256-GCM under a key derived by PBKDF2-HMAC-SHA256
//! ([`PBKDF2_ROUNDS`] rounds) from a passphrase and a per-database salt. Each value gets a fresh
//! random 96-bit nonce, so encrypting the same text twice gives different results. The stored
//! form is ASCII: [`MARKER`] followed by the unpadded URL-safe base64 of
//! `nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//!
//! GCM authenticates the data: a wrong passphrase or an altered value is reported as
//! [`Error::SecretDecryption`], never returned as garbage.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::error::{Error, FieldError, Result};
use crate::schema::{AttributeType, Schema, join_path};

/// PBKDF2-HMAC-SHA256 rounds used by [`SecretKey::derive`].
pub const PBKDF2_ROUNDS: u32 = 100_000;

/// Prefix of an encrypted value (format version 1).
pub const MARKER: &str = "s1:";

/// Length of the random salt made by [`SecretKey::new_salt`].
pub const SALT_LEN: usize = 16;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The longest plaintext AES-GCM can encrypt under one nonce: 2^36 - 32 bytes (64 GiB).
const MAX_PLAINTEXT_LEN: u64 = (1 << 36) - 32;

/// An AES-256-GCM key for secret attributes. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct SecretKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Derives the key from a passphrase and the database's salt with PBKDF2-HMAC-SHA256
    /// ([`PBKDF2_ROUNDS`] rounds). Deliberately slow (tens of milliseconds): derive once per
    /// database and keep the key.
    #[must_use]
    pub fn derive(passphrase: &str, salt: &[u8]) -> SecretKey {
        let mut key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(passphrase.as_bytes(), salt, PBKDF2_ROUNDS, &mut key);
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
        key.fill(0);
        SecretKey { cipher }
    }

    /// A new random salt, to be stored with the database (it is not secret).
    #[must_use]
    pub fn new_salt() -> [u8; SALT_LEN] {
        rand::random()
    }

    /// Encrypts `plaintext` into the stored form `s1:<base64url>` (ASCII), with a fresh random
    /// nonce. `field` only names the attribute in the error.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] (rule `max`) if the plaintext is over 64 GiB, the limit of
    /// AES-GCM.
    pub fn encrypt(&self, field: &str, plaintext: &str) -> Result<String> {
        let too_long = || {
            Error::Validation(vec![FieldError::new(
                field,
                "max",
                "a secret must be shorter than 64 GiB",
            )])
        };
        if plaintext.len() as u64 > MAX_PLAINTEXT_LEN {
            return Err(too_long());
        }
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(&Nonce::from(nonce), plaintext.as_bytes())
            .map_err(|_| too_long())?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!("{MARKER}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Decrypts a value made by [`SecretKey::encrypt`].
    ///
    /// # Errors
    ///
    /// [`Error::SecretDecryption`] naming `field` if the value is not in the stored form, was
    /// encrypted under another key (wrong passphrase or salt) or was altered.
    pub fn decrypt(&self, field: &str, stored: &str) -> Result<String> {
        let fail = || Error::SecretDecryption {
            field: field.to_owned(),
        };
        let sealed = decode(stored).ok_or_else(fail)?;
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN).ok_or_else(fail)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| fail())?;
        let plaintext = self
            .cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| fail())?;
        String::from_utf8(plaintext).map_err(|_| fail())
    }

    /// Whether `stored` has the form of an encrypted value: the [`MARKER`], then base64 of at
    /// least a nonce and a tag. (Whether it decrypts under a given key is another matter.)
    #[must_use]
    pub fn is_encrypted(stored: &str) -> bool {
        decode(stored).is_some()
    }
}

/// The bytes of a stored value, if it has the stored form.
fn decode(stored: &str) -> Option<Vec<u8>> {
    let encoded = stored.strip_prefix(MARKER)?;
    let sealed = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    (sealed.len() >= NONCE_LEN + TAG_LEN).then_some(sealed)
}

/// Encrypts, in place, every `secret` attribute of `doc` (nested ones included) that holds a
/// string. Null, missing and non-string values are left as they are.
///
/// Not idempotent: call it once, on plaintext (a value that is already encrypted would be
/// encrypted again). `doc` is left unchanged on error.
///
/// # Errors
///
/// As [`SecretKey::encrypt`], naming the dotted path of the field.
pub fn encrypt_fields(
    schema: &Schema,
    doc: &mut Map<String, Value>,
    key: &SecretKey,
) -> Result<()> {
    let mut copy = doc.clone();
    transform(schema, &mut copy, "", &|path, text| key.encrypt(path, text))?;
    *doc = copy;
    Ok(())
}

/// Decrypts, in place, every `secret` attribute of `doc` (nested ones included) that holds a
/// string. Null, missing and non-string values are left as they are.
///
/// # Errors
///
/// [`Error::SecretDecryption`] for the first secret field (dotted path) that does not decrypt:
/// wrong key, altered data, or a plaintext that was never encrypted. `doc` is then left
/// unchanged.
pub fn decrypt_fields(
    schema: &Schema,
    doc: &mut Map<String, Value>,
    key: &SecretKey,
) -> Result<()> {
    let mut copy = doc.clone();
    transform(schema, &mut copy, "", &|path, text| key.decrypt(path, text))?;
    *doc = copy;
    Ok(())
}

/// Replaces every string held by a secret attribute with `f(path, string)`.
fn transform(
    schema: &Schema,
    doc: &mut Map<String, Value>,
    prefix: &str,
    f: &dyn Fn(&str, &str) -> Result<String>,
) -> Result<()> {
    for attribute in schema.attributes() {
        let Some(value) = doc.get_mut(&attribute.name) else {
            continue;
        };
        match (&attribute.kind, value) {
            (AttributeType::Secret, Value::String(text)) => {
                *text = f(&join_path(prefix, &attribute.name), text)?;
            }
            (AttributeType::Object(Some(nested)), Value::Object(object)) => {
                transform(nested, object, &join_path(prefix, &attribute.name), f)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use serde_json::json;

    const SALT: &[u8] = b"0123456789abcdef";

    /// The key for "correct horse" (derived once: derivation is deliberately slow).
    fn key() -> &'static SecretKey {
        static KEY: OnceLock<SecretKey> = OnceLock::new();
        KEY.get_or_init(|| SecretKey::derive("correct horse", SALT))
    }

    fn other_key() -> &'static SecretKey {
        static KEY: OnceLock<SecretKey> = OnceLock::new();
        KEY.get_or_init(|| SecretKey::derive("wrong horse", SALT))
    }

    fn encrypt(key: &SecretKey, text: &str) -> String {
        match key.encrypt("f", text) {
            Ok(stored) => stored,
            Err(e) => panic!("encrypt: {e}"),
        }
    }

    fn assert_decryption_error(result: Result<String>, expected_field: &str) {
        match result {
            Err(Error::SecretDecryption { field }) => assert_eq!(field, expected_field),
            other => panic!("expected SecretDecryption, got {other:?}"),
        }
    }

    fn schema() -> Schema {
        let definition = json!({
            "name": "string",
            "token": "secret",
            "pin": "secret|required",
            "account": {"user": "string", "password": "secret", "deep": {"key": "secret"}},
        });
        let Value::Object(map) = definition else {
            panic!("not an object")
        };
        match Schema::parse(&map) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn doc(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn round_trip() {
        for text in [
            "hunter2",
            "",
            "zażółć gęślą jaźń 🔑",
            "a|b:c\n\0",
            &"x".repeat(10_000),
        ] {
            let stored = encrypt(key(), text);
            assert!(stored.starts_with(MARKER));
            assert!(stored.is_ascii());
            assert!(!stored.contains(text) || text.is_empty());
            assert!(SecretKey::is_encrypted(&stored));
            match key().decrypt("f", &stored) {
                Ok(back) => assert_eq!(back, text),
                Err(e) => panic!("decrypt: {e}"),
            }
        }
    }

    #[test]
    fn same_passphrase_and_salt_give_the_same_key() {
        let again = SecretKey::derive("correct horse", SALT);
        let stored = encrypt(key(), "shared");
        assert_eq!(again.decrypt("f", &stored).ok().as_deref(), Some("shared"));
        // Another salt gives another key.
        let salted = SecretKey::derive("correct horse", b"another salt....");
        assert_decryption_error(salted.decrypt("f", &stored), "f");
    }

    #[test]
    fn nonces_are_random() {
        let a = encrypt(key(), "same");
        let b = encrypt(key(), "same");
        assert_ne!(a, b);
        // The nonce (first 12 bytes) differs, not just the ciphertext.
        let bytes = |s: &str| decode(s).unwrap_or_default();
        assert_ne!(bytes(&a)[..NONCE_LEN], bytes(&b)[..NONCE_LEN]);
        assert_eq!(bytes(&a).len(), NONCE_LEN + "same".len() + TAG_LEN);
    }

    #[test]
    fn wrong_passphrase_is_an_error() {
        let stored = encrypt(key(), "hunter2");
        assert_decryption_error(other_key().decrypt("token", &stored), "token");
    }

    #[test]
    fn tampering_is_detected() {
        let stored = encrypt(key(), "hunter2");
        let mut sealed = decode(&stored).unwrap_or_default();
        for i in [0, NONCE_LEN, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            let altered = format!("{MARKER}{}", URL_SAFE_NO_PAD.encode(&altered));
            assert!(SecretKey::is_encrypted(&altered));
            assert_decryption_error(key().decrypt("f", &altered), "f");
        }
        // Truncated.
        sealed.pop();
        let truncated = format!("{MARKER}{}", URL_SAFE_NO_PAD.encode(&sealed));
        assert_decryption_error(key().decrypt("f", &truncated), "f");
    }

    #[test]
    fn malformed_values_are_errors() {
        let stored = encrypt(key(), "x");
        for bad in [
            "",
            "hunter2",
            "s1:",
            "s1:!!!not base64!!!",
            "s1:AAAA",
            "s2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &stored[MARKER.len()..],
            &format!("{stored}="),
        ] {
            assert!(!SecretKey::is_encrypted(bad), "{bad:?}");
            assert_decryption_error(key().decrypt("f", bad), "f");
        }
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", key()), "SecretKey(***)");
        assert_eq!(format!("{:#?}", key()), "SecretKey(***)");
    }

    #[test]
    fn salts_are_random() {
        let a = SecretKey::new_salt();
        let b = SecretKey::new_salt();
        assert_eq!(a.len(), SALT_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn fields_round_trip_nested_included() {
        let s = schema();
        let original = json!({
            "name": "public",
            "token": "t0k3n",
            "pin": "1234",
            "account": {"user": "ann", "password": "pa55", "deep": {"key": "k"}},
        });
        let mut d = doc(original.clone());
        if let Err(e) = encrypt_fields(&s, &mut d, key()) {
            panic!("{e}");
        }
        assert_eq!(d["name"], json!("public"));
        assert_eq!(d["account"]["user"], json!("ann"));
        for stored in [
            &d["token"],
            &d["pin"],
            &d["account"]["password"],
            &d["account"]["deep"]["key"],
        ] {
            let text = stored.as_str().unwrap_or_default();
            assert!(SecretKey::is_encrypted(text), "{stored}");
        }
        let encrypted = d.clone();

        // The wrong key fails on the first secret field (in schema order) and leaves the
        // document unchanged.
        let first = s.secret_paths().into_iter().next().unwrap_or_default();
        match decrypt_fields(&s, &mut d, other_key()) {
            Err(Error::SecretDecryption { field }) => assert_eq!(field, first),
            other => panic!("expected SecretDecryption, got {other:?}"),
        }
        assert_eq!(d, encrypted);

        if let Err(e) = decrypt_fields(&s, &mut d, key()) {
            panic!("{e}");
        }
        assert_eq!(Value::Object(d), original);
    }

    #[test]
    fn nested_failure_names_the_dotted_path() {
        let s = schema();
        let mut d = doc(json!({"account": {"password": "never encrypted"}}));
        match decrypt_fields(&s, &mut d, key()) {
            Err(Error::SecretDecryption { field }) => assert_eq!(field, "account.password"),
            other => panic!("expected SecretDecryption, got {other:?}"),
        }
        let mut d = doc(json!({"account": {"deep": {"key": "s1:AAAA"}}}));
        match decrypt_fields(&s, &mut d, key()) {
            Err(Error::SecretDecryption { field }) => assert_eq!(field, "account.deep.key"),
            other => panic!("expected SecretDecryption, got {other:?}"),
        }
    }

    #[test]
    fn null_missing_and_non_strings_are_untouched() {
        let s = schema();
        let original = json!({"token": null, "account": {"password": null}, "pin": 5});
        let mut d = doc(original.clone());
        if let Err(e) = encrypt_fields(&s, &mut d, key()) {
            panic!("{e}");
        }
        assert_eq!(Value::Object(d.clone()), original);
        if let Err(e) = decrypt_fields(&s, &mut d, key()) {
            panic!("{e}");
        }
        assert_eq!(Value::Object(d), original);
        let mut empty = Map::new();
        assert!(encrypt_fields(&s, &mut empty, key()).is_ok());
        assert!(empty.is_empty());
        // A nested object that is not an object is left alone.
        let mut d = doc(json!({"account": "x"}));
        assert!(encrypt_fields(&s, &mut d, key()).is_ok());
        assert_eq!(d["account"], json!("x"));
    }
}
