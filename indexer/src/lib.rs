//! Manuals to an index, and search over it: sections and chunks, BM25 (tantivy) and vectors
//! (exact or hnsw_rs), hybrid fusion, and immutable generations promoted atomically.
//! Knows nothing of HTTP or sessions.

pub mod build;
pub mod chunking;
pub mod cross_refs;
pub mod embed_cache;
pub mod error;
pub mod filters;
pub mod fusion;
pub mod gate;
pub mod generation;
pub mod graph_file;
pub mod identifiers;
pub mod language;
pub mod lexical;
pub mod manual;
mod private_docs;
pub mod search;
pub mod validate;
pub mod vector;

pub use build::{
    build_generation, index_corpus, index_corpus_gated, index_manuals, BuildReport, Gate,
};
pub use chunking::{Chunk, ChunkingConfig};
pub use error::{IndexError, Result};
pub use filters::{Filters, OwnerScope};
pub use fusion::{Fusion, LegScore};
pub use lexical::Analysis;
pub use search::{Hit, Mode, SearchIndex, SearchRequest, SearchSettings, StageTimes};
