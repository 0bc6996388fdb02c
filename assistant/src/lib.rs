//! The assistant: a question and its conversation in, an answer out. This first part is how sure the
//! assistant may be: the evidence retrieval gives for a question (`evidence`) and a confidence in
//! [0, 1] learned from it (`confidence`), which decides between answering and offering a person.

pub mod answer;
pub mod confidence;
pub mod evidence;

pub use answer::{extract, AnswerSentence, Citation, Extract};
pub use confidence::Logistic;
pub use evidence::{evidence, Evidence, FEATURE_NAMES, N_FEATURES};
