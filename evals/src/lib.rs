//! Evaluation: BEIR-layout loaders, retrieval metrics (pure functions), and runners that index a
//! corpus, run every query and report quality and latency. Used by `scanaid eval`.

pub mod answerability;
pub mod answers;
pub mod beir;
pub mod compare;
pub mod error;
pub mod manual_questions;
pub mod metrics;
pub mod retrieval;

pub use error::{EvalError, Result};
