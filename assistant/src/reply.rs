//! One turn: retrieve (scoped by the caller's filters, with the conversation), extract the answer,
//! weigh the evidence, and decide whether to offer a person instead of (or beside) the answer.

use scanaid_indexer::{Mode, Result, SearchIndex, SearchRequest};
use scanaid_models::Embedder;

use crate::answer::{extract, Extract};
use crate::confidence::ShippedModel;
use crate::evidence::{evidence, Evidence};

/// Passages retrieved per turn (the answer reads the top few; evidence looks at the top 20).
const RETRIEVED: usize = 20;

#[derive(Debug, Clone)]
pub struct Reply {
    pub extract: Extract,
    /// P(the manuals answer this), from the shipped model.
    pub confidence: f64,
    /// Below the model's threshold: say so, still show the best sources, offer a person.
    pub unsure: bool,
    pub evidence: Evidence,
}

/// Answers `question` with `history` (earlier turns, oldest first, `user:`/`agent:` prefixed) inside
/// `request`'s filters. `request.query` and `history` are set from the arguments.
pub fn reply(
    index: &SearchIndex,
    embedder: &dyn Embedder,
    model: &ShippedModel,
    mut request: SearchRequest,
) -> Result<Reply> {
    request.mode = Mode::Hybrid;
    request.limit = RETRIEVED;
    let hits = index.search(&request, Some(embedder))?;
    let evidence = evidence(index, &request, &hits);
    let confidence = if hits.is_empty() {
        0.0
    } else {
        model.model.predict(&evidence.values)
    };
    Ok(Reply {
        extract: extract(index, &request.query, &hits),
        confidence,
        unsure: confidence < model.threshold,
        evidence,
    })
}
