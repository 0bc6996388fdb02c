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
/// pieces; everything else is, and each piece is a trimmed, verbatim slice of `text`. A piece may
/// span lines, as markdown reads them: a paragraph's sentences run on over hard line breaks, a list
/// item keeps its wrapped lines (indented or lazy), a step keeps the bullets nested under it, and a
/// table may be written with or without its outer pipes.
pub fn split_units(text: &str) -> Vec<Unit> {
    let lines = lines_of(text);
    let mut units: Vec<Unit> = Vec::new();
    let mut block = 0;
    let mut previous: Option<UnitKind> = None;
    // The list item that text lines continue, with its marker's indent.
    let mut item: Option<(usize, usize)> = None;
    // The paragraph being read, as a byte range, split into sentences when it ends.
    let mut paragraph: Option<(usize, usize)> = None;
    let mut in_table = false;
    let flush = |paragraph: &mut Option<(usize, usize)>, units: &mut Vec<Unit>, block: usize| {
        if let Some((start, end)) = paragraph.take() {
            for (s, e) in sentences(&text[start..end]) {
                units.push(Unit {
                    start: start + s,
                    end: start + e,
                    kind: UnitKind::Sentence,
                    block,
                });
            }
        }
    };
    for (i, line) in lines.iter().enumerate() {
        let content = &text[line.start..line.end];
        if content.is_empty() || content.starts_with('#') || is_thematic_break(content) {
            flush(&mut paragraph, &mut units, block);
            (previous, item, in_table) = (None, None, false);
            block += 1;
            continue;
        }
        let header_follows = lines
            .get(i + 1)
            .is_some_and(|next| is_table_rule(&text[next.start..next.end]));
        if is_table_rule(content)
            && (content.starts_with('|') || in_table || previous == Some(UnitKind::TableRow))
        {
            // The rule under a header: it makes the previous row the header.
            if let Some(last) = units.last_mut().filter(|u| u.kind == UnitKind::TableRow) {
                last.kind = UnitKind::TableHeader;
            }
            in_table = true;
            continue;
        }
        let table_row =
            content.starts_with('|') || (content.contains('|') && (in_table || header_follows));
        let kind = if table_row {
            UnitKind::TableRow
        } else if is_numbered(content) {
            UnitKind::Step
        } else if is_bullet(content) {
            UnitKind::Bullet
        } else {
            UnitKind::Sentence
        };
        match (kind, item) {
            // Bullets nested under a step are part of it: a procedure keeps what each step says.
            (UnitKind::Bullet | UnitKind::Step, Some((at, indent)))
                if line.indent > indent && units[at].kind == UnitKind::Step =>
            {
                units[at].end = line.end;
                continue;
            }
            // A wrapped line of a list item: indented under it, or (markdown's lazy continuation)
            // not indented but finishing its sentence.
            (UnitKind::Sentence, Some((at, indent)))
                if line.indent > indent
                    || !ends_sentence(&text[units[at].start..units[at].end]) =>
            {
                units[at].end = line.end;
                continue;
            }
            (UnitKind::Sentence, _) => {
                match &mut paragraph {
                    Some((start, end)) if !ends_sentence(&text[*start..*end]) => *end = line.end,
                    _ => {
                        flush(&mut paragraph, &mut units, block);
                        block += 1;
                        paragraph = Some((line.start, line.end));
                    }
                }
                (previous, item) = (Some(kind), None);
                continue;
            }
            _ => {}
        }
        flush(&mut paragraph, &mut units, block);
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
        in_table = kind == UnitKind::TableRow;
        item =
            matches!(kind, UnitKind::Step | UnitKind::Bullet).then_some((units.len(), line.indent));
        units.push(Unit {
            start: line.start,
            end: line.end,
            kind,
            block,
        });
        previous = Some(kind);
    }
    flush(&mut paragraph, &mut units, block);
    units
}

/// Whether `text` ends a sentence (`.`, `?`, `!`, `:` or `;`, maybe inside a closing quote or
/// bracket). A passage's blocks are joined by single line breaks, the same as a paragraph's wrapped
/// lines, so a line is read as running on only when the text before it has not ended a sentence.
fn ends_sentence(text: &str) -> bool {
    text.trim_end()
        .trim_end_matches([')', ']', '"', '\'', '”', '’', '*', '_'])
        .ends_with(['.', '?', '!', ':', ';'])
}

/// One line of a passage: the byte range of its trimmed content, and how far it is indented.
struct Line {
    start: usize,
    end: usize,
    indent: usize,
}

fn lines_of(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut offset = 0;
    for raw_line in text.split_inclusive('\n') {
        let line = raw_line.trim_end_matches(['\n', '\r']);
        let indent = line.len() - line.trim_start().len();
        let start = offset + indent;
        lines.push(Line {
            start,
            end: start + line.trim().len(),
            indent,
        });
        offset += raw_line.len();
    }
    lines
}

/// A table's rule line (`|---|:---:|`, or `--- | ---` without outer pipes).
fn is_table_rule(line: &str) -> bool {
    line.contains('-')
        && (line.contains('|') || line.contains(':'))
        && line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// A thematic break (`---`, `***`, `___`, `- - -`): a line between blocks, not text.
fn is_thematic_break(line: &str) -> bool {
    let marks: Vec<char> = line.chars().filter(|c| *c != ' ').collect();
    marks.len() >= 3 && ['-', '*', '_'].contains(&marks[0]) && marks.iter().all(|c| *c == marks[0])
}

fn is_bullet(line: &str) -> bool {
    line.starts_with("- ") || line.starts_with("* ") || line.starts_with("+ ")
}

/// A numbered list item: `12. ...` or `12) ...`.
fn is_numbered(line: &str) -> bool {
    let digits = line.chars().take_while(|c| c.is_ascii_digit()).count();
    digits > 0
        && digits <= 3
        && (line[digits..].starts_with(". ") || line[digits..].starts_with(") "))
}

/// An answer piece as one line: a piece that spans lines (a wrapped paragraph or step) has its
/// line breaks and indentation read as one space, as markdown renders them.
pub fn one_line(piece: &str) -> std::borrow::Cow<'_, str> {
    if !piece.contains('\n') {
        return std::borrow::Cow::Borrowed(piece);
    }
    std::borrow::Cow::Owned(
        piece
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Sentence spans of one paragraph (which may run over lines): a break after `.`, `?` or `!` followed
/// by white space and an
/// upper-case letter, a digit or a quote, except after a short abbreviation (`e.g.`, `approx.`, `No.`).
fn sentences(paragraph: &str) -> Vec<(usize, usize)> {
    let bytes = paragraph.as_bytes();
    let mut spans = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 2 < bytes.len() {
        let c = bytes[i];
        if matches!(c, b'.' | b'?' | b'!') && bytes[i + 1].is_ascii_whitespace() {
            // The break may be a space or a line break with the next line's indentation.
            let gap = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            let next_at = i + 1 + gap;
            let next = paragraph[next_at..].chars().next().unwrap_or(' ');
            let word_before = paragraph[start..i]
                .rsplit(|ch: char| ch.is_whitespace())
                .next()
                .unwrap_or("");
            let abbreviation = c == b'.'
                && (word_before.len() <= 2 && word_before.chars().all(|ch| ch.is_alphabetic())
                    || ["e.g", "i.e", "approx", "No", "Fig", "max", "min", "etc"]
                        .contains(&word_before));
            if (next.is_uppercase() || next.is_ascii_digit() || next == '"') && !abbreviation {
                spans.push((start, i + 1));
                start = next_at;
                i = next_at;
                continue;
            }
        }
        i += 1;
    }
    if start < paragraph.len() {
        spans.push((start, paragraph.len()));
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

/// Whether a step numbered `b` follows one numbered `a` in one list: the next number, or `1.` after
/// `1.` (markdown numbers a list written with `1.` on every item itself, and writers use that).
fn numbers_on(a: Option<u32>, b: Option<u32>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a + 1 == b || (a == 1 && b == 1))
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
        let numbers_on = numbers_on(number_at((previous, *last)), number_at(first));
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
        let numbers_on = numbers_on(number_at(last), number_at((next, *first)));
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
    fn pieces_run_over_line_breaks_as_markdown_reads_them() {
        let texts = |text: &'static str| -> Vec<(&'static str, UnitKind)> {
            split_units(text)
                .into_iter()
                .map(|u| (&text[u.start..u.end], u.kind))
                .collect()
        };
        // A hard-wrapped paragraph: sentences, not lines.
        assert_eq!(
            texts("Close the supply valve and\nwait until it cools. Then open\nthe drain.\n"),
            vec![
                (
                    "Close the supply valve and\nwait until it cools.",
                    UnitKind::Sentence
                ),
                ("Then open\nthe drain.", UnitKind::Sentence),
            ]
        );
        // A wrapped step keeps its second line; a step keeps the bullets nested under it.
        let procedure = "1. Open the drain valve and wait\n   until the water stops.\n2. Check:\n   - the seal\n   - the valve\n3. Close the valve.\n";
        let got = texts(procedure);
        assert_eq!(
            got.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![
                "1. Open the drain valve and wait\n   until the water stops.",
                "2. Check:\n   - the seal\n   - the valve",
                "3. Close the valve.",
            ]
        );
        assert!(got.iter().all(|p| p.1 == UnitKind::Step));
        // A lazy continuation (not indented) belongs to the item too.
        assert_eq!(
            texts("- Replace the filter when\nthe lamp blinks.\n")[0].0,
            "- Replace the filter when\nthe lamp blinks."
        );
        // `1)` numbers steps as `1.` does.
        let got = texts("1) Open the drain.\n2) Remove the screen.\n");
        assert!(got.iter().all(|p| p.1 == UnitKind::Step), "{got:?}");
        // A table without outer pipes: a header and a row, and the rule is no piece.
        assert_eq!(
            texts("Code | Meaning\n--- | ---\nF-05 | Rinse below 82 °C\n"),
            vec![
                ("Code | Meaning", UnitKind::TableHeader),
                ("F-05 | Rinse below 82 °C", UnitKind::TableRow),
            ]
        );
        // A thematic break is no piece, and ends the paragraph before it.
        assert_eq!(
            texts("Keep the lid closed.\n\n---\n\nStore dry.\n"),
            vec![
                ("Keep the lid closed.", UnitKind::Sentence),
                ("Store dry.", UnitKind::Sentence),
            ]
        );
        assert_eq!(
            one_line("2. Check:\n   - the seal\n   - the valve"),
            "2. Check: - the seal - the valve"
        );
        assert_eq!(one_line("| F-05 |  Rinse |"), "| F-05 |  Rinse |");
        assert!(numbers_on(Some(1), Some(1)) && numbers_on(Some(6), Some(7)));
        assert!(!numbers_on(Some(6), Some(1)) && !numbers_on(Some(3), Some(3)));
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
                " {0,4}(#{0,3} |[0-9]{1,2}[.)] |- |\\| |\\|---\\||--- \\| ---)?[a-zA-Z0-9 .?!|°é-]{0,40}",
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
