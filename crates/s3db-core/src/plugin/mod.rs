//! The plugin API: everything a plugin author needs, in one module.
//!
//! ```
//! # #![allow(unused_imports)]
//! use s3db_core::plugin::*; // Plugin, PluginContext, hook traits, PluginStorage, async_trait
//! ```
//!
//! ## Lifecycle
//! A plugin given to [`crate::DatabaseBuilder::plugin`] is installed when the database connects —
//! every builder plugin's `install` first, in the order given, then every `start`, in the same
//! order. [`crate::Database::use_plugin`] on a connected database installs and starts at once.
//! [`crate::Database::uninstall_plugin`] calls `stop`, then `uninstall`, then removes everything
//! the plugin registered through its [`PluginContext`] (hooks, middleware, database hooks,
//! deferred setups, tasks) and, with `purge_data`, deletes all of its [`PluginStorage`] and its
//! `plg_*` resources. [`crate::Database::disconnect`] stops every plugin, in reverse order.
//! Each step is broadcast as an [`Event::Plugin`].
//!
//! A plugin that fails to install is rolled back (whatever it registered is removed) and its
//! error is returned as [`crate::Error::Plugin`] carrying its name.

mod clock;
mod context;
mod custom_event;
mod selection;
pub mod storage;
mod write_action;

use std::any::Any;
use std::sync::Arc;

pub use async_trait::async_trait;

pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::context::PluginContext;
pub use self::custom_event::CustomEvent;
pub use self::selection::{BadNameReason, ResourceSelection, SelectionError};
pub use self::storage::*;
pub use self::write_action::WriteAction;
pub use crate::database::Database;
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::resource::hooks::{
    DatabaseHooks, Event, HookId, InsertOp, Middleware, Next, Operation, Outcome, PluginEvent,
    ResourceHooks, UpdateKind, UpdateOp,
};
pub use crate::resource::{Document, Filter, Record, Resource, ResourceConfig, ResourceDefinition};

/// Prefix of the names of plugins' internal resources; other plugins' hooks skip them.
pub const INTERNAL_RESOURCE_PREFIX: &str = "plg_";

/// A plugin. Every method but [`Plugin::name`] has a no-op default.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's unique name in a database.
    fn name(&self) -> &str;

    /// The namespace of its storage (`plugin=<slug>/…`): by default the name, lower-cased, with
    /// anything but ASCII letters and digits turned into `-`.
    fn slug(&self) -> String {
        slugify(self.name())
    }

    /// Registers hooks, middleware, deferred setups, internal resources. Runs once.
    async fn install(&self, _cx: &PluginContext) -> Result<()> {
        Ok(())
    }

    /// Starts background work (timers, workers) with [`PluginContext::spawn`].
    async fn start(&self, _cx: &PluginContext) -> Result<()> {
        Ok(())
    }

    /// Flushes and stops background work. Tasks spawned through the context are stopped after
    /// this returns.
    async fn stop(&self, _cx: &PluginContext) -> Result<()> {
        Ok(())
    }

    /// Plugin-specific clean-up; registrations and (with `purge_data`) storage are removed by the
    /// framework afterwards.
    async fn uninstall(&self, _cx: &PluginContext, _purge_data: bool) -> Result<()> {
        Ok(())
    }
}

/// Lower-cases and turns everything but ASCII letters and digits into `-`.
#[must_use]
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

/// Whether a resource name is a plugin's internal resource (`plg_…`).
#[must_use]
pub fn is_internal_resource(name: &str) -> bool {
    name.starts_with(INTERNAL_RESOURCE_PREFIX)
}

/// A plugin as the database keeps it: the trait object, the same value for typed access, and its
/// context.
#[derive(Clone)]
pub(crate) struct Installed {
    pub(crate) plugin: Arc<dyn Plugin>,
    pub(crate) any: Arc<dyn Any + Send + Sync>,
    pub(crate) cx: PluginContext,
    pub(crate) started: bool,
}

/// A plugin not installed yet (given to the builder).
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) plugin: Arc<dyn Plugin>,
    pub(crate) any: Arc<dyn Any + Send + Sync>,
}

impl Pending {
    pub(crate) fn new<P: Plugin>(plugin: P) -> Self {
        let plugin = Arc::new(plugin);
        Self {
            any: Arc::clone(&plugin) as Arc<dyn Any + Send + Sync>,
            plugin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Cache"), "cache");
        assert_eq!(
            slugify("EventualConsistency Plugin"),
            "eventualconsistency-plugin"
        );
        assert_eq!(slugify("s3-queue"), "s3-queue");
        assert_eq!(slugify("__x__"), "x");
        assert!(is_internal_resource("plg_audits"));
        assert!(!is_internal_resource("users"));
    }
}
