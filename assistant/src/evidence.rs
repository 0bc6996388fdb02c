//! What retrieval says about a question, as numbers a confidence model can weigh: how close the best
//! passage is in meaning (the dense leg), how strongly it matches the words (BM25), whether the two
//! legs agree, how far the best stands above the rest, and how much of the question the best passages
//! cover. Written by hand: this is our core, and each feature is a reason a person would give.

use std::collections::HashSet;

use scanaid_indexer::{Analysis, Hit, SearchIndex, SearchRequest};

pub const N_FEATURES: usize = 8;

/// A feature the evidence cannot tell (a margin with nothing to measure it against). The model
/// reads it as the average of what it was fitted on, so it moves the confidence neither way.
pub const UNKNOWN: f64 = f64::NAN;

/// Feature names, in the order of `Evidence::values` (reports and fitted weights use them).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "top_cosine",
    "cosine_margin",
    "mean_cosine_top5",
    "top_bm25_per_term",
    "bm25_margin",
    "legs_agree",
    "overlap_top5",
    "term_coverage_top3",
];

/// The features of one question's retrieval, see `FEATURE_NAMES`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    pub values: [f64; N_FEATURES],
}

/// Evidence from hybrid `hits` (best first, both legs' scores filled in) for `request`'s question,
/// the turn being answered (earlier turns shape retrieval, but coverage is of what is asked now).
/// The question's words are read by its language's rules, and a passage's by its own: a Spanish
/// question's terms are Spanish stems, found only in Spanish passages.
pub fn evidence(index: &SearchIndex, request: &SearchRequest, hits: &[Hit]) -> Evidence {
    let question = request.query.as_str();
    let asked_in = index.question_analysis(request);
    let mut dense: Vec<f64> = hits
        .iter()
        .filter_map(|h| h.dense.map(|d| d.score as f64))
        .collect();
    dense.sort_by(|a, b| b.total_cmp(a));
    let mut bm25: Vec<f64> = hits
        .iter()
        .filter_map(|h| h.bm25.map(|b| b.score as f64))
        .collect();
    bm25.sort_by(|a, b| b.total_cmp(a));

    let terms: Vec<String> = {
        let mut seen = HashSet::new();
        index
            .analyse(question, asked_in)
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect()
    };
    let n_terms = terms.len().max(1) as f64;

    // Every passage the search may see gets a cosine, so fewer than two means fewer than two
    // passages to choose from (a patient's packet of one short note): how far the best stands
    // above the rest is then not known, rather than as far as it stands above 0.
    let runner_up_exists = dense.len() >= 2;
    let top_cosine = dense.first().copied().unwrap_or(0.0);
    let cosine_margin = match (dense.first(), dense.get(1)) {
        (None, _) => 0.0,
        (Some(_), None) => UNKNOWN,
        (Some(best), Some(second)) => best - second,
    };
    let top5 = &dense[..dense.len().min(5)];
    let mean_cosine_top5 = if top5.is_empty() {
        0.0
    } else {
        top5.iter().sum::<f64>() / top5.len() as f64
    };
    // BM25 grows with the number of matching terms; per term it compares across question lengths.
    let top_bm25 = bm25.first().copied().unwrap_or(0.0);
    let top_bm25_per_term = top_bm25 / n_terms;
    // With other passages to choose from, one that alone holds the words stands fully above them.
    let bm25_margin = if !runner_up_exists && !dense.is_empty() {
        UNKNOWN
    } else if top_bm25 > 0.0 {
        (top_bm25 - bm25.get(1).copied().unwrap_or(0.0)) / top_bm25
    } else {
        0.0
    };
    let rank_in = |h: &Hit, bm25_leg: bool| {
        let leg = if bm25_leg { h.bm25 } else { h.dense };
        leg.map(|l| l.rank).filter(|&r| r > 0)
    };
    let best_bm25 = hits
        .iter()
        .find(|h| rank_in(h, true) == Some(1))
        .map(|h| h.ord);
    let best_dense = hits
        .iter()
        .find(|h| rank_in(h, false) == Some(1))
        .map(|h| h.ord);
    let legs_agree = f64::from(best_bm25.is_some() && best_bm25 == best_dense);
    // With five passages or fewer to rank, both legs' top 5 hold the same passages whatever was
    // asked: the overlap says nothing then.
    let overlap_top5 = if (1..=5).contains(&dense.len()) {
        UNKNOWN
    } else {
        hits.iter()
            .filter(|h| {
                rank_in(h, true).is_some_and(|r| r <= 5)
                    && rank_in(h, false).is_some_and(|r| r <= 5)
            })
            .count() as f64
            / 5.0
    };
    let term_coverage_top3 = term_coverage(
        index,
        question,
        asked_in,
        &terms,
        &hits[..hits.len().min(3)],
    );
    Evidence {
        values: [
            top_cosine,
            cosine_margin,
            mean_cosine_top5,
            top_bm25_per_term,
            bm25_margin,
            legs_agree,
            overlap_top5,
            term_coverage_top3,
        ],
    }
}

/// The share of the question's terms the `top` passages hold, the question and a passage read by
/// the same language's rules. With passages in several languages, the best language's share: a
/// question whose language was taken as Spanish ("E-204" asked on a Spanish page) still covers
/// the English passage that holds its words.
fn term_coverage(
    index: &SearchIndex,
    question: &str,
    asked_in: Analysis,
    question_terms: &[String],
    top: &[Hit],
) -> f64 {
    let mut languages: Vec<Analysis> = top.iter().map(|h| index.chunk_analysis(h.ord)).collect();
    languages.sort_by_key(|a| *a as usize);
    languages.dedup();
    languages
        .into_iter()
        .map(|language| {
            let terms: HashSet<String> = if language == asked_in {
                question_terms.iter().cloned().collect()
            } else {
                index.analyse(question, language).into_iter().collect()
            };
            if terms.is_empty() {
                return 0.0;
            }
            let covered: HashSet<String> = top
                .iter()
                .filter(|h| index.chunk_analysis(h.ord) == language)
                .flat_map(|h| index.analyse(&index.chunk(h.ord).embedding_text(), language))
                .collect();
            terms.iter().filter(|t| covered.contains(*t)).count() as f64 / terms.len() as f64
        })
        .fold(0.0, f64::max)
}
