//! Who is acting: a per-task context value, since core operations carry no caller identity.
//!
//! The user of an audit entry is, in this order: the innermost [`AuditUser::scope`] around the
//! operation; else the plugin's resolver ([`crate::AuditBuilder::user_resolver`]) if it answers;
//! else the plugin's default user ([`crate::AuditBuilder::default_user`]); else
//! [`SYSTEM_USER`].

use std::future::Future;
use std::sync::Arc;

/// The user recorded when nothing else names one (as the original plugin).
pub const SYSTEM_USER: &str = "system";

tokio::task_local! {
    static CURRENT_USER: Arc<str>;
}

/// The acting user of audited operations, carried by the future that runs them.
///
/// ```
/// # async fn demo() -> s3db_core::Result<()> {
/// use s3db_audit::AuditUser;
///
/// let seen = AuditUser::scope("alice", async {
///     // Every insert, update or delete awaited in here is recorded as done by alice,
///     // bulk operations included; nested scopes win.
///     assert_eq!(AuditUser::current().as_deref(), Some("alice"));
///     AuditUser::scope("bob", async { AuditUser::current() }).await
/// })
/// .await;
/// assert_eq!(seen.as_deref(), Some("bob"));
/// assert_eq!(AuditUser::current(), None);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
///
/// The value follows the future, not the thread: work handed to `tokio::spawn` inside the scope
/// does not see it (wrap that future in its own scope).
#[derive(Debug, Clone, Copy)]
pub struct AuditUser;

impl AuditUser {
    /// Runs `fut` with `user` as the acting user.
    pub fn scope<F: Future>(user: impl Into<String>, fut: F) -> impl Future<Output = F::Output> {
        CURRENT_USER.scope(Arc::from(user.into()), fut)
    }

    /// Runs `f` with `user` as the acting user (for synchronous code that starts operations with
    /// `block_on`, or to set it around the creation of futures).
    pub fn sync_scope<R>(user: impl Into<String>, f: impl FnOnce() -> R) -> R {
        CURRENT_USER.sync_scope(Arc::from(user.into()), f)
    }

    /// The acting user of the current scope, if any.
    #[must_use]
    pub fn current() -> Option<String> {
        CURRENT_USER.try_with(|u| u.to_string()).ok()
    }
}
