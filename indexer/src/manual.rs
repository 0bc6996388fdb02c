//! Manuals on disk: markdown files with TOML front matter between `+++` lines. Loading a folder reports
//! each bad file with its reason and keeps the good ones, so one broken manual never stops the corpus.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a manual says about itself in its front matter.
/// The audiences a section can be written for. Readers' roles are granted some of these (the
/// server's `Role::audiences`); a name outside this list would hide its section from everyone.
pub const AUDIENCES: &[&str] = &[
    "operator",
    "technician",
    "biomed",
    "clinician",
    "patient",
    "public",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualMeta {
    /// Stable identifier, unique in the corpus (letters, digits, `-`, `_`, `.`).
    pub id: String,
    pub title: String,
    /// Equipment models the manual applies to (e.g. `VP-300`); empty for general material.
    #[serde(default)]
    pub models: Vec<String>,
    /// Default audiences of every section (operator, technician, biomed, clinician, patient, public...).
    #[serde(default)]
    pub audience: Vec<String>,
    /// BCP-47 primary language tag such as `en` or `es`.
    #[serde(default = "default_language")]
    pub language: String,
    pub revision: String,
    /// Owner of private material (a patient's packet); `None` is public material.
    #[serde(default)]
    pub owner: Option<String>,
    /// Questions this manual must keep answering (`[[check]]` tables): a new version whose index
    /// no longer finds their sections is not published (the quality gate, `gate.rs`).
    #[serde(default, rename = "check")]
    pub checks: Vec<CheckQuestion>,
    /// How many of `checks` a new version may stop finding before its publish is refused.
    #[serde(default)]
    pub check_tolerance: usize,
}

/// A question and the anchor of the section that must answer it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckQuestion {
    pub question: String,
    pub anchor: String,
}

fn default_language() -> String {
    "en".to_string()
}

/// A parsed manual: its metadata and its markdown body (front matter removed).
#[derive(Debug, Clone)]
pub struct Manual {
    pub meta: ManualMeta,
    pub body: String,
    /// 1-based line of the body's first line in the file, for error messages.
    pub body_line: usize,
    pub path: PathBuf,
}

/// A file that could not be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualProblem {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for ManualProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Parses one manual from its bytes. Errors are plain reasons (the caller adds the path).
pub fn parse_manual(path: &Path, bytes: &[u8]) -> Result<Manual, String> {
    if bytes.is_empty() || bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err("empty file".to_string());
    }
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err("UTF-16 text; save it as UTF-8".to_string());
    }
    if bytes.contains(&0) {
        return Err("binary file (contains NUL bytes), not markdown".to_string());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Windows line endings read as Unix ones: the same manual saved either way has the same
    // chunks (and chunk ids, and cached embeddings), and no '\r' reaches a page.
    let unix;
    let text = if text.contains('\r') {
        unix = text.replace("\r\n", "\n");
        unix.as_str()
    } else {
        text
    };
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "+++" {
        return Err("line 1: front matter missing: a manual starts with a `+++` line, TOML fields, and a closing `+++` line".to_string());
    }
    let mut front = String::new();
    let mut offset = first.len();
    let mut line_no = 1;
    let mut closed = false;
    for line in lines {
        line_no += 1;
        offset += line.len();
        if line.trim_end() == "+++" {
            closed = true;
            break;
        }
        front.push_str(line);
    }
    if !closed {
        return Err(
            "line 1: front matter is not closed: add a `+++` line after the fields".to_string(),
        );
    }
    let meta: ManualMeta = toml::from_str(&front).map_err(|e| describe_toml_error(&e, &front))?;
    validate_meta(&meta)?;
    let body = text[offset..].to_string();
    if body.trim().is_empty() {
        return Err(format!(
            "line {}: the manual has front matter but no content",
            line_no + 1
        ));
    }
    Ok(Manual {
        meta,
        body,
        body_line: line_no + 1,
        path: path.to_path_buf(),
    })
}

fn describe_toml_error(error: &toml::de::Error, front: &str) -> String {
    let message = error.message().trim().to_string();
    match error.span() {
        // +1 for the opening `+++` line, +1 for 1-based lines.
        Some(span) => {
            let line = front[..span.start.min(front.len())].matches('\n').count() + 2;
            format!("line {line}: broken front matter: {message}")
        }
        None => format!("broken front matter: {message}"),
    }
}

/// Quality checks (`[[check]]`) one manual may carry.
pub const MAX_CHECKS: usize = 50;

/// Longest manual id: it names a file (`<id>.md` and its temporary siblings) and appears in URLs.
pub const MAX_ID_CHARS: usize = 100;

/// Ids of patients' packet documents start with this; a manual may not take one, or it would
/// replace a patient's own document in their searches.
pub const PACKET_ID_PREFIX: &str = "packet-";

fn validate_meta(meta: &ManualMeta) -> Result<(), String> {
    // A leading dot would make a hidden file, which the corpus never reads.
    let id_ok = !meta.id.is_empty()
        && !meta.id.starts_with('.')
        && meta
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !id_ok {
        return Err(format!(
            "front matter: id {:?} must be non-empty, use only letters, digits, '-', '_' or '.', and not start with '.'",
            meta.id
        ));
    }
    if meta.id.len() > MAX_ID_CHARS {
        return Err(format!(
            "front matter: id is {} characters long; at most {MAX_ID_CHARS}",
            meta.id.len()
        ));
    }
    if meta.owner.is_none() && meta.id.starts_with(PACKET_ID_PREFIX) {
        return Err(format!(
            "front matter: id {:?}: ids starting with {PACKET_ID_PREFIX:?} are reserved for patients' documents",
            meta.id
        ));
    }
    if meta.title.trim().is_empty() {
        return Err("front matter: title is empty".to_string());
    }
    if meta
        .owner
        .as_deref()
        .is_some_and(|o| o.is_empty() || o.starts_with('~'))
    {
        // `~`-names are the index's own (the public owner); an owner may not take one.
        return Err(format!(
            "front matter: owner {:?} must be non-empty and not start with '~'",
            meta.owner.as_deref().unwrap_or_default()
        ));
    }
    if let Some(check) = meta
        .checks
        .iter()
        .find(|c| c.question.trim().is_empty() || c.anchor.trim().is_empty())
    {
        // An empty question would stop every gated publish with an error naming no manual.
        return Err(format!(
            "front matter: a quality check needs a question and an anchor (question {:?}, anchor {:?})",
            check.question, check.anchor
        ));
    }
    if meta.checks.len() > MAX_CHECKS {
        // Every gated publish re-runs every manual's checks (two searches each).
        return Err(format!(
            "front matter: {} quality checks; a manual may have at most {MAX_CHECKS}",
            meta.checks.len()
        ));
    }
    if meta.revision.trim().is_empty() {
        return Err("front matter: revision is empty".to_string());
    }
    let lang_ok = (2..=8).contains(&meta.language.len())
        && meta
            .language
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '-');
    if !lang_ok {
        return Err(format!(
            "front matter: language {:?} is not a language tag such as \"en\"",
            meta.language
        ));
    }
    Ok(())
}

/// Loads every `*.md` file under `dir` (recursively, sorted by path). Returns the good manuals and a
/// problem per bad file; a duplicate id keeps the first file (by path) and reports the others.
pub fn load_manuals(dir: &Path) -> std::io::Result<(Vec<Manual>, Vec<ManualProblem>)> {
    let mut paths = Vec::new();
    collect_markdown(dir, &mut paths)?;
    paths.sort();
    let mut manuals = Vec::new();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let parsed = std::fs::read(&path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| parse_manual(&path, &bytes));
        match parsed {
            Ok(manual) => {
                if let Some(first) = seen.get(&manual.meta.id) {
                    problems.push(ManualProblem {
                        reason: format!(
                            "duplicate manual id {:?}, already used by {}",
                            manual.meta.id,
                            first.display()
                        ),
                        path,
                    });
                } else {
                    seen.insert(manual.meta.id.clone(), path.clone());
                    manuals.push(manual);
                }
            }
            Err(reason) => problems.push(ManualProblem { path, reason }),
        }
    }
    Ok((manuals, problems))
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_markdown(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_err(input: &[u8], expect: &str) {
        let err = parse_manual(Path::new("m.md"), input).unwrap_err();
        assert!(err.contains(expect), "expected {expect:?} in {err:?}");
    }

    const GOOD: &str = "+++\nid = \"vp-300\"\ntitle = \"VP-300 Service Manual\"\nmodels = [\"VP-300\"]\naudience = [\"technician\"]\nrevision = \"C\"\n+++\n# Safety\nText.\n";

    #[test]
    fn parses_front_matter_and_body() {
        let m = parse_manual(Path::new("m.md"), GOOD.as_bytes()).unwrap();
        assert_eq!(m.meta.id, "vp-300");
        assert_eq!(m.meta.language, "en");
        assert_eq!(m.meta.models, vec!["VP-300"]);
        assert_eq!(m.body, "# Safety\nText.\n");
        assert_eq!(m.body_line, 8);
    }

    #[test]
    fn malformed_manuals_get_reasons() {
        check_err(b"", "empty file");
        check_err(b"  \n\n", "empty file");
        check_err(b"\x00\x01PNG", "binary file");
        check_err(b"ab\xff\xfe bad", "not UTF-8");
        check_err(b"# No front matter\n", "front matter missing");
        check_err(b"+++\nid = \"x\"\n", "not closed");
        check_err(
            b"+++\nid = \"x\"\ntitle = \n+++\n# A\n",
            "line 3: broken front matter",
        );
        check_err(b"+++\nid = \"x\"\ntitle = \"T\"\n+++\n# A\n", "revision");
        check_err(
            b"+++\nid = \"a b\"\ntitle = \"T\"\nrevision = \"1\"\n+++\n# A\n",
            "id \"a b\"",
        );
        check_err(
            b"+++\nid = \"x\"\ntitle = \"T\"\nrevision = \"1\"\ncolour = \"red\"\n+++\n# A\n",
            "unknown field",
        );
        check_err(
            b"+++\nid = \"x\"\ntitle = \"T\"\nrevision = \"1\"\n+++\n\n",
            "no content",
        );
        check_err(
            b"+++\nid = \".x\"\ntitle = \"T\"\nrevision = \"1\"\n+++\n# A\n",
            "not start with '.'",
        );
        let checks = |n: usize| {
            let tables = "[[check]]\nquestion = \"q\"\nanchor = \"a\"\n".repeat(n);
            format!("+++\nid = \"x\"\ntitle = \"T\"\nrevision = \"1\"\n{tables}+++\n# A\n")
        };
        check_err(checks(MAX_CHECKS + 1).as_bytes(), "at most 50");
        check_err(b"\xff\xfe+\x00+\x00+\x00", "UTF-16");
        check_err(
            b"+++\nid = \"x\"\ntitle = \"T\"\nrevision = \"1\"\nowner = \"~public\"\n+++\n# A\n",
            "must be non-empty and not start with '~'",
        );
        check_err(
            b"+++\nid = \"x\"\ntitle = \"T\"\nrevision = \"1\"\n[[check]]\nquestion = \" \"\nanchor = \"a\"\n+++\n# A\n",
            "needs a question and an anchor",
        );
        assert!(parse_manual(Path::new("m.md"), checks(MAX_CHECKS).as_bytes()).is_ok());
        let with_id =
            |id: &str| format!("+++\nid = \"{id}\"\ntitle = \"T\"\nrevision = \"1\"\n+++\n# A\n");
        // A name too long for the file system is refused here, not when the editor's file is written.
        check_err(
            with_id(&"a".repeat(MAX_ID_CHARS + 1)).as_bytes(),
            "at most 100",
        );
        assert!(parse_manual(
            Path::new("m.md"),
            with_id(&"a".repeat(MAX_ID_CHARS)).as_bytes()
        )
        .is_ok());
        // A manual may not take a patient's document's id (and so its place in their searches).
        check_err(
            with_id("packet-k7-1").as_bytes(),
            "reserved for patients' documents",
        );
    }

    #[test]
    fn a_folder_with_bad_files_still_loads_the_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), GOOD).unwrap();
        std::fs::write(dir.path().join("b.md"), GOOD).unwrap();
        std::fs::write(dir.path().join("c.md"), "no front matter").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let (manuals, problems) = load_manuals(dir.path()).unwrap();
        assert_eq!(manuals.len(), 1);
        assert_eq!(problems.len(), 2);
        assert!(problems[0].reason.contains("duplicate manual id"));
        assert!(problems[0].path.ends_with("b.md"));
        assert!(problems[1].reason.contains("front matter missing"));
    }
}
