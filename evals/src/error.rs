//! Errors of the evals crate: bad data names the file and line.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, EvalError>;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(
        "{path}: missing (a BEIR folder has corpus.jsonl, queries.jsonl and qrels/<split>.tsv)"
    )]
    Missing { path: PathBuf },
    /// A question set that is not there: run from the repository, or name the file.
    #[error("{path}: missing (run from the scanaid folder, or give the question file with --questions FILE)")]
    MissingQuestions { path: PathBuf },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("io error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    BadOption(String),
    #[error(transparent)]
    Index(#[from] scanaid_indexer::IndexError),
    #[error(transparent)]
    Model(#[from] scanaid_models::ModelError),
}
