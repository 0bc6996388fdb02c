//! Building a generation: chunks -> embeddings (reused from the cache when the text is unchanged) ->
//! BM25 index + vectors + chunk table -> verify -> promote. Nothing is promoted unless the whole
//! generation opened and checked out.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use scanaid_models::Embedder;

use crate::chunking::{chunk_manual, Chunk, ChunkingConfig};
use crate::embed_cache::{self, EmbeddingCache};
use crate::error::{io_err, IndexError, Result};
use crate::generation::{self, DocumentSummary, GenerationMeta, FORMAT_VERSION};
use crate::lexical::build_lexical;
use crate::manual::{load_manuals, Manual, ManualProblem};
use crate::search::SearchIndex;
use crate::vector::{HnswParams, VectorIndex, EXACT_MAX};

/// Generations kept on disk (the current one and older ones for rollback).
pub const KEEP_GENERATIONS: usize = 4;
/// Texts per embedding call; progress is reported between calls.
const EMBED_GROUP: usize = 64;
/// Body tokens (estimated) per embedding window; see `Chunk::embedding_windows`. Chosen on scifact train
/// (see ARCHITECTURE.md, "Embedding windows").
pub const EMBED_WINDOW_TOKENS: usize = 100;

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub generation: String,
    pub n_chunks: usize,
    pub n_embedded: usize,
    pub n_reused: usize,
    pub problems: Vec<ManualProblem>,
    pub elapsed_s: f64,
    pub embed_s: f64,
}

/// Progress of the embedding step: (done, total) chunks needing new embeddings.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Loads, chunks and indexes every manual under `manuals_dir` into a new generation of `index_dir`.
/// Bad files are reported in the result and skipped; if no manual is usable nothing changes.
pub fn index_manuals(
    manuals_dir: &Path,
    index_dir: &Path,
    embedder: &dyn Embedder,
    config: ChunkingConfig,
    progress: Progress<'_>,
) -> Result<BuildReport> {
    index_corpus(manuals_dir, &[], index_dir, embedder, config, progress)
}

/// As `index_manuals`, plus `extra` documents that do not live in the folder: patients' packet
/// documents, each with its `owner`, kept in the store. An extra document whose id a manual in the
/// folder already has is reported and skipped.
pub fn index_corpus(
    manuals_dir: &Path,
    extra: &[Manual],
    index_dir: &Path,
    embedder: &dyn Embedder,
    config: ChunkingConfig,
    progress: Progress<'_>,
) -> Result<BuildReport> {
    index_corpus_gated(
        manuals_dir,
        extra,
        index_dir,
        embedder,
        config,
        progress,
        None,
    )
}

/// `index_corpus`, promoting the new generation only if `gate` passes.
pub fn index_corpus_gated(
    manuals_dir: &Path,
    extra: &[Manual],
    index_dir: &Path,
    embedder: &dyn Embedder,
    config: ChunkingConfig,
    progress: Progress<'_>,
    gate: Option<Gate<'_>>,
) -> Result<BuildReport> {
    let (mut manuals, mut problems) = load_manuals(manuals_dir).map_err(io_err(manuals_dir))?;
    for document in extra {
        if manuals.iter().any(|m| m.meta.id == document.meta.id) {
            problems.push(ManualProblem {
                path: document.path.clone(),
                reason: format!("id {:?} is already used by a manual", document.meta.id),
            });
        } else {
            manuals.push(document.clone());
        }
    }
    if manuals.is_empty() {
        let detail: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(IndexError::Empty(format!(
            "no usable manual in {}{}",
            manuals_dir.display(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {}", detail.join("; "))
            }
        )));
    }
    let mut chunks = Vec::new();
    let mut documents = Vec::new();
    for manual in &manuals {
        let chunked = chunk_manual(manual, config);
        documents.push(DocumentSummary {
            id: manual.meta.id.clone(),
            title: manual.meta.title.clone(),
            revision: manual.meta.revision.clone(),
            language: manual.meta.language.clone(),
            n_chunks: chunked.chunks.len(),
        });
        chunks.extend(chunked.chunks);
    }
    let mut report = build_generation_gated(
        index_dir, chunks, documents, embedder, config, &problems, progress, gate,
    )?;
    report.problems = problems;
    Ok(report)
}

/// A check a new generation must pass before it is promoted (opened exactly as readers will open
/// it); `Err` carries the report, and the generation is discarded.
pub type Gate<'a> = &'a dyn Fn(&SearchIndex) -> std::result::Result<(), String>;

/// Writes `chunks` as a new generation and promotes it.
#[allow(clippy::too_many_arguments)]
pub fn build_generation(
    index_dir: &Path,
    chunks: Vec<Chunk>,
    documents: Vec<DocumentSummary>,
    embedder: &dyn Embedder,
    config: ChunkingConfig,
    problems: &[ManualProblem],
    progress: Progress<'_>,
) -> Result<BuildReport> {
    build_generation_gated(
        index_dir, chunks, documents, embedder, config, problems, progress, None,
    )
}

/// `build_generation`, promoting only if `gate` passes.
#[allow(clippy::too_many_arguments)]
pub fn build_generation_gated(
    index_dir: &Path,
    chunks: Vec<Chunk>,
    documents: Vec<DocumentSummary>,
    embedder: &dyn Embedder,
    config: ChunkingConfig,
    problems: &[ManualProblem],
    progress: Progress<'_>,
    gate: Option<Gate<'_>>,
) -> Result<BuildReport> {
    let started = Instant::now();
    if chunks.is_empty() {
        return Err(IndexError::Empty(
            "the documents produced no chunks".to_string(),
        ));
    }
    // Two builders at once would pick the same generation name and share the embedding cache.
    let _writer = generation::lock_writers(index_dir)?;
    let dim = embedder.dim();
    let model_id = embedder.model_id().to_string();

    // Embeddings: reuse what the cache has, embed the rest longest-first (less padding per batch).
    let embed_started = Instant::now();
    let mut cache = EmbeddingCache::open(&index_dir.join("embedding-cache"), &model_id, dim)?;
    let mut texts: Vec<String> = Vec::with_capacity(chunks.len());
    let mut starts: Vec<u32> = Vec::with_capacity(chunks.len() + 1);
    starts.push(0);
    for chunk in &chunks {
        texts.extend(chunk.embedding_windows(EMBED_WINDOW_TOKENS));
        starts.push(texts.len() as u32);
    }
    let keys: Vec<embed_cache::Key> = texts
        .iter()
        .map(|t| embed_cache::key(&model_id, t))
        .collect();
    let mut missing: Vec<usize> = (0..texts.len())
        .filter(|&i| cache.get(&keys[i]).is_none())
        .collect();
    // Sorting by key within a length puts identical texts next to each other for the dedup.
    missing.sort_by_key(|&i| (std::cmp::Reverse(texts[i].len()), keys[i]));
    missing.dedup_by_key(|&mut i| keys[i]);
    let n_embedded = missing.len();
    progress(0, n_embedded);
    for (g, group) in missing.chunks(EMBED_GROUP).enumerate() {
        let batch: Vec<&str> = group.iter().map(|&i| texts[i].as_str()).collect();
        let vectors = embedder.embed_passages(&batch)?;
        for (&i, v) in group.iter().zip(vectors) {
            cache.insert(keys[i], v);
        }
        // Flushing as we go means an interrupted build keeps the work it did.
        cache.flush()?;
        progress(((g + 1) * EMBED_GROUP).min(n_embedded), n_embedded);
    }
    let embed_s = embed_started.elapsed().as_secs_f64();
    let mut vectors = Vec::with_capacity(texts.len() * dim);
    for key in &keys {
        vectors.extend_from_slice(cache.get(key).expect("every chunk was embedded above"));
    }
    let n_reused = texts.len() - n_embedded;

    let (name, staging) = generation::stage(index_dir)?;
    let result = (|| {
        let lexical_dir = staging.join("lexical");
        std::fs::create_dir_all(&lexical_dir).map_err(io_err(&lexical_dir))?;
        build_lexical(&lexical_dir, &chunks)?;
        VectorIndex::write_vectors(&staging.join("vectors.f32"), &vectors)?;
        VectorIndex::write_starts(&staging.join("vector-items.u32"), &starts)?;
        // A collection large enough for a graph gets it built once, here, and saved: readers
        // load it (the verification below already does).
        if texts.len() > EXACT_MAX {
            VectorIndex::new(dim, vectors, EXACT_MAX, HnswParams::for_rows(texts.len()))
                .save_graph(&staging)?;
        }
        write_chunks(&staging.join("chunks.jsonl"), &chunks)?;
        let meta = GenerationMeta {
            format_version: FORMAT_VERSION,
            generation: name.clone(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            model_id: model_id.clone(),
            dim,
            n_chunks: chunks.len(),
            n_embedded,
            n_reused,
            chunk_target_tokens: config.target_tokens,
            chunk_max_tokens: config.max_tokens,
            embed_window_tokens: EMBED_WINDOW_TOKENS,
            n_vectors: texts.len(),
            analyzer: crate::lexical::ANALYZER_VERSION.to_string(),
            documents,
            problems: problems.iter().map(|p| p.to_string()).collect(),
        };
        generation::write_meta(&staging, &meta)?;
        // Verify by opening it exactly as a reader would.
        let opened = SearchIndex::open_generation_dir(&staging, &name)?;
        if opened.len() != chunks.len() {
            return Err(IndexError::BadGeneration {
                dir: staging.clone(),
                generation: name.clone(),
                reason: format!("opened {} chunks, wrote {}", opened.len(), chunks.len()),
            });
        }
        if let Some(gate) = gate {
            gate(&opened).map_err(IndexError::Gate)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    generation::promote(index_dir, &staging, &name)?;
    generation::prune(index_dir, KEEP_GENERATIONS)?;
    tracing::info!(generation = %name, n_chunks = chunks.len(), n_embedded, n_reused, "index generation promoted");
    Ok(BuildReport {
        generation: name,
        n_chunks: chunks.len(),
        n_embedded,
        n_reused,
        problems: Vec::new(),
        elapsed_s: started.elapsed().as_secs_f64(),
        embed_s,
    })
}

fn write_chunks(path: &Path, chunks: &[Chunk]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::new(file);
    for chunk in chunks {
        serde_json::to_writer(&mut w, chunk).expect("chunks serialise");
        w.write_all(b"\n").map_err(io_err(path))?;
    }
    let file = w.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    file.sync_all().map_err(io_err(path))
}

/// What `forget_all_but_current` deleted.
#[derive(Debug, Default, PartialEq)]
pub struct Forgotten {
    pub generations: Vec<String>,
    pub embeddings: usize,
    pub cache_files: usize,
}

/// Deletes every generation but the one served, and every cached embedding the served one does not
/// use (a cache file of a model it was not built with goes whole). For a deletion that must leave
/// nothing behind, such as a patient's documents deleted on request: older generations hold their
/// text, and the cache their vectors. Rollback then has nothing to return to, and the next build
/// with another model embeds everything again.
pub fn forget_all_but_current(index_dir: &Path) -> Result<Forgotten> {
    let _writer = generation::lock_writers(index_dir)?;
    let Some(current) = generation::current(index_dir)? else {
        return Ok(Forgotten::default());
    };
    let mut forgotten = Forgotten {
        generations: generation::prune(index_dir, 1)?,
        ..Forgotten::default()
    };
    generation::remove_stale_staging(index_dir)?;
    let dir = generation::generation_dir(index_dir, &current);
    let meta = generation::read_meta(&dir)?;
    let chunks = crate::search::read_chunks(&dir.join("chunks.jsonl"))?;
    let used: std::collections::HashSet<embed_cache::Key> = chunks
        .iter()
        .flat_map(|c| c.embedding_windows(meta.embed_window_tokens))
        .map(|text| embed_cache::key(&meta.model_id, &text))
        .collect();
    let cache_dir = index_dir.join("embedding-cache");
    let ours = embed_cache::file_name(&meta.model_id, meta.dim);
    if let Ok(entries) = std::fs::read_dir(&cache_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy() != ours {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(crate::error::io_err(&path))?;
                forgotten.cache_files += 1;
            }
        }
    }
    let mut cache = EmbeddingCache::open(&cache_dir, &meta.model_id, meta.dim)?;
    forgotten.embeddings = cache.retain_only(&used)?;
    Ok(forgotten)
}
