//! Grounded, extractive answers: the sentences, numbered steps and table rows of the top passages that
//! answer the question, in the order the manual has them, each carrying the number of the passage it
//! was copied from. Every answer sentence is a verbatim piece of its cited passage (tested), so a
//! citation never points at text that does not say what the answer says.

use std::collections::{HashMap, HashSet};

use scanaid_indexer::identifiers::identifiers;
use scanaid_indexer::{Analysis, Hit, SearchIndex};

/// What a piece of a passage is; steps and rows are never cut, sentences come from paragraphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Sentence,
    /// A numbered step (`1. ...`).
    Step,
    /// A bullet (`- ...`).
    Bullet,
    TableHeader,
    TableRow,
}

/// One piece of a passage: byte range into the passage text, its kind, and its block (consecutive
/// steps or rows of one list or table share a block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub start: usize,
    pub end: usize,
    pub kind: UnitKind,
    pub block: usize,
}

/// Splits markdown passage text into answerable pieces. Headings and table rule lines are not
/// pieces; everything else is, and each piece is a trimmed, verbatim slice of `text`.
pub fn split_units(text: &str) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut block = 0;
    let mut previous: Option<UnitKind> = None;
    let mut offset = 0;
    for raw_line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\n', '\r']);
        let trimmed = line.trim();
        let lead = line.len() - line.trim_start().len();
        let start = line_start + lead;
        let end = start + trimmed.len();
        if trimmed.is_empty() {
            previous = None;
            block += 1;
            continue;
        }
        if trimmed.starts_with('#') {
            previous = None;
            block += 1;
            continue;
        }
        let kind = if trimmed.starts_with('|') {
            if trimmed.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
                // The rule under a header: it makes the previous row the header.
                if let Some(last) = units.last_mut() {
                    let last: &mut Unit = last;
                    if last.kind == UnitKind::TableRow {
                        last.kind = UnitKind::TableHeader;
                    }
                }
                continue;
            }
            UnitKind::TableRow
        } else if is_numbered(trimmed) {
            UnitKind::Step
        } else if trimmed.starts_with("- ")
            || trimmed.starts_with("* ")
            || trimmed.starts_with("+ ")
        {
            UnitKind::Bullet
        } else {
            UnitKind::Sentence
        };
        let same_block = matches!(
            (previous, kind),
            (
                Some(UnitKind::TableRow | UnitKind::TableHeader),
                UnitKind::TableRow
            ) | (
                Some(UnitKind::Step | UnitKind::Bullet),
                UnitKind::Step | UnitKind::Bullet
            )
        );
        if !same_block {
            block += 1;
        }
        if kind == UnitKind::Sentence {
            for (s, e) in sentences(trimmed) {
                units.push(Unit {
                    start: start + s,
                    end: start + e,
                    kind,
                    block,
                });
            }
        } else {
            units.push(Unit {
                start,
                end,
                kind,
                block,
            });
        }
        previous = Some(kind);
    }
    units
}

fn is_numbered(line: &str) -> bool {
    let digits = line.chars().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && digits <= 3 && line[digits..].starts_with(". ")
}

/// Sentence spans of one paragraph line: a break after `.`, `?` or `!` followed by a space and an
/// upper-case letter, a digit or a quote, except after a short abbreviation (`e.g.`, `approx.`, `No.`).
fn sentences(line: &str) -> Vec<(usize, usize)> {
    let bytes = line.as_bytes();
    let mut spans = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 2 < bytes.len() {
        let c = bytes[i];
        if matches!(c, b'.' | b'?' | b'!') && bytes[i + 1] == b' ' {
            let next = line[i + 2..].chars().next().unwrap_or(' ');
            let word_before = line[start..i]
                .rsplit(|ch: char| ch.is_whitespace())
                .next()
                .unwrap_or("");
            let abbreviation = c == b'.'
                && (word_before.len() <= 2 && word_before.chars().all(|ch| ch.is_alphabetic())
                    || ["e.g", "i.e", "approx", "No", "Fig", "max", "min", "etc"]
                        .contains(&word_before));
            if (next.is_uppercase() || next.is_ascii_digit() || next == '"') && !abbreviation {
                spans.push((start, i + 1));
                start = i + 2;
            }
        }
        i += 1;
    }
    if start < line.len() {
        spans.push((start, line.len()));
    }
    spans
}

/// A manual section the answer cites, numbered from 1 in the order the answer first uses it. Two
/// passages of one section share its number: a reader sees a section once, not "[1] Battery,
/// [2] Battery".
#[derive(Debug, Clone, PartialEq)]
pub struct Citation {
    pub n: usize,
    /// The cited passages' positions in the generation they came from, in the order the answer
    /// first uses them.
    pub ords: Vec<u32>,
    pub manual_id: String,
    pub manual_title: String,
    pub revision: String,
    /// The section's heading path, joined with " › ".
    pub section: String,
    pub anchor: String,
    /// The start of the first cited passage, for a preview.
    pub snippet: String,
}

/// One sentence (or step, or row) of an answer and the citation it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerSentence {
    pub text: String,
    pub citation: usize,
    /// The passage `text` is copied from, verbatim: one of its citation's `ords`.
    pub ord: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extract {
    pub sentences: Vec<AnswerSentence>,
    pub citations: Vec<Citation>,
}

/// Passages read, most pieces picked, and most steps of one procedure kept (a procedure cut short
/// is worse than a long answer: a lockout without its first steps is unsafe).
const PASSAGES: usize = 3;
const MAX_PIECES: usize = 4;
const MAX_STEPS: usize = 24;

/// The number a step starts with (`12. Open the valve` -> 12).
fn step_number(text: &str) -> Option<u32> {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The whole procedure a step belongs to, as (chunk ord, step) in manual order. The chunker packs a
/// long procedure into several chunks of one section, so the block of steps in chunk `ord` may
/// continue in the chunk before or after it: it does when that chunk is of the same manual and
/// section and its steps number on from this block's (7 after 6), which keeps two procedures of one
/// section apart.
fn whole_procedure(
    index: &SearchIndex,
    ord: u32,
    units: &[Unit],
    block: usize,
) -> Vec<(u32, Unit)> {
    let steps_of = |ord: u32, units: &[Unit], block: usize| -> Vec<(u32, Unit)> {
        units
            .iter()
            .filter(|u| u.block == block && u.kind == UnitKind::Step)
            .map(|u| (ord, *u))
            .collect()
    };
    let number_at =
        |(ord, unit): (u32, Unit)| step_number(&index.chunk(ord).text[unit.start..unit.end]);
    let same_section = |a: u32, b: u32| {
        let (a, b) = (index.chunk(a), index.chunk(b));
        a.manual_id == b.manual_id && a.anchor == b.anchor
    };
    let mut procedure = steps_of(ord, units, block);
    // Backwards while the procedure opens its chunk.
    let (mut first_ord, mut first_units) = (ord, units.to_vec());
    while let Some(&first) = procedure.first() {
        let opens_chunk = first_units.first().is_some_and(|u| *u == first.1);
        if !opens_chunk || first_ord == 0 || !same_section(first_ord - 1, first_ord) {
            break;
        }
        let previous = first_ord - 1;
        let previous_units = split_units(&index.chunk(previous).text);
        let Some(last) = previous_units.last().filter(|u| u.kind == UnitKind::Step) else {
            break;
        };
        let numbers_on = matches!(
            (number_at((previous, *last)), number_at(first)),
            (Some(a), Some(b)) if a + 1 == b
        );
        if !numbers_on {
            break;
        }
        let mut earlier = steps_of(previous, &previous_units, last.block);
        earlier.extend(procedure);
        procedure = earlier;
        (first_ord, first_units) = (previous, previous_units);
    }
    // Forwards while the procedure closes its chunk.
    let (mut last_ord, mut last_units) = (ord, units.to_vec());
    while let Some(&last) = procedure.last() {
        let closes_chunk = last_units.last().is_some_and(|u| *u == last.1);
        let next = last_ord + 1;
        if !closes_chunk || next as usize >= index.chunks().len() || !same_section(last_ord, next) {
            break;
        }
        let next_units = split_units(&index.chunk(next).text);
        let Some(first) = next_units.first().filter(|u| u.kind == UnitKind::Step) else {
            break;
        };
        let numbers_on = matches!(
            (number_at(last), number_at((next, *first))),
            (Some(a), Some(b)) if a + 1 == b
        );
        if !numbers_on {
            break;
        }
        procedure.extend(steps_of(next, &next_units, first.block));
        (last_ord, last_units) = (next, next_units);
    }
    procedure
}

/// Picks the pieces of the top `hits` that answer `question`. A piece scores by the idf of the
/// question's terms it contains, more for an identifier the question names (E-204, PN 4471-B), a
/// little more the higher its passage ranks. The best piece decides the shape: a step brings its whole
/// procedure, a table row its header; otherwise the pieces scoring at least half the best. Output is
/// in passage order, then manual order.
pub fn extract(index: &SearchIndex, question: &str, hits: &[Hit]) -> Extract {
    // The question's weighted terms as each passage's language reads them (a Spanish passage
    // matches the question's Spanish stems), made once per language met.
    let mut weights_in: HashMap<Analysis, Vec<(String, f32)>> = HashMap::new();
    let mut weights_for = |analysis: Analysis| -> Vec<(String, f32)> {
        weights_in
            .entry(analysis)
            .or_insert_with(|| {
                let terms: HashSet<String> =
                    index.analyse(question, analysis).into_iter().collect();
                terms
                    .into_iter()
                    .map(|t| {
                        let w = index.term_weight(&t, analysis);
                        (t, w)
                    })
                    .collect()
            })
            .clone()
    };
    let wanted_ids: HashSet<String> = identifiers(question).into_iter().collect();

    struct Candidate {
        passage: usize,
        unit: Unit,
        score: f32,
    }
    // The passages read: the top hits, then any chunk a procedure continues into. `group` is the hit
    // a passage belongs to: passages are shown by it, then in manual order.
    let mut ords: Vec<u32> = hits.iter().take(PASSAGES).map(|h| h.ord).collect();
    let mut group: Vec<usize> = (0..ords.len()).collect();
    let mut units_of: Vec<Vec<Unit>> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for (p, &ord) in ords.iter().enumerate() {
        let text = &index.chunk(ord).text;
        let analysis = index.chunk_analysis(ord);
        let weights = weights_for(analysis);
        let units = split_units(text);
        for unit in &units {
            let piece = &text[unit.start..unit.end];
            let piece_terms: HashSet<String> = index.analyse(piece, analysis).into_iter().collect();
            let mut score: f32 = weights
                .iter()
                .filter(|(t, _)| piece_terms.contains(t))
                .map(|(_, w)| w)
                .sum();
            if !wanted_ids.is_empty() {
                let found = identifiers(piece)
                    .into_iter()
                    .filter(|id| wanted_ids.contains(id))
                    .count();
                score += 5.0 * found as f32;
            }
            if score > 0.0 {
                score += 0.5 / (p + 1) as f32;
            }
            candidates.push(Candidate {
                passage: p,
                unit: *unit,
                score,
            });
        }
        units_of.push(units);
    }
    if ords.is_empty() {
        return Extract::default();
    }

    let best = candidates
        .iter()
        .filter(|c| c.score > 0.0)
        .max_by(|a, b| a.score.total_cmp(&b.score).then(b.passage.cmp(&a.passage)));
    // (passage, unit index in that passage) chosen, later put in order.
    let mut chosen: Vec<(usize, Unit)> = Vec::new();
    match best {
        None => {
            // No word in common (a paraphrase the dense leg found): the top passage's opening.
            chosen.extend(units_of[0].iter().take(2).map(|u| (0, *u)));
        }
        Some(best) if best.unit.kind == UnitKind::Step => {
            let procedure = whole_procedure(
                index,
                ords[best.passage],
                &units_of[best.passage],
                best.unit.block,
            );
            // Around the best step when the procedure is longer than an answer takes.
            let at = procedure
                .iter()
                .position(|&(o, u)| o == ords[best.passage] && u == best.unit)
                .unwrap_or(0);
            let from = at
                .saturating_sub(MAX_STEPS / 2)
                .min(procedure.len().saturating_sub(MAX_STEPS));
            let mut spanned: Vec<usize> = Vec::new();
            for (ord, unit) in procedure.into_iter().skip(from).take(MAX_STEPS) {
                let p = match ords.iter().position(|&o| o == ord) {
                    Some(p) => p,
                    None => {
                        ords.push(ord);
                        group.push(best.passage);
                        units_of.push(split_units(&index.chunk(ord).text));
                        ords.len() - 1
                    }
                };
                spanned.push(p);
                chosen.push((p, unit));
            }
            // The chunks of one procedure are shown together, in manual order, even when several of
            // them were hits of their own.
            if let Some(first) = spanned.iter().map(|&p| group[p]).min() {
                for p in spanned {
                    group[p] = first;
                }
            }
            if !chosen.iter().any(|(_, u)| *u == best.unit) {
                chosen.push((best.passage, best.unit));
            }
        }
        Some(best) => {
            let bar = best.score * 0.5;
            let mut ranked: Vec<&Candidate> =
                candidates.iter().filter(|c| c.score >= bar).collect();
            ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
            for c in ranked.into_iter().take(MAX_PIECES) {
                if c.unit.kind == UnitKind::TableRow {
                    let header = units_of[c.passage]
                        .iter()
                        .find(|u| u.block == c.unit.block && u.kind == UnitKind::TableHeader);
                    if let Some(h) = header {
                        chosen.push((c.passage, *h));
                    }
                }
                chosen.push((c.passage, c.unit));
            }
        }
    }
    // A sentence that leads into a list or table ("Call 911 right away if you have:") says nothing
    // without it: it brings the block that follows it.
    let lead_ins: Vec<(usize, Unit)> = chosen
        .iter()
        .filter(|(p, u)| {
            u.kind == UnitKind::Sentence
                && index.chunk(ords[*p]).text[u.start..u.end].ends_with(':')
        })
        .copied()
        .collect();
    for (p, lead_in) in lead_ins {
        let units = &units_of[p];
        let Some(next) = units
            .iter()
            .position(|u| *u == lead_in)
            .and_then(|i| units.get(i + 1))
        else {
            continue;
        };
        if next.kind != UnitKind::Sentence {
            chosen.extend(
                units
                    .iter()
                    .filter(|u| u.block == next.block)
                    .take(MAX_STEPS)
                    .map(|u| (p, *u)),
            );
        }
    }
    // Passages in rank order (measured: ordering them by their best piece's score instead put the
    // expected section first less often, 0.43 against 0.56 of our questions), the chunks a procedure
    // runs over with the passage they continue, in manual order, pieces of one passage in manual
    // order, so steps stay in procedure order.
    chosen.sort_by_key(|(p, u)| (group[*p], ords[*p], u.start));
    chosen.dedup();

    let mut out = Extract::default();
    for (p, unit) in chosen {
        let chunk = index.chunk(ords[p]);
        let same_section = out
            .citations
            .iter()
            .position(|c| c.manual_id == chunk.manual_id && c.anchor == chunk.anchor);
        let n = match same_section {
            Some(i) => {
                if !out.citations[i].ords.contains(&ords[p]) {
                    out.citations[i].ords.push(ords[p]);
                }
                i + 1
            }
            None => {
                out.citations.push(Citation {
                    n: out.citations.len() + 1,
                    ords: vec![ords[p]],
                    manual_id: chunk.manual_id.clone(),
                    manual_title: chunk.manual_title.clone(),
                    revision: chunk.revision.clone(),
                    section: chunk.heading_path.join(" › "),
                    anchor: chunk.anchor.clone(),
                    snippet: chunk.text.chars().take(160).collect(),
                });
                out.citations.len()
            }
        };
        out.sentences.push(AnswerSentence {
            text: chunk.text[unit.start..unit.end].to_string(),
            citation: n,
            ord: ords[p],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<(&str, UnitKind, usize)> {
        split_units(text)
            .into_iter()
            .map(|u| (&text[u.start..u.end], u.kind, u.block))
            .collect()
    }

    #[test]
    fn steps_rows_and_sentences_are_pieces_and_nothing_else_is() {
        let text = "### Draining\n\nClose the supply valve. Wait 2 min. until the tank is cool, e.g. below 40 °C.\n\n1. Open the drain.\n2. Remove the screen.\n\n| Code | Meaning |\n|---|---|\n| F-05 | Rinse below 82 °C |\n| F-06 | Sensor fault |\n";
        let got = pieces(text);
        let texts: Vec<&str> = got.iter().map(|p| p.0).collect();
        assert_eq!(
            texts,
            vec![
                "Close the supply valve.",
                "Wait 2 min. until the tank is cool, e.g. below 40 °C.",
                "1. Open the drain.",
                "2. Remove the screen.",
                "| Code | Meaning |",
                "| F-05 | Rinse below 82 °C |",
                "| F-06 | Sensor fault |",
            ]
        );
        assert_eq!(got[2].1, UnitKind::Step);
        assert_eq!(got[2].2, got[3].2, "the two steps are one procedure");
        assert_eq!(got[4].1, UnitKind::TableHeader);
        assert_eq!(got[5].1, UnitKind::TableRow);
        assert_eq!(got[5].2, got[6].2, "rows of one table share a block");
        assert_ne!(got[3].2, got[5].2);
    }

    #[test]
    fn every_piece_is_a_verbatim_slice() {
        let text = "  Indented line. Next one!  \n- bullet one\n- bullet two\n\n10. Tenth step\n";
        for u in split_units(text) {
            let piece = &text[u.start..u.end];
            assert_eq!(piece, piece.trim(), "{piece:?}");
            assert!(!piece.is_empty());
        }
    }

    proptest::proptest! {
        /// Whatever the markdown, pieces are non-empty, trimmed, in order, and slices of the text
        /// (so a cited passage always contains its sentence word for word).
        #[test]
        fn pieces_are_ordered_verbatim_slices(
            lines in proptest::collection::vec(
                "(#{0,3} |[0-9]{1,2}\\. |- |\\| |\\|---\\|)?[a-zA-Z0-9 .?!|°é-]{0,40}",
                0..12,
            )
        ) {
            let text = lines.join("\n");
            let units = split_units(&text);
            let mut last_end = 0;
            for u in &units {
                proptest::prop_assert!(u.start >= last_end && u.start < u.end && u.end <= text.len());
                proptest::prop_assert!(text.is_char_boundary(u.start) && text.is_char_boundary(u.end));
                let piece = &text[u.start..u.end];
                proptest::prop_assert_eq!(piece, piece.trim());
                last_end = u.end;
            }
        }
    }
}
