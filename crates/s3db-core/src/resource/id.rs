//! Record ids: how a resource mints them when the caller gives none.

use std::fmt;
use std::sync::Arc;

use crate::error::Result;
use crate::key::check_part;

/// The URL-safe alphabet of the default ids (64 symbols).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// Length of the default random ids (22 symbols × 6 bits = 132 bits).
pub const RANDOM_ID_LEN: usize = 22;

/// How a resource mints ids.
#[derive(Clone, Default)]
pub enum IdStrategy {
    /// 22 random symbols from a URL-safe alphabet (the default).
    #[default]
    Random,
    /// UUID version 7 (time-ordered).
    UuidV7,
    /// ULID (time-ordered, Crockford base 32).
    Ulid,
    /// A function of yours; its ids are checked like any user-given id.
    Custom(Arc<dyn Fn() -> String + Send + Sync>),
}

impl IdStrategy {
    /// A custom generator.
    pub fn custom(f: impl Fn() -> String + Send + Sync + 'static) -> Self {
        IdStrategy::Custom(Arc::new(f))
    }

    /// Mints an id.
    ///
    /// # Errors
    /// [`crate::Error::BadKey`] if a custom generator returns an id that cannot be a key part.
    pub fn generate(&self) -> Result<String> {
        let id = match self {
            IdStrategy::Random => random_id(),
            IdStrategy::UuidV7 => uuid::Uuid::now_v7().to_string(),
            IdStrategy::Ulid => ulid::Ulid::new().to_string(),
            IdStrategy::Custom(f) => f(),
        };
        check_part(&id)?;
        Ok(id)
    }

    /// The name recorded in `s3db.json` (`random`, `uuid-v7`, `ulid`, `custom`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            IdStrategy::Random => "random",
            IdStrategy::UuidV7 => "uuid-v7",
            IdStrategy::Ulid => "ulid",
            IdStrategy::Custom(_) => "custom",
        }
    }
}

impl fmt::Debug for IdStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// 22 random symbols of the URL-safe alphabet.
#[must_use]
pub fn random_id() -> String {
    let bytes: [u8; RANDOM_ID_LEN] = rand::random();
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies() -> Result<()> {
        let a = IdStrategy::Random.generate()?;
        assert_eq!(a.len(), RANDOM_ID_LEN);
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(a, IdStrategy::Random.generate()?);
        assert_eq!(IdStrategy::UuidV7.generate()?.len(), 36);
        let u1 = IdStrategy::Ulid.generate()?;
        assert_eq!(u1.len(), 26);
        let n = std::sync::atomic::AtomicU32::new(0);
        let custom = IdStrategy::custom(move || {
            format!("c-{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        });
        assert_eq!(custom.generate()?, "c-0");
        assert_eq!(custom.generate()?, "c-1");
        let bad = IdStrategy::custom(|| "a/b".to_owned());
        assert!(bad.generate().is_err());
        Ok(())
    }
}
