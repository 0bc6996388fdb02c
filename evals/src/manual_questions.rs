//! Our own question set over the bundled manuals: each question names the manual section that must
//! answer it. Reports where that section ranks (hit@1/3/10, MRR@10) and which questions missed.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use scanaid_indexer::{Filters, Mode, OwnerScope, SearchIndex, SearchRequest};
use scanaid_models::Embedder;

use crate::error::Result;
use crate::metrics::percentile;

#[derive(Debug, Clone, Deserialize)]
pub struct ManualQuestion {
    pub id: String,
    pub question: String,
    pub manual: String,
    pub anchor: String,
    #[serde(default)]
    pub audience: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub id: String,
    pub question: String,
    pub expected: String,
    pub got: String,
    /// 1-based rank of the expected section in the top 10, if there.
    pub rank: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManualReport {
    pub mode: String,
    pub n_questions: usize,
    #[serde(rename = "hit@1")]
    pub hit1: f64,
    #[serde(rename = "hit@3")]
    pub hit3: f64,
    #[serde(rename = "hit@10")]
    pub hit10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr10: f64,
    pub latency_ms: crate::retrieval::Latency,
    pub misses: Vec<Miss>,
}

pub fn load_questions(path: &Path) -> Result<Vec<ManualQuestion>> {
    if !path.is_file() {
        return Err(crate::error::EvalError::MissingQuestions {
            path: path.to_path_buf(),
        });
    }
    crate::beir::jsonl(path)
}

/// Runs every question against `index` and scores the rank of its expected section.
pub fn evaluate(
    index: &SearchIndex,
    embedder: &dyn Embedder,
    questions: &[ManualQuestion],
    mode: Mode,
) -> Result<ManualReport> {
    let mut ranks = Vec::new();
    let mut latencies = Vec::new();
    let mut misses = Vec::new();
    for q in questions {
        let request = SearchRequest {
            query: q.question.clone(),
            history: Vec::new(),
            filters: Filters {
                owner: OwnerScope::Public,
                ..Filters::default()
            },
            limit: 10,
            mode,
            language: None,
        };
        let started = Instant::now();
        let hits = index.search(&request, Some(embedder))?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        // Several chunks can share a section: rank sections, not chunks.
        let mut sections: Vec<(String, String)> = Vec::new();
        for h in &hits {
            let c = index.chunk(h.ord);
            let key = (c.manual_id.clone(), c.anchor.clone());
            if !sections.contains(&key) {
                sections.push(key);
            }
        }
        let rank = sections
            .iter()
            .position(|(m, a)| *m == q.manual && *a == q.anchor)
            .map(|i| i + 1);
        if rank != Some(1) {
            misses.push(Miss {
                id: q.id.clone(),
                question: q.question.clone(),
                expected: format!("{}#{}", q.manual, q.anchor),
                got: sections
                    .first()
                    .map(|(m, a)| format!("{m}#{a}"))
                    .unwrap_or_default(),
                rank,
            });
        }
        ranks.push(rank);
    }
    let n = questions.len().max(1) as f64;
    let hit = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
    Ok(ManualReport {
        mode: format!("{mode:?}").to_lowercase(),
        n_questions: questions.len(),
        hit1: hit(1),
        hit3: hit(3),
        hit10: hit(10),
        mrr10: ranks
            .iter()
            .map(|r| r.map_or(0.0, |r| 1.0 / r as f64))
            .sum::<f64>()
            / n,
        latency_ms: crate::retrieval::Latency {
            p50: percentile(&latencies, 50.0),
            p95: percentile(&latencies, 95.0),
            mean: latencies.iter().sum::<f64>() / n,
        },
        misses,
    })
}
