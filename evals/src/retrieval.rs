//! The retrieval runner: index a BEIR corpus (cached by content hash), run every judged query of a
//! split in one mode, and report nDCG@10, Recall@10/100, MRR@10 and per-query latency.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use scanaid_indexer::generation::{self, DocumentSummary};
use scanaid_indexer::{
    build_generation, Chunk, ChunkingConfig, Filters, Mode, OwnerScope, SearchIndex, SearchRequest,
    SearchSettings,
};
use scanaid_models::Embedder;

use crate::beir::Dataset;
use crate::error::{EvalError, Result};
use crate::metrics::{mrr_at_k, ndcg_at_k, percentile, recall_at_k};

#[derive(Debug, Clone)]
pub struct RetrievalOptions {
    pub mode: Mode,
    pub settings: SearchSettings,
    /// Retrieve with the conversation's earlier turns where queries have a history.
    pub use_history: bool,
    /// Where indexes of evaluated corpora are kept between runs.
    pub cache_dir: PathBuf,
    /// Write every query's ranking here in TREC run format (`qid Q0 docid rank score tag`), for
    /// trec_eval or for fusing runs offline.
    pub run_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetrievalReport {
    pub dataset: String,
    pub split: String,
    pub mode: String,
    pub fusion: String,
    pub history: bool,
    pub model: String,
    pub n_passages: usize,
    pub n_queries: usize,
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    #[serde(rename = "recall@10")]
    pub recall10: f64,
    #[serde(rename = "recall@100")]
    pub recall100: f64,
    #[serde(rename = "mrr@10")]
    pub mrr10: f64,
    pub latency_ms: Latency,
    /// Median milliseconds per stage of a search (embedding, BM25, vector top-k, fusion).
    pub stage_p50_ms: StageMedians,
    /// Seconds the index build took (from the cache's record when it was reused).
    pub index_s: f64,
    pub index_cached: bool,
    pub embed_passages_per_s: f64,
    /// nDCG@10 of every judged query, for paired comparisons (`scanaid eval compare`).
    #[serde(rename = "per_query_ndcg@10")]
    pub per_query_ndcg10: crate::compare::PerQuery,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageMedians {
    pub embed: f64,
    pub bm25: f64,
    pub vectors: f64,
    pub fuse: f64,
}

/// A BEIR passage as an index chunk: the passage is the unit (BEIR judges whole passages).
fn passage_chunks(data: &Dataset) -> Vec<Chunk> {
    data.corpus
        .iter()
        .map(|p| Chunk {
            chunk_id: p.id.clone(),
            manual_id: p.id.clone(),
            manual_title: p.title.clone(),
            revision: String::new(),
            language: "en".to_string(),
            models: Vec::new(),
            audiences: Vec::new(),
            owner: None,
            heading_path: Vec::new(),
            anchor: String::new(),
            line: 0,
            text: p.text.clone(),
        })
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BuildRecord {
    index_s: f64,
    embed_s: f64,
    n_embedded: usize,
}

/// Opens the cached index of `data`'s corpus for `embedder`'s model, building it first if needed.
/// Returns the index, the build seconds, whether it was cached, and passages/s of the embedding.
pub fn open_or_build(
    data: &Dataset,
    embedder: &dyn Embedder,
    cache_dir: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(SearchIndex, f64, bool, f64)> {
    let corpus_path = data.dir.join("corpus.jsonl");
    let bytes = std::fs::read(&corpus_path).map_err(|source| EvalError::Io {
        path: corpus_path.clone(),
        source,
    })?;
    let mut h = Sha256::new();
    h.update(&bytes);
    h.update(embedder.model_id().as_bytes());
    h.update(generation::FORMAT_VERSION.to_le_bytes());
    h.update((scanaid_indexer::build::EMBED_WINDOW_TOKENS as u32).to_le_bytes());
    let hash = hex::encode(&h.finalize()[..8]);
    let index_dir = cache_dir.join(format!("{}-{hash}", data.name));
    let record_path = index_dir.join("build.json");
    if let (Ok(index), Ok(text)) = (
        SearchIndex::open_for(&index_dir, embedder),
        std::fs::read_to_string(&record_path),
    ) {
        if let Ok(record) = serde_json::from_str::<BuildRecord>(&text) {
            let rate = record.n_embedded as f64 / record.embed_s.max(1e-9);
            return Ok((index, record.index_s, true, rate));
        }
    }
    let chunks = passage_chunks(data);
    let documents = vec![DocumentSummary {
        id: data.name.clone(),
        title: data.name.clone(),
        revision: hash.clone(),
        language: "en".to_string(),
        n_chunks: chunks.len(),
    }];
    let report = build_generation(
        &index_dir,
        chunks,
        documents,
        embedder,
        ChunkingConfig::default(),
        &[],
        progress,
    )?;
    let record = BuildRecord {
        index_s: report.elapsed_s,
        embed_s: report.embed_s,
        n_embedded: report.n_embedded,
    };
    std::fs::write(
        &record_path,
        serde_json::to_string(&record).expect("serialises"),
    )
    .map_err(|source| EvalError::Io {
        path: record_path.clone(),
        source,
    })?;
    let index = SearchIndex::open_for(&index_dir, embedder)?;
    let rate = report.n_embedded as f64 / report.embed_s.max(1e-9);
    Ok((index, report.elapsed_s, false, rate))
}

/// Ranked passage ids of one query, best first, BEIR semantics (the query's own id dropped).
pub struct QueryRun {
    pub query_id: String,
    pub ranked: Vec<String>,
    pub latency_ms: f64,
    pub stages: scanaid_indexer::StageTimes,
    pub hits: Vec<scanaid_indexer::Hit>,
}

/// Runs every query of `data` that has judgments and returns its ranking and latency.
pub fn run_queries(
    index: &SearchIndex,
    data: &Dataset,
    embedder: &dyn Embedder,
    mode: Mode,
    use_history: bool,
    judged_only: bool,
) -> Result<Vec<QueryRun>> {
    let mut runs = Vec::new();
    // Warm-up: first queries pay for lazy page-ins and allocator growth.
    for q in data.queries.iter().take(5) {
        let _ = index.search(&request(q, mode, use_history), Some(embedder))?;
    }
    for q in &data.queries {
        if judged_only
            && !data
                .qrels
                .get(&q.id)
                .is_some_and(|r| r.values().any(|&s| s > 0))
        {
            continue;
        }
        let req = request(q, mode, use_history);
        let started = Instant::now();
        let (hits, stages) = index.search_timed(&req, Some(embedder))?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let ranked = hits
            .iter()
            .map(|h| index.chunk(h.ord).chunk_id.clone())
            .filter(|id| *id != q.id)
            .collect();
        runs.push(QueryRun {
            query_id: q.id.clone(),
            ranked,
            latency_ms,
            stages,
            hits,
        });
    }
    Ok(runs)
}

/// Writes `runs` in TREC run format: one line per ranked passage, `qid Q0 docid rank score tag`,
/// the query's own id left out as in `QueryRun::ranked`.
fn write_trec_run(path: &Path, runs: &[QueryRun], tag: &str) -> Result<()> {
    use std::fmt::Write as _;
    let mut text = String::new();
    for run in runs {
        let scored = run.hits.iter().filter(|h| h.chunk_id != run.query_id);
        for (rank, hit) in scored.enumerate() {
            let (query, id, score) = (&run.query_id, &hit.chunk_id, hit.score);
            let _ = writeln!(text, "{query} Q0 {id} {} {score} {tag}", rank + 1);
        }
    }
    std::fs::write(path, text).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The engine request for a BEIR query: every owner, with or without its history, top 100.
pub(crate) fn request(q: &crate::beir::Query, mode: Mode, use_history: bool) -> SearchRequest {
    SearchRequest {
        query: q.text.clone(),
        history: if use_history {
            q.history.clone()
        } else {
            Vec::new()
        },
        filters: Filters {
            owner: OwnerScope::Everything,
            ..Filters::default()
        },
        limit: 100,
        mode,
        language: None,
    }
}

/// Indexes (or reuses) the corpus, runs the split's queries in `options.mode` and scores them.
pub fn evaluate(
    data: &Dataset,
    split: &str,
    embedder: &dyn Embedder,
    options: &RetrievalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RetrievalReport> {
    let (index, index_s, index_cached, rate) =
        open_or_build(data, embedder, &options.cache_dir, progress)?;
    let index = index.with_settings(options.settings)?;
    let runs = run_queries(
        &index,
        data,
        embedder,
        options.mode,
        options.use_history,
        true,
    )?;
    if let Some(path) = &options.run_file {
        write_trec_run(
            path,
            &runs,
            &format!("scanaid-{:?}", options.mode).to_lowercase(),
        )?;
    }
    let empty = HashMap::new();
    let mut sums = [0.0f64; 4];
    let mut per_query_ndcg10 = crate::compare::PerQuery::new();
    for run in &runs {
        let qrels = data.qrels.get(&run.query_id).unwrap_or(&empty);
        let ranked: Vec<&str> = run.ranked.iter().map(String::as_str).collect();
        let ndcg10 = ndcg_at_k(&ranked, qrels, 10);
        per_query_ndcg10.insert(run.query_id.clone(), ndcg10);
        sums[0] += ndcg10;
        sums[1] += recall_at_k(&ranked, qrels, 10);
        sums[2] += recall_at_k(&ranked, qrels, 100);
        sums[3] += mrr_at_k(&ranked, qrels, 10);
    }
    let n = runs.len().max(1) as f64;
    let latencies: Vec<f64> = runs.iter().map(|r| r.latency_ms).collect();
    Ok(RetrievalReport {
        dataset: data.name.clone(),
        split: split.to_string(),
        mode: format!("{:?}", options.mode).to_lowercase(),
        fusion: format!("{:?}", options.settings.fusion),
        history: options.use_history && data.queries.iter().any(|q| !q.history.is_empty()),
        model: embedder.model_id().to_string(),
        n_passages: data.corpus.len(),
        n_queries: runs.len(),
        ndcg10: sums[0] / n,
        recall10: sums[1] / n,
        recall100: sums[2] / n,
        mrr10: sums[3] / n,
        latency_ms: Latency {
            p50: percentile(&latencies, 50.0),
            p95: percentile(&latencies, 95.0),
            mean: latencies.iter().sum::<f64>() / n,
        },
        stage_p50_ms: {
            let median = |f: fn(&scanaid_indexer::StageTimes) -> f64| {
                percentile(&runs.iter().map(|r| f(&r.stages)).collect::<Vec<_>>(), 50.0)
            };
            StageMedians {
                embed: median(|s| s.embed_ms),
                bm25: median(|s| s.bm25_ms),
                vectors: median(|s| s.vectors_ms),
                fuse: median(|s| s.fuse_ms),
            }
        },
        index_s,
        index_cached,
        embed_passages_per_s: rate,
        per_query_ndcg10,
    })
}
