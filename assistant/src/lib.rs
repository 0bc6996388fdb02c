//! The assistant: a question and its conversation in, an answer out (`reply`): the pieces of the
//! manuals that answer it, each citing its passage (`answer`), and how sure it may be: the evidence
//! retrieval gives (`evidence`) weighed by a model fitted on labelled questions (`confidence`), which
//! decides between answering and offering a person.

pub mod answer;
pub mod confidence;
pub mod evidence;
pub mod reply;

pub use answer::{extract, AnswerSentence, Citation, Extract};
pub use confidence::Logistic;
pub use evidence::{evidence, Evidence, FEATURE_NAMES, N_FEATURES};
pub use reply::{reply, Reply};
