//! The session behind a long-lived event stream (SSE). A stream is authorised once, when it opens,
//! but stays open for hours; what it carries must stop when the person's right to see it does
//! (sign-out on another tab, account removed, role changed, signed out by a password change). So a
//! stream keeps the session cookie it was opened with and checks it again before each event and
//! every [`RECHECK`] in between.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use crate::roles::Role;
use crate::store::Store;
use crate::AppError;

/// How often an open stream checks its session when no event comes.
pub const RECHECK: Duration = Duration::from_secs(30);

/// One stream's session and the roles that may keep watching it.
pub struct StreamSession {
    store: Store,
    /// The session cookie the stream was opened with.
    token: String,
    roles: Vec<Role>,
    recheck: tokio::time::Interval,
}

impl StreamSession {
    /// Authorises a stream's opening: the request's session must be signed in with one of `roles`.
    /// Unlike a page, opening a stream does not refresh the session's idle timer: a console left
    /// open reconnects by itself (after a restart, a dropped network), and that is not someone at
    /// work. Without a session: the sign-in page; with another role: 403 with `refusal`.
    pub async fn open(
        app: &crate::AppState,
        headers: &HeaderMap,
        roles: &[Role],
        refusal: &str,
    ) -> Result<Result<Self, Response>, AppError> {
        let Some(token) = crate::http::cookie(headers, crate::auth::SESSION_COOKIE) else {
            return Ok(Err(Redirect::to("/signin").into_response()));
        };
        match crate::auth::live_session(&app.store, token).await? {
            None => Ok(Err(Redirect::to("/signin").into_response())),
            Some(user) if roles.contains(&user.role) => Ok(Ok(Self::new(&app.store, token, roles))),
            Some(_) => Ok(Err(crate::account::forbidden(refusal)?)),
        }
    }

    /// The session of a signed-in caller, as one of its own role, or `None` for anonymous callers
    /// (no cookie, or a session that has ended); read without refreshing the idle timer.
    pub async fn of_caller(
        app: &crate::AppState,
        headers: &HeaderMap,
    ) -> Result<Option<(Self, Role)>, AppError> {
        let Some(token) = crate::http::cookie(headers, crate::auth::SESSION_COOKIE) else {
            return Ok(None);
        };
        Ok(crate::auth::live_session(&app.store, token)
            .await?
            .map(|user| (Self::new(&app.store, token, &[user.role]), user.role)))
    }

    fn new(store: &Store, token: &str, roles: &[Role]) -> Self {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            store: store.clone(),
            token: token.to_string(),
            roles: roles.to_vec(),
            recheck,
        }
    }

    /// Resolves at the next periodic check (the first one at once).
    pub async fn recheck_due(&mut self) {
        self.recheck.tick().await;
    }

    /// Whether the session is still signed in with one of the roles. Reading it does not refresh
    /// the idle timer, because an open tab is not someone at work. A store that cannot tell ends
    /// the stream: the browser reconnects and signs in again rather than keep receiving unchecked.
    pub async fn still_allowed(&self) -> bool {
        self.allowed_user().await.is_some()
    }

    /// `still_allowed`, giving the signed-in user (for what else they may see).
    pub async fn allowed_user(&self) -> Option<crate::auth::SignedIn> {
        match crate::auth::live_session(&self.store, &self.token).await {
            Ok(Some(user)) if self.roles.contains(&user.role) => Some(user),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "checking an event stream's session failed; ending it");
                None
            }
        }
    }
}
