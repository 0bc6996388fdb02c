//! Line diffs of two texts for people: what a publish changed in a manual, or how an old revision
//! differs from the file now. Only the changed lines and a few around them are kept (a long manual
//! with one changed line is a short diff), and a diff too long to read on a page is cut with a note.

use std::time::Duration;

use similar::{ChangeTag, DiffTag, TextDiff};

/// Unchanged lines shown around each change.
const CONTEXT_LINES: usize = 3;
/// Lines a page shows at most; the counts still cover the whole diff.
const MAX_SHOWN_LINES: usize = 2_000;
/// A diff of two unrelated 512 KB texts must not hold a worker: past this the diff is coarser
/// (correct, but less minimal).
const DIFF_TIME_LIMIT: Duration = Duration::from_millis(500);

/// One line of a diff as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    /// `added`, `removed`, `same`, or `gap` (unchanged lines left out).
    pub kind: &'static str,
    /// The line's number in the old text (1-based), if it is there.
    pub old: Option<usize>,
    /// The line's number in the new text (1-based), if it is there.
    pub new: Option<usize>,
    pub text: String,
}

impl DiffLine {
    /// Where unchanged lines were left out.
    fn gap() -> Self {
        DiffLine {
            kind: "gap",
            old: None,
            new: None,
            text: String::new(),
        }
    }

    /// The sign a reader sees before the line (the colour is not the only signal).
    pub fn sign(&self) -> &'static str {
        match self.kind {
            "added" => "+",
            "removed" => "-",
            _ => " ",
        }
    }
}

/// A diff between two texts.
#[derive(Debug, Clone, Default)]
pub struct LineDiff {
    pub lines: Vec<DiffLine>,
    /// Lines added and removed in the whole diff (also the part not shown).
    pub added: usize,
    pub removed: usize,
    /// Added or removed lines left out because the diff is longer than a page shows.
    pub not_shown: usize,
}

impl LineDiff {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0
    }

    /// Adds a line to those shown, or once a page's worth is shown, counts it if it is a change.
    fn keep(&mut self, line: DiffLine) {
        if self.lines.len() < MAX_SHOWN_LINES {
            self.lines.push(line);
        } else if matches!(line.kind, "added" | "removed") {
            self.not_shown += 1;
        }
    }
}

/// The line diff from `old` to `new`.
pub fn line_diff(old: &str, new: &str) -> LineDiff {
    let diff = TextDiff::configure()
        .timeout(DIFF_TIME_LIMIT)
        .diff_lines(old, new);
    let mut out = LineDiff::default();
    for op in diff.ops() {
        let (tag, old_range, new_range) = op.as_tag_tuple();
        match tag {
            DiffTag::Equal => {}
            DiffTag::Delete => out.removed += old_range.len(),
            DiffTag::Insert => out.added += new_range.len(),
            DiffTag::Replace => {
                out.removed += old_range.len();
                out.added += new_range.len();
            }
        }
    }
    let groups = diff.grouped_ops(CONTEXT_LINES);
    for (i, group) in groups.iter().enumerate() {
        // Where unchanged lines were left out: before the first group when it does not start the
        // text, and between groups.
        let starts_at_top = group
            .first()
            .is_some_and(|op| op.old_range().start == 0 && op.new_range().start == 0);
        if i > 0 || !starts_at_top {
            out.keep(DiffLine::gap());
        }
        for op in group {
            for change in diff.iter_changes(op) {
                out.keep(DiffLine {
                    kind: match change.tag() {
                        ChangeTag::Insert => "added",
                        ChangeTag::Delete => "removed",
                        ChangeTag::Equal => "same",
                    },
                    old: change.old_index().map(|n| n + 1),
                    new: change.new_index().map(|n| n + 1),
                    text: change.value().trim_end_matches(['\n', '\r']).to_string(),
                });
            }
        }
    }
    // Unchanged lines after the last group.
    let ends_before_the_end = groups
        .last()
        .and_then(|group| group.last())
        .is_some_and(|op| op.old_range().end < diff.old_slices().len());
    if ends_before_the_end && out.not_shown == 0 {
        out.lines.push(DiffLine::gap());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(diff: &LineDiff) -> Vec<(&'static str, Option<usize>, Option<usize>, &str)> {
        diff.lines
            .iter()
            .map(|l| (l.kind, l.old, l.new, l.text.as_str()))
            .collect()
    }

    #[test]
    fn identical_texts_have_no_diff() {
        let diff = line_diff("a\nb\n", "a\nb\n");
        assert!(diff.is_empty());
        assert!(diff.lines.is_empty());
    }

    #[test]
    fn a_changed_line_is_a_removal_and_an_addition_with_context_and_line_numbers() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let new = "1\n2\n3\n4\n5\nsix\n7\n8\n9\n10\n";
        let diff = line_diff(old, new);
        assert_eq!((diff.added, diff.removed), (1, 1));
        assert_eq!(
            kinds(&diff),
            vec![
                ("gap", None, None, ""),
                ("same", Some(3), Some(3), "3"),
                ("same", Some(4), Some(4), "4"),
                ("same", Some(5), Some(5), "5"),
                ("removed", Some(6), None, "6"),
                ("added", None, Some(6), "six"),
                ("same", Some(7), Some(7), "7"),
                ("same", Some(8), Some(8), "8"),
                ("same", Some(9), Some(9), "9"),
                ("gap", None, None, ""),
            ]
        );
        assert_eq!(diff.lines[4].sign(), "-");
        assert_eq!(diff.lines[5].sign(), "+");
    }

    #[test]
    fn a_new_text_is_all_additions_and_a_deleted_one_all_removals() {
        let created = line_diff("", "a\nb");
        assert_eq!((created.added, created.removed), (2, 0));
        assert_eq!(
            kinds(&created),
            vec![("added", None, Some(1), "a"), ("added", None, Some(2), "b")]
        );
        let deleted = line_diff("a\nb\n", "");
        assert_eq!((deleted.added, deleted.removed), (0, 2));
        assert!(deleted.lines.iter().all(|l| l.kind == "removed"));
    }

    #[test]
    fn far_apart_changes_are_separate_groups() {
        let old: String = (1..=40).map(|n| format!("{n}\n")).collect();
        let new = old
            .replace("\n5\n", "\nfive\n")
            .replace("\n35\n", "\nthirty-five\n");
        let diff = line_diff(&old, &new);
        assert_eq!((diff.added, diff.removed), (2, 2));
        let gaps = diff.lines.iter().filter(|l| l.kind == "gap").count();
        assert_eq!(gaps, 3, "{:?}", kinds(&diff));
        assert!(diff.lines.len() < 25, "unchanged middle left out");
    }

    #[test]
    fn a_diff_longer_than_a_page_is_cut_and_says_how_much_is_left_out() {
        let old: String = (0..3_000).map(|n| format!("old {n}\n")).collect();
        let new: String = (0..3_000).map(|n| format!("new {n}\n")).collect();
        let diff = line_diff(&old, &new);
        assert_eq!((diff.added, diff.removed), (3_000, 3_000));
        assert_eq!(diff.lines.len(), MAX_SHOWN_LINES);
        assert_eq!(diff.not_shown, 6_000 - MAX_SHOWN_LINES);
    }
}
