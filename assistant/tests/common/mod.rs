//! What the assistant's integration tests share: the real MiniLM embedder and an index built from
//! manuals written for the test.

use std::sync::Arc;

use scanaid_indexer::{index_manuals, ChunkingConfig, SearchIndex};
use scanaid_models::{ensure_model, BertEmbedder, Embedder, MINILM_L6_V2};

pub fn embedder() -> Arc<dyn Embedder> {
    let models = std::env::var_os("SCANAID_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(scanaid_models::default_models_dir);
    let (dir, _) = ensure_model(&models, &MINILM_L6_V2).expect("model fetched");
    Arc::new(BertEmbedder::load(&dir, &MINILM_L6_V2).expect("model loads"))
}

/// The manuals (file name, text) indexed with `embedder` into a folder of their own, which lives as
/// long as the returned guard.
pub fn index_of(
    manuals: &[(&str, &str)],
    embedder: &dyn Embedder,
) -> (SearchIndex, tempfile::TempDir) {
    let folder = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    for (name, text) in manuals {
        std::fs::write(folder.path().join(name), text).unwrap();
    }
    index_manuals(
        folder.path(),
        index_dir.path(),
        embedder,
        ChunkingConfig::default(),
        &mut |_, _| {},
    )
    .unwrap();
    (SearchIndex::open(index_dir.path()).unwrap(), index_dir)
}
