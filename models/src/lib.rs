//! Model weights (fetched from a package registry, pinned by sha256) and the candle sentence embedders.
//! Knows nothing of indexes or HTTP.

#[cfg(target_arch = "x86_64")]
mod attention_avx512;
pub mod bert;
pub mod delta;
pub mod e5s1;
pub mod embedder;
pub mod error;
pub mod fetch;
#[cfg(target_arch = "x86_64")]
mod int16;
pub mod matmul_bench;
mod packed;

pub use delta::EncoderDelta;
pub use embedder::{BertEmbedder, Embedder};
pub use error::{ModelError, Result};
pub use fetch::{default_models_dir, ensure_model, ModelSpec, MINILM_L6_V2, MULTILINGUAL_E5_SMALL};
