//! The session behind a long-lived event stream (SSE). A stream is authorised once, when it opens,
//! but stays open for hours; what it carries must stop when the person's right to see it does
//! (sign-out on another tab, account removed, role changed, signed out by a password change). So a
//! stream keeps the session cookie it was opened with and checks it again before each event and
//! every [`RECHECK`] in between.

use std::time::Duration;

use axum::http::HeaderMap;

use crate::roles::Role;
use crate::store::Store;

/// How often an open stream checks its session when no event comes.
pub const RECHECK: Duration = Duration::from_secs(30);

/// One stream's session and the roles that may keep watching it.
pub struct StreamSession {
    store: Store,
    /// The session cookie the stream was opened with.
    token: String,
    roles: &'static [Role],
    recheck: tokio::time::Interval,
}

impl StreamSession {
    /// The session of a request that already passed its role check, or `None` when it carries no
    /// session cookie (then the stream could not be checked, and must not open).
    pub fn of(store: &Store, headers: &HeaderMap, roles: &'static [Role]) -> Option<Self> {
        let token = crate::http::cookie(headers, crate::auth::SESSION_COOKIE)?.to_string();
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(Self {
            store: store.clone(),
            token,
            roles,
            recheck,
        })
    }

    /// Resolves at the next periodic check (the first one at once).
    pub async fn recheck_due(&mut self) {
        self.recheck.tick().await;
    }

    /// Whether the session is still signed in with one of the roles. Reading it does not refresh
    /// the idle timer, because an open tab is not someone at work. A store that cannot tell ends
    /// the stream: the browser reconnects and signs in again rather than keep receiving unchecked.
    pub async fn still_allowed(&self) -> bool {
        match crate::auth::live_session(&self.store, &self.token).await {
            Ok(Some(user)) => self.roles.contains(&user.role),
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, "checking an event stream's session failed; ending it");
                false
            }
        }
    }
}
