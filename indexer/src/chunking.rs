//! Manuals to sections and chunks. A section is the text under one heading (with its heading path and
//! a stable anchor); a chunk is a run of whole blocks of one section sized for the embedder. A table
//! row, a list item and a numbered step are never split; an over-long paragraph is split at sentence
//! ends, an over-long code block or quote at line ends. Chunk ids hash the manual, anchor and text, so unchanged text keeps its id.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manual::Manual;

/// A unit of retrieval. This is also the on-disk record of a generation's chunk table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub chunk_id: String,
    pub manual_id: String,
    pub manual_title: String,
    pub revision: String,
    pub language: String,
    pub models: Vec<String>,
    pub audiences: Vec<String>,
    pub owner: Option<String>,
    /// Headings from the top of the manual down to this chunk's section.
    pub heading_path: Vec<String>,
    /// The section's anchor slug (unique within the manual); empty for text before the first heading.
    pub anchor: String,
    /// 1-based line in the manual file where the chunk's first block starts.
    pub line: usize,
    pub text: String,
}

impl Chunk {
    /// What the embedder sees: where the text sits in the manual, then the text.
    pub fn embedding_text(&self) -> String {
        let mut s = self.location();
        s.push('\n');
        s.push_str(&self.text);
        s
    }

    /// The manual title and heading path, as one line.
    fn location(&self) -> String {
        let mut s = self.manual_title.clone();
        for h in &self.heading_path {
            s.push_str(" > ");
            s.push_str(h);
        }
        s
    }

    /// The texts embedded for this chunk: the whole embedding text when its body fits in
    /// `window_tokens` (estimated), else consecutive windows of whole words of about that size, each
    /// headed by the location. MiniLM was trained on 128-token inputs: one vector per window keeps
    /// every part of a long text represented instead of averaging it away or truncating it.
    pub fn embedding_windows(&self, window_tokens: usize) -> Vec<String> {
        if estimate_tokens(&self.text) <= window_tokens {
            return vec![self.embedding_text()];
        }
        let location = self.location();
        let mut windows = Vec::new();
        let mut current = String::new();
        let mut tokens = 0;
        for word in self.text.split_whitespace() {
            let t = estimate_tokens(word);
            if tokens + t > window_tokens && !current.is_empty() {
                windows.push(format!("{location}\n{current}"));
                current.clear();
                tokens = 0;
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
            tokens += t;
        }
        if !current.is_empty() {
            windows.push(format!("{location}\n{current}"));
        }
        windows
    }
}

/// Chunk size, in estimated embedder tokens.
#[derive(Debug, Clone, Copy)]
pub struct ChunkingConfig {
    /// Blocks are packed into a chunk until the next one would pass this.
    pub target_tokens: usize,
    /// A block longer than this is split (a paragraph at sentence ends, code and quotes at line ends);
    /// a short tail chunk merges back below it.
    pub max_tokens: usize,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        // 256 tokens is the embedder's window; leave room for the title and heading path prefix.
        Self {
            target_tokens: 160,
            max_tokens: 220,
        }
    }
}

/// Estimated WordPiece tokens: one per short word, more for long words, one per punctuation mark.
pub fn estimate_tokens(text: &str) -> usize {
    let mut tokens = 0;
    for word in text.split_whitespace() {
        let alnum = word.chars().filter(|c| c.is_alphanumeric()).count();
        let punct = word.chars().count() - alnum;
        tokens += alnum.div_ceil(6).max(usize::from(alnum > 0)) + punct;
    }
    tokens
}

/// A section of a manual: one heading and what follows it up to the next heading.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub heading_path: Vec<String>,
    pub anchor: String,
    pub audiences: Vec<String>,
    /// 1-based line of the heading in the manual file (the body's first line for the preamble).
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum UnitKind {
    /// A plain paragraph: split at sentence ends when over-long.
    Paragraph,
    /// A code block (fenced or indented): split only at line ends, each piece fenced again.
    Code,
    /// Any other top-level block (a quote, HTML): split only at line ends, keeping them.
    Block,
    Item,
    TableHeader,
    TableRow,
}

#[derive(Debug, Clone)]
struct Unit {
    text: String,
    kind: UnitKind,
    line: usize,
    /// True when the unit continues the previous one's paragraph (a sentence split), joined by a space.
    continues: bool,
}

/// The sections of a manual and their chunks.
#[derive(Debug, Clone)]
pub struct ChunkedManual {
    pub sections: Vec<Section>,
    pub chunks: Vec<Chunk>,
}

/// A heading being read: its level, explicit `{#id}`, `{audience=...}` list and 1-based line.
type OpenHeading = (HeadingLevel, Option<String>, Option<Vec<String>>, usize);

/// Splits a manual into sections and chunks.
pub fn chunk_manual(manual: &Manual, config: ChunkingConfig) -> ChunkedManual {
    let body = &manual.body;
    let line_starts = line_starts(body);
    let line_of =
        |offset: usize| manual.body_line + line_starts.partition_point(|&s| s <= offset) - 1;
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES;
    let parser = Parser::new_ext(body, options).into_offset_iter();

    let mut out = ChunkedManual {
        sections: Vec::new(),
        chunks: Vec::new(),
    };
    let mut anchors = AnchorSet::default();
    // (level, heading text, explicit audience) of the headings above the current point.
    let mut stack: Vec<(HeadingLevel, String, Option<Vec<String>>)> = Vec::new();
    let mut section = Section {
        heading_path: Vec::new(),
        anchor: String::new(),
        audiences: manual.meta.audience.clone(),
        line: manual.body_line,
    };
    let mut units: Vec<Unit> = Vec::new();
    let mut depth = 0usize;
    let mut in_heading: Option<OpenHeading> = None;
    let mut heading_text = String::new();
    let mut top_kind: Option<&'static str> = None;

    let push_unit = |units: &mut Vec<Unit>, mut range: Range<usize>, kind: UnitKind| {
        if kind == UnitKind::Code {
            // An indented block's range starts after its first line's indentation; the unit starts
            // at the line so every line of it keeps the same indentation.
            range.start = line_starts[line_starts.partition_point(|&s| s <= range.start) - 1];
        }
        let mut text = body[range.clone()].trim_end().to_string();
        if kind == UnitKind::TableHeader {
            // The delimiter row under a table's header belongs to no event; without it the chunk's
            // text no longer says which row is the header (answers show rows without column names).
            if let Some(rule) = delimiter_row_after(body, range.end) {
                text.push('\n');
                text.push_str(rule);
            }
        }
        if !text.trim().is_empty() {
            units.push(Unit {
                text,
                kind,
                line: line_of(range.start),
                continues: false,
            });
        }
    };

    for (event, range) in parser {
        match event {
            Event::Start(tag) => {
                if depth == 0 {
                    match &tag {
                        Tag::Heading {
                            level, id, attrs, ..
                        } => {
                            let audience = attrs
                                .iter()
                                .find(|(k, _)| k.as_ref() == "audience")
                                .and_then(|(_, v)| v.as_ref())
                                .map(|v| split_list(v));
                            in_heading = Some((
                                *level,
                                id.as_ref().map(|s| s.to_string()),
                                audience,
                                line_of(range.start),
                            ));
                            heading_text.clear();
                            top_kind = Some("heading");
                        }
                        Tag::List(_) => top_kind = Some("list"),
                        Tag::Table(_) => top_kind = Some("table"),
                        _ => {
                            top_kind = Some("block");
                            let kind = match &tag {
                                Tag::Paragraph => UnitKind::Paragraph,
                                Tag::CodeBlock(_) => UnitKind::Code,
                                _ => UnitKind::Block,
                            };
                            push_unit(&mut units, range.clone(), kind);
                        }
                    }
                } else if depth == 1 {
                    match (&tag, top_kind) {
                        (Tag::Item, Some("list")) => {
                            push_unit(&mut units, range.clone(), UnitKind::Item)
                        }
                        (Tag::TableHead, Some("table")) => {
                            push_unit(&mut units, range.clone(), UnitKind::TableHeader)
                        }
                        (Tag::TableRow, Some("table")) => {
                            push_unit(&mut units, range.clone(), UnitKind::TableRow)
                        }
                        _ => {}
                    }
                }
                depth += 1;
            }
            Event::End(tag_end) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if let (TagEnd::Heading(_), Some((level, id, audience, line))) =
                        (tag_end, in_heading.take())
                    {
                        flush_section(
                            manual,
                            &section,
                            std::mem::take(&mut units),
                            config,
                            &mut out.chunks,
                        );
                        out.sections.push(section.clone());
                        while stack.last().is_some_and(|(l, _, _)| *l >= level) {
                            stack.pop();
                        }
                        let title = heading_text
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ");
                        stack.push((level, title, audience));
                        let anchor = anchors.claim(id.as_deref(), &stack.last().unwrap().1);
                        let audiences = stack
                            .iter()
                            .rev()
                            .find_map(|(_, _, a)| a.clone())
                            .unwrap_or_else(|| manual.meta.audience.clone());
                        section = Section {
                            heading_path: stack.iter().map(|(_, t, _)| t.clone()).collect(),
                            anchor,
                            audiences,
                            line,
                        };
                    }
                    top_kind = None;
                }
            }
            Event::Text(t) | Event::Code(t) if in_heading.is_some() => heading_text.push_str(&t),
            // A heading written over two lines (setext) keeps a space between them.
            Event::SoftBreak | Event::HardBreak if in_heading.is_some() => heading_text.push(' '),
            Event::Html(_) | Event::Text(_) | Event::Rule | Event::InlineHtml(_) if depth == 0 => {
                // Loose top-level events (rare): keep their text.
                push_unit(&mut units, range, UnitKind::Block);
            }
            _ => {}
        }
    }
    flush_section(manual, &section, units, config, &mut out.chunks);
    out.sections.push(section);
    // The preamble section exists only if it has text.
    if out.sections.first().is_some_and(|s| s.anchor.is_empty())
        && !out.chunks.iter().any(|c| c.anchor.is_empty())
    {
        out.sections.remove(0);
    }
    assign_ids(&mut out.chunks);
    out
}

/// The table delimiter row (`|---|:--:|`) on the line at or after `offset`, trimmed, if that line is one.
fn delimiter_row_after(body: &str, offset: usize) -> Option<&str> {
    let rest = body.get(offset..)?;
    // The header's range may end at its line break or just before it.
    let rest = match rest.find('\n') {
        Some(i) if rest[..i].trim().is_empty() => &rest[i + 1..],
        _ => rest,
    };
    let line = rest.lines().next()?.trim();
    let is_rule = line.contains('-')
        && line.contains('|')
        && line
            .chars()
            .all(|c| matches!(c, '|' | '-' | ':' | ' ' | '\t'));
    is_rule.then_some(line)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split([',', ' ', '+'])
        .map(|s| s.trim().trim_matches('"').to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Packs a section's units into chunks.
fn flush_section(
    manual: &Manual,
    section: &Section,
    units: Vec<Unit>,
    config: ChunkingConfig,
    chunks: &mut Vec<Chunk>,
) {
    let units = split_long_paragraphs(units, config.max_tokens);
    let mut current: Vec<Unit> = Vec::new();
    let mut current_tokens = 0;
    let mut table_header: Option<String> = None;
    let mut packed: Vec<Vec<Unit>> = Vec::new();
    for unit in units {
        let tokens = estimate_tokens(&unit.text);
        if !current.is_empty() && current_tokens + tokens > config.target_tokens {
            // A header whose first row does not fit stays with its rows (the next chunk repeats
            // it), not at the end of this chunk with none.
            if unit.kind == UnitKind::TableRow
                && current
                    .last()
                    .is_some_and(|u| u.kind == UnitKind::TableHeader)
            {
                current.pop();
            }
            if !current.is_empty() {
                packed.push(std::mem::take(&mut current));
            }
            current_tokens = 0;
        }
        match unit.kind {
            UnitKind::TableHeader => table_header = Some(unit.text.clone()),
            UnitKind::TableRow => {
                // A chunk that starts mid-table repeats the header so the row keeps its column names.
                if current.is_empty() {
                    if let Some(header) = &table_header {
                        current_tokens += estimate_tokens(header);
                        current.push(Unit {
                            text: header.clone(),
                            kind: UnitKind::TableHeader,
                            line: unit.line,
                            continues: false,
                        });
                    }
                }
            }
            _ => table_header = None,
        }
        current_tokens += tokens;
        current.push(unit);
    }
    if !current.is_empty() {
        // A short tail merges into the previous chunk when both fit the hard limit.
        let tail_tokens: usize = current.iter().map(|u| estimate_tokens(&u.text)).sum();
        match packed.last_mut() {
            Some(previous)
                if tail_tokens < config.target_tokens / 4
                    && previous
                        .iter()
                        .map(|u| estimate_tokens(&u.text))
                        .sum::<usize>()
                        + tail_tokens
                        <= config.max_tokens
                    && current[0].kind != UnitKind::TableHeader =>
            {
                previous.extend(current)
            }
            _ => packed.push(current),
        }
    }
    for group in packed {
        let mut text = String::new();
        for (i, unit) in group.iter().enumerate() {
            if i > 0 {
                text.push_str(if unit.continues { " " } else { "\n" });
            }
            text.push_str(&unit.text);
        }
        chunks.push(Chunk {
            chunk_id: String::new(),
            manual_id: manual.meta.id.clone(),
            manual_title: manual.meta.title.clone(),
            revision: manual.meta.revision.clone(),
            language: manual.meta.language.clone(),
            models: manual.meta.models.clone(),
            audiences: section.audiences.clone(),
            owner: manual.meta.owner.clone(),
            heading_path: section.heading_path.clone(),
            anchor: section.anchor.clone(),
            line: group[0].line,
            text,
        });
    }
}

/// Splits blocks longer than `max_tokens` (never items, rows or steps): a paragraph at sentence ends,
/// a code block or a quote at line ends so its lines stay lines (a fenced piece is fenced again).
fn split_long_paragraphs(units: Vec<Unit>, max_tokens: usize) -> Vec<Unit> {
    let mut out = Vec::with_capacity(units.len());
    for unit in units {
        if estimate_tokens(&unit.text) <= max_tokens {
            out.push(unit);
            continue;
        }
        match unit.kind {
            UnitKind::Paragraph => split_at_sentences(unit, max_tokens, &mut out),
            UnitKind::Code => split_code(unit, max_tokens, &mut out),
            UnitKind::Block => split_at_lines(unit, max_tokens, &mut out),
            UnitKind::Item | UnitKind::TableHeader | UnitKind::TableRow => out.push(unit),
        }
    }
    out
}

/// Pieces of at most `max_tokens` made of whole sentences; every piece after the first continues
/// the paragraph (joined by a space).
fn split_at_sentences(unit: Unit, max_tokens: usize, out: &mut Vec<Unit>) {
    let mut piece = String::new();
    let mut continues = unit.continues;
    for sentence in sentences(&unit.text) {
        if !piece.is_empty() && estimate_tokens(&piece) + estimate_tokens(sentence) > max_tokens {
            out.push(Unit {
                text: std::mem::take(&mut piece),
                continues,
                ..unit.clone()
            });
            continues = true;
        }
        if !piece.is_empty() {
            piece.push(' ');
        }
        piece.push_str(sentence);
    }
    if !piece.is_empty() {
        out.push(Unit {
            text: piece,
            continues,
            ..unit
        });
    }
}

/// Pieces of whole lines (joined by line breaks, so nothing is reflowed); a single line over the
/// limit is split at its sentences.
fn split_at_lines(unit: Unit, max_tokens: usize, out: &mut Vec<Unit>) {
    let mut piece: Vec<&str> = Vec::new();
    let mut piece_tokens = 0;
    let mut pieces: Vec<Unit> = Vec::new();
    let flush = |piece: &mut Vec<&str>, pieces: &mut Vec<Unit>| {
        if !piece.is_empty() {
            pieces.push(Unit {
                text: piece.join("\n"),
                continues: false,
                ..unit.clone()
            });
            piece.clear();
        }
    };
    for line in unit.text.lines() {
        let tokens = estimate_tokens(line);
        if tokens > max_tokens {
            flush(&mut piece, &mut pieces);
            piece_tokens = 0;
            let line_unit = Unit {
                text: line.to_string(),
                continues: false,
                ..unit.clone()
            };
            // A quote's marker (`> `, `>> `) starts every piece, so each still reads as the quote.
            let marker: String = if line.starts_with('>') {
                line.chars()
                    .take_while(|c| *c == '>' || *c == ' ')
                    .collect()
            } else {
                String::new()
            };
            let first = pieces.len();
            split_at_sentences(line_unit, max_tokens, &mut pieces);
            for piece in pieces.iter_mut().skip(first + 1) {
                piece.text.insert_str(0, &marker);
            }
            continue;
        }
        if !piece.is_empty() && piece_tokens + tokens > max_tokens {
            flush(&mut piece, &mut pieces);
            piece_tokens = 0;
        }
        piece.push(line);
        piece_tokens += tokens;
    }
    flush(&mut piece, &mut pieces);
    if let Some(first) = pieces.first_mut() {
        first.continues = unit.continues;
    }
    out.extend(pieces);
}

/// A fenced code block's lines in pieces, each between the block's own opening and closing fence
/// lines so every piece is still a code block; an indented block is split at lines as it is.
fn split_code(unit: Unit, max_tokens: usize, out: &mut Vec<Unit>) {
    let lines: Vec<&str> = unit.text.lines().collect();
    let opening = lines.first().map(|l| l.trim_start()).unwrap_or_default();
    let fence: String = opening
        .chars()
        .take_while(|&c| c == '`' || c == '~')
        .collect();
    if fence.len() < 3 {
        return split_at_lines(unit, max_tokens, out);
    }
    let fence_char = fence.chars().next().unwrap_or('`');
    let closed = lines.len() > 1
        && lines.last().is_some_and(|l| {
            let l = l.trim();
            l.len() >= fence.len() && l.chars().all(|c| c == fence_char)
        });
    let body = &lines[1..if closed { lines.len() - 1 } else { lines.len() }];
    let closing = if closed {
        lines[lines.len() - 1]
    } else {
        fence.as_str()
    };
    let budget = max_tokens
        .saturating_sub(estimate_tokens(lines[0]) + estimate_tokens(closing))
        .max(1);
    let mut start = 0;
    while start < body.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < body.len() && (end == start || tokens + estimate_tokens(body[end]) <= budget) {
            tokens += estimate_tokens(body[end]);
            end += 1;
        }
        let mut text = String::from(lines[0]);
        for line in &body[start..end] {
            text.push('\n');
            text.push_str(line);
        }
        text.push('\n');
        text.push_str(closing);
        out.push(Unit {
            text,
            continues: start == 0 && unit.continues,
            ..unit.clone()
        });
        start = end;
    }
}

/// Sentences of a paragraph: split after `.`, `!` or `?` followed by whitespace; whitespace runs
/// between sentences are dropped (they are rejoined with one space).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        if matches!(bytes[i], b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_some_and(|b| b.is_ascii_whitespace())
        {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + 1;
        }
    }
    let tail = text[start..].trim();
    if !tail.is_empty() {
        out.push(tail);
    }
    out
}

/// GitHub-style heading slugs, made unique within a manual with `-1`, `-2`... suffixes.
#[derive(Default)]
struct AnchorSet {
    used: HashSet<String>,
    /// Per base name, the suffix to try next: every smaller one is taken, and stays taken, so a
    /// manual of many same-named headings costs linear time, not quadratic, with the same anchors.
    next_suffix: HashMap<String, usize>,
}

impl AnchorSet {
    fn claim(&mut self, explicit: Option<&str>, heading: &str) -> String {
        let base = match explicit {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => slugify(heading),
        };
        let base = if base.is_empty() {
            "section".to_string()
        } else {
            base
        };
        let mut n = self.next_suffix.get(&base).copied().unwrap_or(0);
        let mut candidate = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        while self.used.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        self.next_suffix.insert(base, n + 1);
        self.used.insert(candidate.clone());
        candidate
    }
}

/// Lowercase letters and digits, spaces and hyphens to `-`, everything else dropped.
pub fn slugify(heading: &str) -> String {
    let mut slug = String::new();
    for c in heading.trim().chars() {
        if c.is_alphanumeric() {
            slug.extend(c.to_lowercase());
        } else if (c == ' ' || c == '-' || c == '_') && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

fn assign_ids(chunks: &mut [Chunk]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for chunk in chunks.iter_mut() {
        let mut hasher = Sha256::new();
        for part in [&chunk.manual_id, &chunk.anchor, &chunk.text] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        let base = hex::encode(&hasher.finalize()[..8]);
        let n = seen.entry(base.clone()).or_insert(0);
        *n += 1;
        chunk.chunk_id = if *n == 1 { base } else { format!("{base}-{n}") };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manual::parse_manual;
    use proptest::prelude::*;
    use std::path::Path;

    fn manual(body: &str) -> Manual {
        let text = format!("+++\nid = \"m\"\ntitle = \"Pump Manual\"\naudience = [\"operator\"]\nrevision = \"A\"\n+++\n{body}");
        parse_manual(Path::new("m.md"), text.as_bytes()).unwrap()
    }

    #[test]
    fn long_texts_embed_as_windows_that_lose_no_word() {
        let text: String = (0..700).map(|i| format!("word{i} ")).collect();
        let chunk = Chunk {
            chunk_id: "c".into(),
            manual_id: "m".into(),
            manual_title: "Title".into(),
            revision: String::new(),
            language: "en".into(),
            models: Vec::new(),
            audiences: Vec::new(),
            owner: None,
            heading_path: vec!["Section".into()],
            anchor: "section".into(),
            line: 1,
            text: text.trim().to_string(),
        };
        let windows = chunk.embedding_windows(100);
        assert!(windows.len() > 1);
        let mut words = Vec::new();
        for w in &windows {
            let (location, body) = w.split_once('\n').unwrap();
            assert_eq!(location, "Title > Section");
            assert!(estimate_tokens(body) <= 100, "{}", estimate_tokens(body));
            words.extend(body.split_whitespace().map(str::to_string));
        }
        let expected: Vec<String> = chunk.text.split_whitespace().map(str::to_string).collect();
        assert_eq!(words, expected, "every word once, in order");
        // A text that fits keeps its exact embedding text (and so its cached embedding).
        let short = Chunk {
            text: "short text".into(),
            ..chunk
        };
        assert_eq!(short.embedding_windows(100), vec![short.embedding_text()]);
    }

    fn small() -> ChunkingConfig {
        ChunkingConfig {
            target_tokens: 30,
            max_tokens: 40,
        }
    }

    #[test]
    fn a_heading_over_two_lines_keeps_its_words_apart_and_crlf_reads_as_lf() {
        let unix =
            manual("Replace the\nbattery pack\n============\n\nUndo the screws.\nLift the door.\n");
        let out = chunk_manual(&unix, ChunkingConfig::default());
        let section = out.sections.last().unwrap();
        assert_eq!(section.heading_path, ["Replace the battery pack"]);
        assert_eq!(section.anchor, "replace-the-battery-pack");
        // The same manual saved with Windows line endings: the same chunks, ids and no '\r'.
        let text = format!(
            "+++\nid = \"m\"\ntitle = \"Pump Manual\"\naudience = [\"operator\"]\nrevision = \"A\"\n+++\n{}",
            "Replace the\nbattery pack\n============\n\nUndo the screws.\nLift the door.\n"
        )
        .replace('\n', "\r\n");
        let windows = parse_manual(Path::new("m.md"), text.as_bytes()).unwrap();
        let (a, b) = (
            chunk_manual(&unix, ChunkingConfig::default()).chunks,
            chunk_manual(&windows, ChunkingConfig::default()).chunks,
        );
        assert_eq!(
            a.iter().map(|c| (&c.chunk_id, &c.text)).collect::<Vec<_>>(),
            b.iter().map(|c| (&c.chunk_id, &c.text)).collect::<Vec<_>>()
        );
        assert!(b.iter().all(|c| !c.text.contains('\r')));
    }

    #[test]
    fn repeated_headings_get_the_first_free_suffix_in_linear_time() {
        let mut set = AnchorSet::default();
        let got: Vec<String> = ["A", "A-1", "A", "A", "A-1", "a 2"]
            .iter()
            .map(|h| set.claim(None, h))
            .collect();
        // The same anchors a search from -1 upwards gives: a-1 was taken by its own heading.
        assert_eq!(got, ["a", "a-1", "a-2", "a-3", "a-1-1", "a-2-1"]);
        // 20,000 same-named headings: quadratic would be 2e8 string builds; linear is instant.
        let mut set = AnchorSet::default();
        let last = (0..20_000).map(|_| set.claim(None, "Note")).last().unwrap();
        assert_eq!(last, "note-19999");
    }

    #[test]
    fn sections_have_paths_unique_anchors_and_inherited_audiences() {
        let m = manual(
            "Intro text.\n\n# Maintenance {audience=technician,biomed}\n\nEvery year.\n\n## Filters\n\nChange them.\n\n# Maintenance\n\nAgain.\n\n## Custom {#my-id}\n\nX.\n",
        );
        let out = chunk_manual(&m, ChunkingConfig::default());
        let got: Vec<(String, String, String)> = out
            .sections
            .iter()
            .map(|s| {
                (
                    s.heading_path.join(" > "),
                    s.anchor.clone(),
                    s.audiences.join(","),
                )
            })
            .collect();
        let want = [
            ("", "", "operator"),
            ("Maintenance", "maintenance", "technician,biomed"),
            ("Maintenance > Filters", "filters", "technician,biomed"),
            ("Maintenance", "maintenance-1", "operator"),
            ("Maintenance > Custom", "my-id", "operator"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(out.chunks[2].text, "Change them.");
        assert_eq!(
            out.chunks[2].line, 15,
            "line numbers count the front matter"
        );
    }

    #[test]
    fn numbered_steps_and_table_rows_are_never_split() {
        let steps: String = (1..=12)
            .map(|i| format!("{i}. Remove screw number {i} from the rear housing panel and set it aside safely.\n"))
            .collect();
        let rows: String = (1..=12)
            .map(|i| {
                format!(
                    "| E-{i:03} | Occlusion detected downstream of pump {i} | Check the line |\n"
                )
            })
            .collect();
        let body = format!("# Replace the battery\n\n{steps}\n# Fault codes\n\n| Code | Meaning | Action |\n|---|---|---|\n{rows}");
        let out = chunk_manual(&manual(&body), small());
        assert!(out.chunks.len() > 4, "small budget forces several chunks");
        for i in 1..=12 {
            let step = format!(
                "{i}. Remove screw number {i} from the rear housing panel and set it aside safely."
            );
            assert_eq!(
                out.chunks.iter().filter(|c| c.text.contains(&step)).count(),
                1,
                "step {i} whole in one chunk"
            );
            let row = format!(
                "| E-{i:03} | Occlusion detected downstream of pump {i} | Check the line |"
            );
            assert_eq!(
                out.chunks.iter().filter(|c| c.text.contains(&row)).count(),
                1,
                "row {i} whole"
            );
        }
        for c in out.chunks.iter().filter(|c| c.anchor == "fault-codes") {
            assert!(
                c.text.starts_with("| Code | Meaning | Action |\n|---|---|---|\n"),
                "every table chunk repeats the header with its delimiter row, so the header reads as one: {}",
                c.text
            );
        }
    }

    #[test]
    fn chunk_ids_are_stable_and_change_only_with_text() {
        let a = chunk_manual(
            &manual("# A\n\nOne.\n\n# B\n\nTwo.\n"),
            ChunkingConfig::default(),
        );
        let b = chunk_manual(
            &manual("# A\n\nOne.\n\n# B\n\nTwo, edited.\n"),
            ChunkingConfig::default(),
        );
        assert_eq!(a.chunks[0].chunk_id, b.chunks[0].chunk_id);
        assert_ne!(a.chunks[1].chunk_id, b.chunks[1].chunk_id);
        let again = chunk_manual(
            &manual("# A\n\nOne.\n\n# B\n\nTwo.\n"),
            ChunkingConfig::default(),
        );
        assert_eq!(a.chunks, again.chunks);
    }

    #[test]
    fn long_paragraphs_split_at_sentences() {
        let para: String = (0..30)
            .map(|i| format!("Sentence number {i} says something useful. "))
            .collect();
        let out = chunk_manual(&manual(&format!("# Long\n\n{para}\n")), small());
        assert!(out.chunks.len() > 2);
        for c in &out.chunks {
            assert!(
                c.text.ends_with("useful."),
                "split at a sentence end: {:?}",
                c.text
            );
        }
    }

    #[test]
    fn long_code_blocks_and_quotes_split_only_at_line_ends() {
        let code_lines: Vec<String> = (0..60)
            .map(|i| format!("    set register_{i} = 0x{i:02x}  # calibration word {i}"))
            .collect();
        let fenced = format!("~~~ini\n{}\n~~~", code_lines.join("\n"));
        let indented: String = code_lines.iter().map(|l| format!("    {l}\n")).collect();
        let quote_lines: Vec<String> = (0..40)
            .map(|i| format!("> Warning {i}: keep the cover closed while the pump runs."))
            .collect();
        let body = format!(
            "# Config\n\n{fenced}\n\n# Raw\n\n{indented}\n# Quote\n\n{}\n",
            quote_lines.join("\n")
        );
        let out = chunk_manual(&manual(&body), small());
        let in_section = |anchor: &str| -> Vec<&Chunk> {
            out.chunks.iter().filter(|c| c.anchor == anchor).collect()
        };
        let config = in_section("config");
        assert!(
            config.len() > 2,
            "a 60-line block over the limit is split: {config:?}"
        );
        for chunk in &config {
            assert!(
                chunk.text.starts_with("~~~ini\n") && chunk.text.ends_with("\n~~~"),
                "every piece is still a fenced block: {:?}",
                chunk.text
            );
        }
        for line in &code_lines {
            let found = config
                .iter()
                .filter(|c| c.text.lines().any(|l| l == line))
                .count();
            assert_eq!(found, 1, "code line kept whole, as a line, once: {line:?}");
        }
        let raw = in_section("raw");
        assert!(raw.len() > 1);
        for line in &code_lines {
            let indented_line = format!("    {line}");
            assert!(
                raw.iter()
                    .any(|c| c.text.lines().any(|l| l.ends_with(&indented_line))),
                "indented code keeps its lines and indentation: {line:?}"
            );
        }
        let quote = in_section("quote");
        assert!(quote.len() > 1);
        for line in &quote_lines {
            assert!(
                quote.iter().any(|c| c.text.lines().any(|l| l == line)),
                "quote line kept as a line: {line:?}"
            );
        }
    }

    #[test]
    fn a_quote_of_one_long_line_splits_at_its_sentences() {
        let line: String = (0..40)
            .map(|i| format!("Quoted sentence {i} is here."))
            .collect::<Vec<_>>()
            .join(" ");
        let out = chunk_manual(&manual(&format!("# Q\n\n> {line}\n")), small());
        assert!(out.chunks.len() > 1);
        assert!(out.chunks.iter().all(|c| c.text.ends_with("is here.")));
        assert!(
            out.chunks
                .iter()
                .all(|c| c.text.starts_with("> Quoted sentence")),
            "every piece is still the quote"
        );
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slugify("3.2 Replace the O-ring (PN 4471-B)"),
            "32-replace-the-o-ring-pn-4471-b"
        );
        assert_eq!(slugify("  Sécurité  "), "sécurité");
        assert_eq!(slugify("???"), "");
    }

    fn words(s: &str) -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| w.to_string())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn chunking_loses_no_text(
            blocks in proptest::collection::vec(
                prop_oneof![
                    "[a-z]{1,10}( [a-z]{1,10}){0,40}\\.".prop_map(|p| format!("{p}\n\n")),
                    proptest::collection::vec("[a-z]{1,8}( [a-z]{1,8}){0,12}", 1..8)
                        .prop_map(|items| items.iter().enumerate().map(|(i, t)| format!("{}. {t}\n", i + 1)).collect::<String>() + "\n"),
                    "[a-z]{1,10}( [a-z]{1,10}){0,3}".prop_map(|h| format!("## {h}\n\n")),
                    proptest::collection::vec("[a-z]{1,8}( [a-z]{1,8}){0,8}", 1..40)
                        .prop_map(|lines| format!("```\n{}\n```\n\n", lines.join("\n"))),
                    proptest::collection::vec("[a-z]{1,8}( [a-z]{1,8}){0,8}", 1..40)
                        .prop_map(|lines| format!("> {}\n\n", lines.join("\n> "))),
                    proptest::collection::vec("[a-z]{1,8} [0-9]{1,4}", 1..6)
                        .prop_map(|rows| format!("| k | v |\n|---|---|\n{}\n", rows.iter().map(|r| format!("| {r} | x |\n")).collect::<String>())),
                ],
                1..20,
            )
        ) {
            let body = format!("# Top\n\n{}", blocks.concat());
            let m = manual(&body);
            let out = chunk_manual(&m, small());
            // Every word of the body outside headings appears in some chunk of the right section.
            let heading_words: std::collections::HashSet<String> = out.sections.iter()
                .flat_map(|s| s.heading_path.iter().flat_map(|h| words(h))).collect();
            let all: String = out.chunks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ");
            let chunk_words: std::collections::HashSet<String> = words(&all).into_iter().collect();
            for w in words(&body) {
                prop_assert!(chunk_words.contains(&w) || heading_words.contains(&w), "lost {w:?}");
            }
            // Anchors unique; chunk ids unique.
            let anchors: std::collections::HashSet<&String> = out.sections.iter().map(|s| &s.anchor).collect();
            prop_assert_eq!(anchors.len(), out.sections.len());
            let ids: std::collections::HashSet<&String> = out.chunks.iter().map(|c| &c.chunk_id).collect();
            prop_assert_eq!(ids.len(), out.chunks.len());
            // Code and quote lines stay lines: each is a whole line of some chunk.
            for line in body.lines().filter(|l| l.starts_with("> ")) {
                prop_assert!(out.chunks.iter().any(|c| c.text.lines().any(|l| l == line)), "quote line reflowed: {line:?}");
            }
            // Numbered steps whole: each "N. ..." line of the body is inside one chunk.
            for line in body.lines().filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit())) {
                prop_assert!(out.chunks.iter().any(|c| c.text.contains(line.trim_end())), "step split: {line:?}");
            }
        }
    }
}
