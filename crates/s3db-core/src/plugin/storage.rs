//! PluginStorage — TEMPORARY STUB so the crate compiles; the helper writing this file replaces it
//! entirely (keep `new`, `slug` and `delete_all(&[String]) -> Result<u64>`).

use crate::error::Result;
use crate::store::Store;

/// Namespaced storage of one plugin (stub).
#[derive(Debug, Clone)]
pub struct PluginStorage {
    store: Store,
    slug: String,
}

impl PluginStorage {
    /// Storage for `slug` (stub).
    ///
    /// # Errors
    /// Never (stub).
    pub fn new(store: Store, slug: &str) -> Result<Self> {
        Ok(Self {
            store,
            slug: slug.to_owned(),
        })
    }

    /// The slug.
    #[must_use]
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// Deletes all (stub: only the global prefix).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn delete_all(&self, _resources: &[String]) -> Result<u64> {
        let prefix = crate::Key::parse(&format!("plugin={}", self.slug))?;
        self.store.delete_prefix(&prefix).await
    }
}
