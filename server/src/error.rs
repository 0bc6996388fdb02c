//! Errors of the server crate, and the one place they become HTTP responses.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

pub type Result<T> = std::result::Result<T, ServerError>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("asset registry {path}: {reason}")]
    Registry { path: PathBuf, reason: String },
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("scan-event store: {0}")]
    EventStore(#[from] rusqlite::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("index: {0}")]
    Index(#[from] scanaid_indexer::IndexError),
    #[error("rendering a page: {0}")]
    Template(#[from] askama::Error),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("configuration: {0}")]
    Config(String),
}

/// What a handler returns on failure. Users' mistakes are answered by the handlers themselves with
/// a helpful page; anything that reaches here is ours, so it is logged once and the user gets a short
/// page with a way forward, never internals.
#[derive(Debug)]
pub struct AppError(pub ServerError);

impl<E: Into<ServerError>> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError(e.into())
    }
}

impl ServerError {
    /// The store could not answer in time (another write held it longer than its busy timeout, or
    /// every connection was in use): nothing is wrong with the request, and trying again helps.
    pub fn is_busy(&self) -> bool {
        match self {
            ServerError::Store(sqlx::Error::PoolTimedOut) => true,
            ServerError::Store(sqlx::Error::Database(db)) => db
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                // The primary result code (the low byte of the extended one): SQLITE_BUSY, SQLITE_LOCKED.
                .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
            ServerError::EventStore(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

/// Marks a response made from an `AppError`, so the guard can answer the JSON API in JSON
/// (`http::json_fault`) with the same status and message.
#[derive(Debug, Clone, Copy)]
pub struct ServerFault {
    pub busy: bool,
}

/// How long a client told the store is busy waits before trying again.
pub const BUSY_RETRY_SECS: u64 = 5;
pub const BUSY_MESSAGE: &str =
    "The site is busy right now. Please try again in a few seconds; nothing you sent was lost.";
pub const FAULT_MESSAGE: &str = "Something went wrong on our side. Please try again in a moment; if it keeps happening, call the site contact on the label.";

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let busy = self.0.is_busy();
        let (status, message) = if busy {
            tracing::warn!(error = %self.0, "the store was busy; the request was answered 503");
            (StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE)
        } else {
            tracing::error!(error = %self.0, "request failed");
            (StatusCode::INTERNAL_SERVER_ERROR, FAULT_MESSAGE)
        };
        let mut response = (
            status,
            [("cache-control", "no-store")],
            Html(format!("<!doctype html><meta name=viewport content=\"width=device-width\"><title>{}</title><p>{message}</p><p><a href=\"/\">Home</a></p>", if busy { "Busy" } else { "Something went wrong" })),
        )
            .into_response();
        if busy {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(BUSY_RETRY_SECS),
            );
        }
        response.extensions_mut().insert(ServerFault { busy });
        response
    }
}
