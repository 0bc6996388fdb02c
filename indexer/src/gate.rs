//! The publish quality gate: each manual may carry questions with the section that must answer them
//! (`[[check]]` in its front matter). A new generation is compared with the one being served on
//! those questions; if a manual's new version stops finding more of its sections than its
//! `check_tolerance` allows, the new generation is not promoted.

use crate::filters::{Filters, OwnerScope};
use crate::manual::Manual;
use crate::search::{Mode, SearchIndex, SearchRequest};
use crate::Result;
use scanaid_models::Embedder;

/// A question must bring its section into the top this many hybrid hits to count as found.
pub const GATE_TOP_K: usize = 5;

/// One question's outcome: the rank of its section before and after (1-based), if found.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRow {
    pub manual_id: String,
    pub question: String,
    pub anchor: String,
    pub before: Option<usize>,
    pub after: Option<usize>,
}

impl GateRow {
    /// Found before, not any more.
    pub fn regressed(&self) -> bool {
        self.before.is_some() && self.after.is_none()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    pub rows: Vec<GateRow>,
    /// Manuals that lost more questions than their tolerance: (id, lost, tolerance).
    pub failing: Vec<(String, usize, usize)>,
}

impl GateReport {
    pub fn passed(&self) -> bool {
        self.failing.is_empty()
    }

    /// The report as lines for people.
    pub fn lines(&self) -> Vec<String> {
        let rank = |r: Option<usize>| r.map_or("not in top 5".to_string(), |r| format!("#{r}"));
        let mut out: Vec<String> = self
            .failing
            .iter()
            .map(|(id, lost, tolerance)| {
                format!(
                    "{id}: {lost} question(s) no longer find their section (tolerance {tolerance})"
                )
            })
            .collect();
        out.extend(self.rows.iter().map(|r| {
            format!(
                "{}{} {:?} -> #{}: before {}, after {}",
                if r.regressed() { "REGRESSED " } else { "" },
                r.manual_id,
                r.question,
                r.anchor,
                rank(r.before),
                rank(r.after)
            )
        }));
        out
    }
}

/// Runs every manual's checks against `before` (the generation being served, if any) and `after`.
pub fn evaluate(
    manuals: &[Manual],
    before: Option<&SearchIndex>,
    after: &SearchIndex,
    embedder: &dyn Embedder,
) -> Result<GateReport> {
    let mut report = GateReport {
        rows: Vec::new(),
        failing: Vec::new(),
    };
    for manual in manuals.iter().filter(|m| !m.meta.checks.is_empty()) {
        let mut lost = 0;
        for check in &manual.meta.checks {
            let row = GateRow {
                manual_id: manual.meta.id.clone(),
                question: check.question.clone(),
                anchor: check.anchor.clone(),
                before: match before {
                    Some(index) => rank_of(
                        index,
                        embedder,
                        &manual.meta.id,
                        &check.question,
                        &check.anchor,
                    )?,
                    None => None,
                },
                after: rank_of(
                    after,
                    embedder,
                    &manual.meta.id,
                    &check.question,
                    &check.anchor,
                )?,
            };
            if row.regressed() {
                lost += 1;
            }
            report.rows.push(row);
        }
        if lost > manual.meta.check_tolerance {
            report
                .failing
                .push((manual.meta.id.clone(), lost, manual.meta.check_tolerance));
        }
    }
    Ok(report)
}

/// Where the section `manual#anchor` ranks for `question` among public material.
fn rank_of(
    index: &SearchIndex,
    embedder: &dyn Embedder,
    manual: &str,
    question: &str,
    anchor: &str,
) -> Result<Option<usize>> {
    let request = SearchRequest {
        filters: Filters {
            owner: OwnerScope::Public,
            ..Filters::default()
        },
        ..SearchRequest::new(question, Mode::Hybrid, GATE_TOP_K)
    };
    let hits = index.search(&request, Some(embedder))?;
    Ok(hits
        .iter()
        .position(|h| {
            let c = index.chunk(h.ord);
            c.manual_id == manual && c.anchor == anchor
        })
        .map(|p| p + 1))
}
