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

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "request failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("cache-control", "no-store")],
            Html("<!doctype html><meta name=viewport content=\"width=device-width\"><title>Something went wrong</title><p>Something went wrong on our side. Please try again in a moment; if it keeps happening, call the site contact on the label.</p><p><a href=\"/\">Home</a></p>"),
        )
            .into_response()
    }
}
