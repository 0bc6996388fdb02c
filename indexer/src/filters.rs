//! Metadata filters. The same filter is applied inside both retrieval legs before their top-k (a
//! tantivy clause on one side, an allow-mask on the other), never to the fused list afterwards, so a
//! filtered query gets a full page of allowed hits instead of a few survivors.

use crate::chunking::Chunk;

/// Which private material a search may see. Public material (no owner) is always visible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OwnerScope {
    /// Public material only.
    #[default]
    Public,
    /// Public material plus the documents owned by this owner (a patient's own packet).
    PublicAnd(String),
    /// Everything, including every owner's documents (evaluation and admin tools only).
    Everything,
}

impl OwnerScope {
    /// Whether material with this owner (`None`: public) is within the scope. The one rule behind
    /// `Filters::allows`, the tantivy owner clause and the languages a search may meet.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match (self, owner) {
            (_, None) | (OwnerScope::Everything, _) => true,
            (OwnerScope::PublicAnd(me), Some(owner)) => me == owner,
            (OwnerScope::Public, Some(_)) => false,
        }
    }
}

/// Each non-empty list means "one of these"; lists are combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub manuals: Vec<String>,
    /// Equipment models; a chunk whose manual lists no model is general material and matches too
    /// when `include_general` is set.
    pub models: Vec<String>,
    pub include_general: bool,
    pub audiences: Vec<String>,
    pub languages: Vec<String>,
    pub owner: OwnerScope,
}

/// The stored value for public material in the owner field (`~` is not allowed in owner ids).
pub const PUBLIC_OWNER: &str = "~public";
/// The stored value in the models field for general material that names no model.
pub const GENERAL_MODEL: &str = "~general";

impl Filters {
    /// Whether a chunk passes; the vector leg's mask and the tantivy clauses implement the same rule.
    pub fn allows(&self, chunk: &Chunk) -> bool {
        let any = |wanted: &[String], have: &[String]| {
            wanted.is_empty() || wanted.iter().any(|w| have.contains(w))
        };
        let owner_ok = self.owner.sees(chunk.owner.as_deref());
        let models_ok = self.models.is_empty()
            || self.models.iter().any(|m| chunk.models.contains(m))
            || (self.include_general && chunk.models.is_empty());
        owner_ok
            && models_ok
            && any(&self.manuals, std::slice::from_ref(&chunk.manual_id))
            && any(&self.audiences, &chunk.audiences)
            && any(&self.languages, std::slice::from_ref(&chunk.language))
    }

    /// True when no filter restricts anything beyond hiding private material.
    pub fn is_open(&self) -> bool {
        self.manuals.is_empty()
            && self.models.is_empty()
            && self.audiences.is_empty()
            && self.languages.is_empty()
    }
}
