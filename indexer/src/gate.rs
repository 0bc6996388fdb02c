//! The publish quality gate: each manual may carry questions with the section that must answer them
//! (`[[check]]` in its front matter). A new generation is compared with the one being served on
//! those questions; if a manual's new version stops finding more of its sections than its
//! `check_tolerance` allows, the new generation is not promoted.

use crate::filters::{Filters, OwnerScope};
use crate::manual::{CheckQuestion, Manual};
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
    /// A check the served text had and the new one removed: still asked, so removing a question
    /// does not remove what it guarded.
    pub removed: bool,
}

/// The served version of the manual a publish changes: its checks are still asked of the new text,
/// under the id the served generation knows it by.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// The manual's id in the generation served now.
    pub id: String,
    /// Its id in the new text (another when the publish renames it).
    pub new_id: String,
    /// Checks of the served text the new text no longer has.
    pub removed: Vec<CheckQuestion>,
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
                "{}{} {:?} -> #{}: before {}, after {}{}",
                if r.regressed() { "REGRESSED " } else { "" },
                r.manual_id,
                r.question,
                r.anchor,
                rank(r.before),
                rank(r.after),
                if r.removed {
                    " (a check this edit removed, still asked)"
                } else {
                    ""
                }
            )
        }));
        out
    }
}

/// Runs every manual's checks against `before` (the generation being served, if any) and `after`.
/// `served`: the changed manual's served version, whose id ranks it in `before` (a rename) and
/// whose removed checks are asked too.
pub fn evaluate(
    manuals: &[Manual],
    before: Option<&SearchIndex>,
    after: &SearchIndex,
    embedder: &dyn Embedder,
    served: Option<&Served>,
) -> Result<GateReport> {
    let mut report = GateReport {
        rows: Vec::new(),
        failing: Vec::new(),
    };
    for manual in manuals {
        let changed = served.filter(|s| s.new_id == manual.meta.id);
        let checks: Vec<(&CheckQuestion, bool)> = manual
            .meta
            .checks
            .iter()
            .map(|c| (c, false))
            .chain(
                changed
                    .into_iter()
                    .flat_map(|s| s.removed.iter().map(|c| (c, true))),
            )
            .collect();
        // Its id in the served generation.
        let before_id = changed.map_or(manual.meta.id.as_str(), |s| s.id.as_str());
        let mut lost = 0;
        for (check, removed) in checks {
            let row = GateRow {
                manual_id: manual.meta.id.clone(),
                question: check.question.clone(),
                anchor: check.anchor.clone(),
                removed,
                before: match before {
                    Some(index) => {
                        rank_of(index, embedder, before_id, &check.question, &check.anchor)?
                    }
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
