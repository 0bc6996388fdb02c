//! Errors of the indexer: bad input (the caller's) versus a failure of ours or of the disk.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, IndexError>;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no index at {dir}; build one with `scanaid index`")]
    NoIndex { dir: PathBuf },
    #[error("index generation {generation} at {dir} is incomplete or damaged: {reason}")]
    BadGeneration {
        dir: PathBuf,
        generation: String,
        reason: String,
    },
    #[error("index generation at {dir} was built with different settings: {reason}")]
    Incompatible { dir: PathBuf, reason: String },
    #[error("index at {dir} was built with model {built_with}, but {requested} was given")]
    ModelMismatch {
        dir: PathBuf,
        built_with: String,
        requested: String,
    },
    #[error("nothing to roll back to: {0}")]
    NoRollback(String),
    #[error("nothing to index: {0}")]
    Empty(String),
    #[error("manual problems: {0}")]
    Manuals(String),
    #[error("the quality gate stopped the new generation: {0}")]
    Gate(String),
    #[error("invalid search request: {0}")]
    BadRequest(String),
    #[error("io error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("text index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("embedding: {0}")]
    Model(#[from] scanaid_models::ModelError),
    #[error("index metadata {path}: {message}")]
    Meta { path: PathBuf, message: String },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IndexError {
    let path = path.into();
    move |source| IndexError::Io { path, source }
}
