//! Searching one generation: BM25, dense, or both fused. Filters go inside both legs; a follow-up
//! question also retrieves with the user's earlier turns, at a lower weight.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use scanaid_models::Embedder;

use crate::chunking::Chunk;
use crate::error::{io_err, IndexError, Result};
use crate::filters::{Filters, OwnerScope};
use crate::fusion::{fuse, Fusion, LegScore};
use crate::generation::{self, GenerationMeta};
use crate::language::{has_primary, primary, question_language};
use crate::lexical::{Analysis, LexicalIndex, LexicalWeights, WeightedText};
use crate::vector::{HnswParams, VectorIndex, EXACT_MAX};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bm25,
    Dense,
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "bm25" => Ok(Mode::Bm25),
            "dense" => Ok(Mode::Dense),
            "hybrid" => Ok(Mode::Hybrid),
            other => Err(format!("unknown mode {other:?}: use bm25, dense or hybrid")),
        }
    }
}

/// How retrieval is tuned. One setting serves every corpus (see ARCHITECTURE.md).
#[derive(Debug, Clone, Copy)]
pub struct SearchSettings {
    pub fusion: Fusion,
    /// Candidates taken from each leg before fusion.
    pub candidates: usize,
    pub lexical: LexicalWeights,
    /// Weight of the user's earlier turns relative to the current question (both legs).
    pub history_weight: f32,
    /// How many earlier user turns count.
    pub history_turns: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            fusion: Fusion::default(),
            candidates: 100,
            lexical: LexicalWeights::default(),
            history_weight: 0.5,
            history_turns: 3,
        }
    }
}

/// Milliseconds spent in each stage of one search (zero for a stage the mode skips).
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// The query (and history) through the embedding model.
    pub embed_ms: f64,
    pub bm25_ms: f64,
    /// The vector index's top-k.
    pub vectors_ms: f64,
    /// Fusion, including exact dense scores for BM25-only hits.
    pub fuse_ms: f64,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    /// Earlier turns, oldest first; `"user: ..."`/`"agent: ..."` prefixes are understood and only the
    /// user's turns are used (unprefixed turns count as the user's).
    pub history: Vec<String>,
    pub filters: Filters,
    pub limit: usize,
    pub mode: Mode,
    /// The person's language (a tag such as `es`), when known: it decides the question's language
    /// when the text alone cannot (see `language::question_language`).
    pub language: Option<String>,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>, mode: Mode, limit: usize) -> Self {
        Self {
            query: query.into(),
            history: Vec::new(),
            filters: Filters {
                owner: OwnerScope::Public,
                ..Filters::default()
            },
            limit,
            mode,
            language: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Position of the chunk in this generation's chunk table.
    pub ord: u32,
    pub chunk_id: String,
    /// The fused score (or the single leg's score in bm25/dense mode).
    pub score: f32,
    pub bm25: Option<LegScore>,
    pub dense: Option<LegScore>,
}

/// One opened, immutable generation.
pub struct SearchIndex {
    pub dir: PathBuf,
    pub generation: String,
    pub meta: GenerationMeta,
    chunks: Vec<Chunk>,
    lexical: LexicalIndex,
    vectors: VectorIndex,
    /// Chunks with no owner: what `/healthz` may report.
    n_public: usize,
    /// The distinct primary language tags of the public chunks. A patient's packet adds its own
    /// to that patient's searches only (`languages_for`): what public questions are read as must
    /// not change when a packet in another language is indexed.
    languages: Vec<String>,
    /// Per owner, the public languages plus those of the owner's documents, where the owner's
    /// documents add one; counted once at open, not per question.
    owner_languages: std::collections::HashMap<String, Vec<String>>,
    /// Every chunk's language, owned or not (`OwnerScope::Everything`).
    all_languages: Vec<String>,
    /// Per equipment model (`model_key`), the public manuals whose front matter names it, by id:
    /// a manual published for a model reaches that model's machines without a registry edit.
    manuals_by_model: std::collections::HashMap<String, Vec<String>>,
    pub settings: SearchSettings,
}

/// How equipment models are compared: `vp-300 ` and `VP-300` are one model.
pub fn model_key(model: &str) -> String {
    model.trim().to_uppercase()
}

impl SearchIndex {
    /// Opens the generation `CURRENT` points at.
    pub fn open(index_dir: &Path) -> Result<Self> {
        let generation = generation::current(index_dir)?.ok_or_else(|| IndexError::NoIndex {
            dir: index_dir.to_path_buf(),
        })?;
        Self::open_generation_dir(
            &generation::generation_dir(index_dir, &generation),
            &generation,
        )
    }

    /// Opens the current generation and checks it was built with `embedder`'s model.
    pub fn open_for(index_dir: &Path, embedder: &dyn Embedder) -> Result<Self> {
        let index = Self::open(index_dir)?;
        if index.meta.model_id != embedder.model_id() || index.meta.dim != embedder.dim() {
            return Err(IndexError::ModelMismatch {
                dir: index_dir.to_path_buf(),
                built_with: index.meta.model_id.clone(),
                requested: embedder.model_id().to_string(),
            });
        }
        Ok(index)
    }

    pub fn open_generation_dir(dir: &Path, generation: &str) -> Result<Self> {
        let bad = |reason: String| IndexError::BadGeneration {
            dir: dir.to_path_buf(),
            generation: generation.to_string(),
            reason,
        };
        let meta = generation::read_meta(dir)?;
        if meta.analyzer != crate::lexical::ANALYZER_VERSION {
            return Err(IndexError::Incompatible {
                dir: dir.to_path_buf(),
                reason: format!(
                    "text analyzer {:?}, this scanaid uses {:?}; rebuild with `scanaid index`",
                    meta.analyzer,
                    crate::lexical::ANALYZER_VERSION
                ),
            });
        }
        let chunks = read_chunks(&dir.join("chunks.jsonl"))?;
        if chunks.len() != meta.n_chunks {
            return Err(bad(format!(
                "chunk table has {} rows, meta says {}",
                chunks.len(),
                meta.n_chunks
            )));
        }
        let data = VectorIndex::read_vectors(&dir.join("vectors.f32"), meta.dim)?;
        let starts = VectorIndex::read_starts(&dir.join("vector-items.u32"))?;
        let expected = meta.n_vectors.checked_mul(meta.dim);
        if expected != Some(data.len()) || starts.len() != meta.n_chunks.saturating_add(1) {
            return Err(bad(format!(
                "{} vectors and {} offsets for {} chunks, meta says {} vectors",
                data.len() / meta.dim.max(1),
                starts.len(),
                meta.n_chunks,
                meta.n_vectors
            )));
        }
        let settings = SearchSettings::default();
        let lexical = LexicalIndex::open(&dir.join("lexical"), settings.lexical)?;
        if lexical.num_docs() as usize != meta.n_chunks {
            return Err(bad(format!(
                "text index has {} docs for {} chunks",
                lexical.num_docs(),
                meta.n_chunks
            )));
        }
        let rows = data.len() / meta.dim.max(1);
        let vectors = VectorIndex::open(meta.dim, data, EXACT_MAX, HnswParams::for_rows(rows), dir)
            .with_items(starts)
            .map_err(bad)?;
        let n_public = chunks.iter().filter(|c| c.owner.is_none()).count();
        let languages = languages_of(chunks.iter().filter(|c| c.owner.is_none()));
        let all_languages = languages_of(chunks.iter());
        let owner_languages = owner_languages(&chunks, &languages);
        let mut manuals_by_model = std::collections::HashMap::<String, Vec<String>>::new();
        for chunk in chunks.iter().filter(|c| c.owner.is_none()) {
            for model in &chunk.models {
                let manuals = manuals_by_model.entry(model_key(model)).or_default();
                if !manuals.contains(&chunk.manual_id) {
                    manuals.push(chunk.manual_id.clone());
                }
            }
        }
        for manuals in manuals_by_model.values_mut() {
            manuals.sort();
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            generation: generation.to_string(),
            meta,
            chunks,
            lexical,
            vectors,
            n_public,
            languages,
            owner_languages,
            all_languages,
            manuals_by_model,
            settings,
        })
    }

    /// The public manuals that name `model` among the equipment they apply to, by id.
    pub fn manuals_for_model(&self, model: &str) -> &[String] {
        self.manuals_by_model
            .get(&model_key(model))
            .map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Chunks of public material: what may be reported where anyone can see it (patients'
    /// documents come and go with their packets).
    pub fn public_len(&self) -> usize {
        self.n_public
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn chunk(&self, ord: u32) -> &Chunk {
        &self.chunks[ord as usize]
    }

    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// Stemmed terms of `text` as BM25 sees them under `analysis`'s rules (stop words removed).
    pub fn analyse(&self, text: &str, analysis: Analysis) -> Vec<String> {
        self.lexical.analyse(text, analysis)
    }

    /// BM25's idf of a term analysed by `analysis`, among this generation's chunks in that
    /// language (rare terms weigh more).
    pub fn term_weight(&self, term: &str, analysis: Analysis) -> f32 {
        self.lexical.term_weight(term, analysis)
    }

    /// The rules chunk `ord` was analysed by (its language's).
    pub fn chunk_analysis(&self, ord: u32) -> Analysis {
        Analysis::of(&self.chunk(ord).language)
    }

    /// The rules the request's question is read by: its language's when identified, else the
    /// person's language's, else the index's first language's (English for an empty index).
    pub fn question_analysis(&self, request: &SearchRequest) -> Analysis {
        match self.question_language(request) {
            Some(tag) => Analysis::of(tag),
            None => request
                .language
                .as_deref()
                .or(self
                    .languages_for(&request.filters)
                    .first()
                    .map(String::as_str))
                .map_or(Analysis::English, Analysis::of),
        }
    }

    /// Changes the retrieval settings (evaluation sweeps; the server keeps the defaults).
    pub fn with_settings(mut self, settings: SearchSettings) -> Result<Self> {
        self.lexical.set_weights(settings.lexical);
        self.settings = settings;
        Ok(self)
    }

    /// Runs a search. `embedder` is needed for the dense and hybrid modes.
    pub fn search(
        &self,
        request: &SearchRequest,
        embedder: Option<&dyn Embedder>,
    ) -> Result<Vec<Hit>> {
        self.search_timed(request, embedder).map(|(hits, _)| hits)
    }

    /// `search`, also returning how long each stage took (`scanaid bench query`).
    pub fn search_timed(
        &self,
        request: &SearchRequest,
        embedder: Option<&dyn Embedder>,
    ) -> Result<(Vec<Hit>, StageTimes)> {
        let mut times = StageTimes::default();
        let clock = std::time::Instant::now;
        if request.query.trim().is_empty() {
            return Err(IndexError::BadRequest("empty query".to_string()));
        }
        let history = user_turns(&request.history, self.settings.history_turns);
        let mask = self.allow_mask(&request.filters);
        // Never more candidates than chunks: a huge limit must not reserve memory for them.
        let k = self
            .settings
            .candidates
            .max(request.limit)
            .min(self.len().max(1));
        let bm25 = || -> Result<Vec<(u32, f32)>> {
            let mut parts = vec![WeightedText {
                text: &request.query,
                weight: 1.0,
            }];
            parts.extend(history.iter().map(|t| WeightedText {
                text: t,
                weight: self.settings.history_weight,
            }));
            self.lexical.search(&parts, &request.filters, k)
        };
        let dense_query = || -> Result<Vec<f32>> {
            let embedder = embedder
                .ok_or_else(|| IndexError::BadRequest("dense search needs an embedder".into()))?;
            let mut texts = vec![request.query.as_str()];
            let joined = history.join(" ");
            if !history.is_empty() {
                texts.push(&joined);
            }
            let vectors = embedder.embed_queries(&texts)?;
            Ok(combine(&vectors, self.settings.history_weight))
        };
        let ms = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1000.0;
        let hits: Vec<Hit> = match request.mode {
            Mode::Bm25 => {
                let t = clock();
                let lexical = bm25()?;
                times.bm25_ms = ms(t);
                to_hits(self, lexical, true)
            }
            Mode::Dense => {
                let t = clock();
                let q = dense_query()?;
                times.embed_ms = ms(t);
                let t = clock();
                let dense = self.vectors.search(&q, k, mask.as_deref());
                times.vectors_ms = ms(t);
                to_hits(self, dense, false)
            }
            Mode::Hybrid => {
                // Sequential on purpose: the query embedding already uses both cores, and BM25
                // takes well under a millisecond; a third thread for it bought nothing measurable.
                let t = clock();
                let q = dense_query()?;
                times.embed_ms = ms(t);
                let t = clock();
                let lexical = bm25()?;
                times.bm25_ms = ms(t);
                let t = clock();
                let dense = self.vectors.search(&q, k, mask.as_deref());
                times.vectors_ms = ms(t);
                let t = clock();
                let dense_of = |ord: u32| self.vectors.item_score(&q, ord as usize);
                let asked_in = self.question_language(request);
                let out_of_reach = |ord: u32| {
                    asked_in.is_some_and(|l| !has_primary(&self.chunks[ord as usize].language, l))
                };
                let fused = fuse(
                    &lexical,
                    &dense,
                    self.settings.fusion,
                    Some(&dense_of),
                    Some(&out_of_reach),
                )
                .into_iter()
                .map(|f| Hit {
                    ord: f.ord,
                    chunk_id: self.chunks[f.ord as usize].chunk_id.clone(),
                    score: f.score,
                    bm25: f.bm25,
                    dense: f.dense,
                })
                .collect();
                times.fuse_ms = ms(t);
                fused
            }
        };
        Ok((hits.into_iter().take(request.limit).collect(), times))
    }

    /// The language the request's question is written in, when the index or the person brings a
    /// second language into play; `None` for one language (every passage is within BM25's reach).
    pub fn question_language(&self, request: &SearchRequest) -> Option<&'static str> {
        question_language(
            &request.query,
            self.languages_for(&request.filters),
            request.language.as_deref(),
        )
    }

    /// The languages a search under `filters` may meet: the public chunks', plus the languages of
    /// the private documents it may see.
    fn languages_for(&self, filters: &Filters) -> &[String] {
        match &filters.owner {
            OwnerScope::Public => &self.languages,
            OwnerScope::Everything => &self.all_languages,
            OwnerScope::PublicAnd(me) => self.owner_languages.get(me).unwrap_or(&self.languages),
        }
    }

    /// The vector leg's allow-mask, or `None` when every chunk is allowed.
    fn allow_mask(&self, filters: &Filters) -> Option<Vec<bool>> {
        let has_private = self.n_public < self.chunks.len();
        let hides_private = has_private && filters.owner != OwnerScope::Everything;
        if filters.is_open() && !hides_private {
            return None;
        }
        Some(self.chunks.iter().map(|c| filters.allows(c)).collect())
    }
}

/// For each owner whose documents bring a language the public chunks do not have, the public
/// languages plus theirs (an owner absent from the map meets the public languages only).
fn owner_languages(
    chunks: &[Chunk],
    public: &[String],
) -> std::collections::HashMap<String, Vec<String>> {
    let mut by_owner: std::collections::HashMap<String, Vec<String>> = Default::default();
    for chunk in chunks {
        let Some(owner) = &chunk.owner else { continue };
        let language = primary(&chunk.language);
        if public.contains(&language) {
            continue;
        }
        let languages = by_owner
            .entry(owner.clone())
            .or_insert_with(|| public.to_vec());
        if !languages.contains(&language) {
            languages.push(language);
            languages.sort();
        }
    }
    by_owner
}

/// The distinct primary language tags of `chunks`, sorted.
fn languages_of<'a>(chunks: impl Iterator<Item = &'a Chunk>) -> Vec<String> {
    let mut languages: Vec<String> = chunks.map(|c| primary(&c.language)).collect();
    languages.sort();
    languages.dedup();
    languages
}

fn to_hits(index: &SearchIndex, list: Vec<(u32, f32)>, is_bm25: bool) -> Vec<Hit> {
    list.into_iter()
        .enumerate()
        .map(|(i, (ord, score))| {
            let leg = Some(LegScore {
                rank: i as u32 + 1,
                score,
            });
            Hit {
                ord,
                chunk_id: index.chunks[ord as usize].chunk_id.clone(),
                score,
                bm25: if is_bm25 { leg } else { None },
                dense: if is_bm25 { None } else { leg },
            }
        })
        .collect()
}

/// The question's vector plus the history's at `weight`, renormalised.
fn combine(vectors: &[Vec<f32>], weight: f32) -> Vec<f32> {
    let mut q = vectors[0].clone();
    if let Some(h) = vectors.get(1) {
        for (x, y) in q.iter_mut().zip(h) {
            *x += weight * y;
        }
        let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        q.iter_mut().for_each(|x| *x /= norm);
    }
    q
}

/// The user's last `n` turns from a history, prefixes removed.
pub fn user_turns(history: &[String], n: usize) -> Vec<String> {
    let mut turns: Vec<String> = history
        .iter()
        .filter_map(|t| {
            let lower = t.trim_start().to_ascii_lowercase();
            if lower.starts_with("agent:")
                || lower.starts_with("assistant:")
                || lower.starts_with("system:")
            {
                None
            } else {
                let text = t.trim_start();
                Some(
                    text.strip_prefix("user:")
                        .or_else(|| text.strip_prefix("User:"))
                        .unwrap_or(text)
                        .trim()
                        .to_string(),
                )
            }
        })
        .filter(|t| !t.is_empty())
        .collect();
    let skip = turns.len().saturating_sub(n);
    turns.drain(..skip);
    turns
}

pub(crate) fn read_chunks(path: &Path) -> Result<Vec<Chunk>> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        let chunk: Chunk = serde_json::from_str(&line).map_err(|e| IndexError::Meta {
            path: path.to_path_buf(),
            message: format!("line {}: {e}", i + 1),
        })?;
        out.push(chunk);
    }
    Ok(out)
}
