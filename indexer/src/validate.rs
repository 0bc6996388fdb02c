//! Checking a manual before it is published: everything wrong with it at once, each with its line,
//! and how it will be chunked. A manual with problems is never published (the editor sees the list);
//! the checks are the ones a reader would notice: front matter, anchors used twice, links to anchors
//! that do not exist, "see section 11.2" where no heading is numbered 11.2 (or "steps 1 to 3" where
//! it has two), sections nobody may read, equipment models no asset has, images without alt text.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::chunking::{chunk_manual, Chunk, ChunkingConfig, Section};
use crate::cross_refs::{heading_number, last_step, section_references, Reference};
use crate::manual::{parse_manual, Manual};

/// One problem, at a 1-based line of the file (0 when it concerns the whole file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub line: usize,
    pub message: String,
}

/// What checking a manual found, and what it would become.
#[derive(Debug, Clone)]
pub struct Checked {
    /// `None` when the file cannot be read as a manual at all (the findings say why).
    pub manual: Option<Manual>,
    pub findings: Vec<Finding>,
    pub sections: Vec<Section>,
    pub chunks: Vec<Chunk>,
    /// Links to other manuals (`/m/ID` or `/m/ID#anchor`) with their lines: only the corpus can say
    /// whether they resolve (`links_findings`).
    pub manual_links: Vec<(usize, String)>,
}

impl Checked {
    pub fn is_clean(&self) -> bool {
        self.manual.is_some() && self.findings.is_empty()
    }
}

/// Checks one manual. `known_models` are the equipment models of the registered assets (a manual
/// for a model nobody has is usually a typo); empty means "do not check".
pub fn check_manual(path: &Path, bytes: &[u8], known_models: &BTreeSet<String>) -> Checked {
    let manual = match parse_manual(path, bytes) {
        Ok(manual) => manual,
        Err(reason) => {
            return Checked {
                manual: None,
                findings: vec![finding_from_reason(&reason)],
                sections: Vec::new(),
                chunks: Vec::new(),
                manual_links: Vec::new(),
            }
        }
    };
    let chunked = chunk_manual(&manual, ChunkingConfig::default());
    let mut findings = Vec::new();
    let text = String::from_utf8_lossy(bytes);
    let front_line = |key: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(key))
            .map_or(1, |i| i + 1)
    };

    // U+FFFD is what a text in another encoding becomes when read as UTF-8 (an upload, a paste):
    // the letters it replaced are lost, so the text must be saved again as UTF-8.
    for (i, _) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains('\u{FFFD}'))
        .take(5)
    {
        findings.push(Finding {
            line: i + 1,
            message: "a character here could not be read (shown as \u{FFFD}): the text was not saved as UTF-8; save it as UTF-8 and paste or upload it again".to_string(),
        });
    }

    if !known_models.is_empty() {
        for model in &manual.meta.models {
            if !known_models.contains(model) {
                findings.push(Finding {
                    line: front_line("models"),
                    message: format!(
                        "equipment model {model:?} is not the model of any registered asset (known: {})",
                        known_models.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
    }

    let anchors: BTreeSet<&str> = chunked.sections.iter().map(|s| s.anchor.as_str()).collect();
    let has_text: BTreeSet<&str> = chunked.chunks.iter().map(|c| c.anchor.as_str()).collect();
    for section in &chunked.sections {
        if section.audiences.is_empty() && has_text.contains(section.anchor.as_str()) {
            let name = section
                .heading_path
                .last()
                .map_or("the text before the first heading".to_string(), |h| {
                    format!("section {h:?}")
                });
            findings.push(Finding {
                line: section.line,
                message: format!(
                    "{name} has no audience: set `audience` in the front matter or `{{audience=...}}` on its heading"
                ),
            });
        }
    }

    // A misspelt audience hides its sections from every reader without any other sign.
    let unknown = |audiences: &[String]| -> Vec<String> {
        audiences
            .iter()
            .filter(|a| !crate::manual::AUDIENCES.contains(&a.as_str()))
            .cloned()
            .collect()
    };
    let known_list = crate::manual::AUDIENCES.join(", ");
    for name in unknown(&manual.meta.audience) {
        findings.push(Finding {
            line: front_line("audience"),
            message: format!(
                "audience {name:?} is not one readers can hold (known: {known_list}), so nobody could read what it covers"
            ),
        });
    }
    for section in &chunked.sections {
        for name in unknown(&section.audiences) {
            if manual.meta.audience.contains(&name) {
                continue; // inherited from the front matter: said once, above
            }
            findings.push(Finding {
                line: section.line,
                message: format!(
                    "audience {name:?} is not one readers can hold (known: {known_list}), so nobody could read this section"
                ),
            });
        }
    }

    for check in &manual.meta.checks {
        if !anchors.contains(check.anchor.as_str()) {
            findings.push(Finding {
                line: front_line(&format!("anchor = \"{}\"", check.anchor)),
                message: format!(
                    "quality check {:?} names section #{}, which this manual does not have",
                    check.question, check.anchor
                ),
            });
        }
        if check.question.trim().is_empty() {
            findings.push(Finding {
                line: front_line("[[check]]"),
                message: "a quality check has an empty question".to_string(),
            });
        }
    }
    if manual.meta.check_tolerance > manual.meta.checks.len() {
        findings.push(Finding {
            line: front_line("check_tolerance"),
            message: format!(
                "check_tolerance {} is more than the {} check(s): the gate could never stop a publish",
                manual.meta.check_tolerance,
                manual.meta.checks.len()
            ),
        });
    }
    // An explicit `{#id}` that an earlier heading's generated anchor already took gets a suffix,
    // so links and checks naming #id would silently reach that other heading. The lines are split
    // once: a manual of many short sections made this quadratic.
    let lines: Vec<&str> = text.lines().collect();
    for section in &chunked.sections {
        let heading = lines
            .get(section.line.saturating_sub(1))
            .copied()
            .unwrap_or("");
        if let Some(id) = explicit_id(heading) {
            if id != section.anchor {
                findings.push(Finding {
                    line: section.line,
                    message: format!(
                        "anchor {{#{id}}} is already the anchor of an earlier heading, so this one became #{}: choose another id",
                        section.anchor
                    ),
                });
            }
        }
    }
    let numbered = numbered_sections(&chunked.sections, &text);
    let (found, manual_links) = markdown_findings(&manual, &anchors, &numbered);
    findings.extend(found);
    findings.sort();
    findings.dedup();
    Checked {
        manual: Some(manual),
        findings,
        sections: chunked.sections,
        chunks: chunked.chunks,
        manual_links,
    }
}

/// Each numbered section's number with the number of its last top-level step (0 when it has none):
/// what "see section 11.5, steps 1 to 3" must find. A section runs from its heading to the next one.
/// The `{#id}` a heading line gives itself, if any.
fn explicit_id(heading: &str) -> Option<&str> {
    let heading = heading.trim_start();
    if !heading.starts_with('#') {
        return None;
    }
    let (_, after) = heading.rsplit_once("{#")?;
    let id = after
        .split(|c: char| c == '}' || c.is_whitespace())
        .next()?;
    (!id.is_empty()).then_some(id)
}

fn numbered_sections(sections: &[Section], text: &str) -> HashMap<String, u32> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = HashMap::new();
    for (i, section) in sections.iter().enumerate() {
        let Some(number) = section.heading_path.last().and_then(|h| heading_number(h)) else {
            continue;
        };
        let end = sections
            .get(i + 1)
            .map_or(lines.len(), |next| next.line.saturating_sub(1));
        let start = section.line.min(end);
        out.insert(number.to_string(), last_step(&lines[start..end]));
    }
    out
}

/// Problems with links to other manuals: `has_anchor(id, anchor)` says whether manual `id` has
/// that section (any anchor will do for ""), `None` when the corpus has no such manual. Asked per
/// link, so a caller answers from one set per manual instead of handing out copies of it.
pub fn links_findings(
    links: &[(usize, String)],
    has_anchor: &dyn Fn(&str, &str) -> Option<bool>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (line, dest) in links {
        let target = dest.trim_start_matches("/m/");
        let (id, anchor) = target.split_once('#').unwrap_or((target, ""));
        match has_anchor(id, anchor) {
            None => out.push(Finding {
                line: *line,
                message: format!("link to {dest}, but there is no manual {id:?}"),
            }),
            Some(false) if !anchor.is_empty() => out.push(Finding {
                line: *line,
                message: format!("link to {dest}, but manual {id:?} has no section #{anchor}"),
            }),
            Some(_) => {}
        }
    }
    out
}

/// Anchors given twice, links to anchors that do not exist, references to section numbers no heading
/// carries (when the headings are numbered at all: otherwise "section 3" may well mean another
/// document's), images (pages show none: without alt text, or with it as all a reader would see), raw
/// HTML (pages show it as text); and the links to other manuals, for the corpus to check.
fn markdown_findings(
    manual: &Manual,
    anchors: &BTreeSet<&str>,
    numbered: &HashMap<String, u32>,
) -> (Vec<Finding>, Vec<(usize, String)>) {
    let body = &manual.body;
    // Each line's first byte, searched: counting the newlines before every event was quadratic.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(body.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of =
        |offset: usize| manual.body_line + line_starts.partition_point(|&s| s <= offset) - 1;
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES;
    let mut findings = Vec::new();
    let mut manual_links = Vec::new();
    let mut explicit: HashMap<String, usize> = HashMap::new();
    // An image being read: (its line, its destination, the alt text so far).
    let mut image: Option<(usize, String, String)> = None;
    let mut in_code = false;
    let mut last_html_line: Option<usize> = None;
    for (event, range) in Parser::new_ext(body, options).into_offset_iter() {
        if let Event::Text(text) = &event {
            if !in_code && !numbered.is_empty() {
                let line = line_of(range.start);
                findings.extend(
                    section_references(text)
                        .iter()
                        .filter_map(|r| reference_problem(r, numbered))
                        .map(|message| Finding { line, message }),
                );
            }
        }
        match event {
            Event::Start(Tag::CodeBlock(_)) => in_code = true,
            Event::End(TagEnd::CodeBlock) => in_code = false,
            Event::Start(Tag::Heading { id: Some(id), .. }) => {
                let line = line_of(range.start);
                if let Some(first) = explicit.insert(id.to_string(), line) {
                    findings.push(Finding {
                        line,
                        message: format!("anchor {{#{id}}} is already used on line {first}"),
                    });
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                let line = line_of(range.start);
                if dest_url.trim().is_empty() {
                    findings.push(Finding {
                        line,
                        message: "a link has no destination".to_string(),
                    });
                } else if let Some(target) = dest_url.strip_prefix('#') {
                    if !anchors.contains(target) {
                        findings.push(Finding {
                            line,
                            message: format!(
                                "link to #{target}, but no section of this manual has that anchor"
                            ),
                        });
                    }
                } else if dest_url.starts_with("/m/") {
                    manual_links.push((line, dest_url.to_string()));
                } else if dest_url.starts_with('/') && !dest_url.starts_with("//") {
                    // Another page of this site (a code's page, support): pages keep it.
                } else if !dest_url.contains(':') {
                    // Not a scheme (https:, mailto:, tel:): a relative path, which does not resolve
                    // from a manual's page.
                    findings.push(Finding {
                        line,
                        message: format!(
                            "link to {dest_url}: link another manual as /m/ID#anchor, or give a full https:// address"
                        ),
                    });
                } else if !["https:", "http:", "mailto:", "tel:"]
                    .iter()
                    .any(|scheme| dest_url.trim().to_ascii_lowercase().starts_with(scheme))
                {
                    // Pages keep only these (the server's `markdown_to_html`); say so before publishing.
                    findings.push(Finding {
                        line,
                        message: format!(
                            "link to {dest_url}: pages keep only https://, http://, mailto: and tel: links, so this one would show as plain text"
                        ),
                    });
                }
            }
            Event::Start(Tag::Image { dest_url, .. }) => {
                image = Some((line_of(range.start), dest_url.to_string(), String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, alt)) = image.as_mut() {
                    alt.push_str(&t);
                }
            }
            Event::End(TagEnd::Image) => {
                if let Some((line, dest, alt)) = image.take() {
                    if alt.trim().is_empty() {
                        findings.push(Finding {
                            line,
                            message: format!(
                                "image {dest} has no alt text: write what it shows between the brackets"
                            ),
                        });
                    } else {
                        // The server serves no images for manuals (and drops those from other
                        // sites, which would learn who reads): the page would show the alt text.
                        findings.push(Finding {
                            line,
                            message: format!(
                                "image {dest}: manual pages show no images, so readers would see only \"{}\"; put what it shows into the text",
                                alt.trim()
                            ),
                        });
                    }
                }
            }
            // Pages show raw HTML as text, never as markup (a page must not run what was pasted).
            Event::Html(html) | Event::InlineHtml(html) => {
                let line = line_of(range.start);
                // Said once per run of lines (a pasted table is one finding, not one per line).
                let new_run = last_html_line.is_none_or(|last| line > last + 1);
                last_html_line = Some(line);
                if new_run {
                    let shown: String = html.trim().chars().take(40).collect();
                    findings.push(Finding {
                        line,
                        message: format!(
                            "HTML {shown} would show on pages as typed, not as formatting: write it as plain text or Markdown"
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    (findings, manual_links)
}

/// What is wrong with a reference to a numbered section or its steps, if anything.
fn reference_problem(reference: &Reference, numbered: &HashMap<String, u32>) -> Option<String> {
    let section = &reference.section;
    let Some(&last) = numbered.get(section) else {
        return Some(format!(
            "the text refers to section {section}, but no heading is numbered {section}"
        ));
    };
    let beyond = reference
        .steps
        .iter()
        .copied()
        .filter(|&s| s == 0 || s > last)
        .max()?;
    Some(if last == 0 {
        format!(
            "the text refers to step {beyond} of section {section}, which has no numbered steps"
        )
    } else {
        format!("the text refers to step {beyond} of section {section}, which has {last} steps")
    })
}

/// A parse failure ("line 3: broken front matter: ...") as a finding at its line.
/// A parse error as a finding: its leading `line N: ` becomes the finding's line (the message
/// would otherwise say the line twice wherever findings are shown with their lines).
fn finding_from_reason(reason: &str) -> Finding {
    let parsed = reason.strip_prefix("line ").and_then(|rest| {
        let (n, message) = rest.split_once(": ")?;
        Some((n.parse().ok()?, message))
    });
    match parsed {
        Some((line, message)) => Finding {
            line,
            message: message.to_string(),
        },
        None => Finding {
            line: 0,
            message: reason.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> BTreeSet<String> {
        ["VP-300".to_string(), "RSC-37".to_string()]
            .into_iter()
            .collect()
    }

    fn check(text: &str) -> Checked {
        check_manual(Path::new("m.md"), text.as_bytes(), &models())
    }

    #[test]
    fn a_replacement_character_is_a_finding_on_its_line() {
        let checked = check(
            "+++\nid = \"pump\"\ntitle = \"Pump\"\naudience = [\"technician\"]\nrevision = \"1\"\n+++\n# Battery\n\nMedicaci\u{FFFD}n diaria.\n",
        );
        let found: Vec<_> = checked
            .findings
            .iter()
            .filter(|f| f.message.contains("not saved as UTF-8"))
            .map(|f| f.line)
            .collect();
        assert_eq!(found, vec![9], "{:?}", checked.findings);
    }

    #[test]
    fn an_explicit_id_an_earlier_heading_already_took_is_a_finding() {
        let checked = check(
            "+++\nid = \"pump\"\ntitle = \"Pump\"\naudience = [\"technician\"]\nrevision = \"1\"\n+++\n# Battery\n\nText.\n\n## Swap {#battery}\n\nMore.\n",
        );
        let found: Vec<_> = checked
            .findings
            .iter()
            .filter(|f| f.message.contains("{#battery}"))
            .collect();
        assert_eq!(found.len(), 1, "{:?}", checked.findings);
        assert_eq!(found[0].line, 11);
        assert!(found[0].message.contains("#battery-1"), "{:?}", found);
        assert!(
            check(CLEAN).findings.is_empty(),
            "{:?}",
            check(CLEAN).findings
        );
    }

    /// A long manual of many short, numbered sections (where each line number used to cost a
    /// count of every newline before it): findings at its end still name their own lines.
    #[test]
    fn findings_at_the_end_of_a_manual_of_thousands_of_sections_name_their_lines() {
        let mut text = String::from(
            "+++\nid = \"long\"\ntitle = \"Long\"\naudience = [\"technician\"]\nrevision = \"1\"\n+++\n# Battery\n\nText.\n\n",
        );
        for n in 1..=3000 {
            text.push_str(&format!("# {n} Part {n}\n\nStep text.\n\n"));
        }
        let before = text.lines().count();
        text.push_str("# Swap {#battery}\n\nSee section 4000 and ![](x.png).\n");
        let checked = check(&text);
        let line_of = |needle: &str| {
            checked
                .findings
                .iter()
                .find(|f| f.message.contains(needle))
                .unwrap_or_else(|| panic!("{needle} in {:?}", checked.findings))
                .line
        };
        assert_eq!(line_of("{#battery}"), before + 1);
        assert_eq!(line_of("4000"), before + 3);
        assert_eq!(line_of("alt text"), before + 3);
    }

    const CLEAN: &str = "+++\nid = \"pump\"\ntitle = \"Pump\"\nmodels = [\"VP-300\"]\naudience = [\"technician\"]\nrevision = \"1\"\n+++\n# Faults {#faults}\n\nSee [the battery](#battery).\n\n# Battery {#battery}\n\nThe battery door opens with a coin.\n\n1. Open the door.\n";

    #[test]
    fn a_clean_manual_has_no_findings_and_shows_its_chunks() {
        let checked = check(CLEAN);
        assert!(checked.is_clean(), "{:?}", checked.findings);
        assert_eq!(checked.sections.len(), 2);
        assert!(checked.chunks.iter().any(|c| c.anchor == "battery"));
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let text = "+++\nid = \"pump\"\ntitle = \"Pump\"\nmodels = [\"VP-3000\"]\nrevision = \"1\"\n+++\n# Faults {#faults}\n\nSee [the battery](#batery) and [nothing](). [Run](javascript:alert(1)).\n\n# Again {#faults}\n\n![](door.png)\n";
        let checked = check(text);
        let lines: Vec<(usize, &str)> = checked
            .findings
            .iter()
            .map(|f| (f.line, f.message.as_str()))
            .collect();
        let has =
            |line: usize, words: &str| lines.iter().any(|(l, m)| *l == line && m.contains(words));
        assert!(has(4, "\"VP-3000\" is not the model"), "{lines:?}");
        assert!(has(7, "no audience"), "{lines:?}");
        assert!(has(9, "#batery"), "{lines:?}");
        assert!(has(9, "no destination"), "{lines:?}");
        assert!(
            has(9, "javascript:alert(1): pages keep only https://"),
            "{lines:?}"
        );
        assert!(has(11, "{#faults} is already used on line 7"), "{lines:?}");
        assert!(has(13, "no alt text"), "{lines:?}");
        assert!(!checked.is_clean());
    }

    #[test]
    fn references_to_sections_the_manual_lacks_are_findings_at_their_lines() {
        let numbered = "+++\nid = \"pump\"\ntitle = \"Pump\"\naudience = [\"technician\"]\nrevision = \"1\"\n+++\n# 1 Safety\n\nTest as in section 2.1 and sections 2.2 and 3.\n\n# 2 Repair\n\n## 2.1 Battery\n\n1. Open.\n2. Swap as in section 1, step 1.\n3. Close as in section 2.1, steps 1 to 4.\n\n```\nsection 9 in a code block is not a reference\n```\n";
        let checked = check(numbered);
        assert_eq!(
            checked.findings,
            [
                Finding {
                    line: 9,
                    message: "the text refers to section 2.2, but no heading is numbered 2.2"
                        .to_string()
                },
                Finding {
                    line: 9,
                    message: "the text refers to section 3, but no heading is numbered 3"
                        .to_string()
                },
                Finding {
                    line: 16,
                    message: "the text refers to step 1 of section 1, which has no numbered steps"
                        .to_string()
                },
                Finding {
                    line: 17,
                    message: "the text refers to step 4 of section 2.1, which has 3 steps"
                        .to_string()
                },
            ]
        );
        // Without numbered headings, "section 3" may mean another document's: not checked.
        let unnumbered = CLEAN.replace("1. Open the door.", "1. Open the door as in section 3.");
        assert!(
            check(&unnumbered).is_clean(),
            "{:?}",
            check(&unnumbered).findings
        );
    }

    #[test]
    fn misspelt_audiences_are_findings_at_their_lines() {
        let text = "+++\nid = \"pump\"\ntitle = \"Pump\"\naudience = [\"technicain\"]\nrevision = \"1\"\n+++\n# Faults\n\nText.\n\n# Cleaning {audience=operator,clinican}\n\nWipe.\n";
        let checked = check(text);
        let lines: Vec<(usize, &str)> = checked
            .findings
            .iter()
            .map(|f| (f.line, f.message.as_str()))
            .collect();
        assert!(
            lines.contains(&(4, "audience \"technicain\" is not one readers can hold (known: operator, technician, biomed, clinician, patient, public), so nobody could read what it covers")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == 11 && m.contains("\"clinican\"") && m.contains("this section")),
            "{lines:?}"
        );
        // Said once for the front matter, not again for the section that inherits it.
        assert_eq!(
            lines
                .iter()
                .filter(|(_, m)| m.contains("technicain"))
                .count(),
            1,
            "{lines:?}"
        );
        assert!(!checked.is_clean());
    }

    #[test]
    fn quality_checks_must_name_sections_the_manual_has() {
        let text = CLEAN.replacen(
            "revision = \"1\"\n",
            "revision = \"1\"\ncheck_tolerance = 2\n[[check]]\nquestion = \"battery?\"\nanchor = \"battery\"\n[[check]]\nquestion = \"fuses?\"\nanchor = \"fuses\"\n",
            1,
        );
        let checked = check(&text);
        let messages: Vec<&str> = checked
            .findings
            .iter()
            .map(|f| f.message.as_str())
            .collect();
        assert_eq!(checked.findings.len(), 1, "{messages:?}");
        assert!(messages[0].contains("#fuses"), "{messages:?}");
        assert_eq!(checked.findings[0].line, 13, "{messages:?}");
        let lenient = text.replace("check_tolerance = 2", "check_tolerance = 3");
        assert!(check(&lenient)
            .findings
            .iter()
            .any(|f| f.message.contains("could never stop a publish")));
    }

    #[test]
    fn links_to_other_manuals_are_checked_against_the_corpus() {
        let text = format!(
            "{CLEAN}\nSee [the oil](/m/rsc-service#oil-change), [nothing](/m/rsc-service#nowhere), [gone](/m/ghost) and [a file](other.md) and [web](https://example.org).\n"
        );
        let checked = check(&text);
        assert_eq!(checked.manual_links.len(), 3, "{:?}", checked.manual_links);
        let messages: Vec<&str> = checked
            .findings
            .iter()
            .map(|f| f.message.as_str())
            .collect();
        assert!(
            messages.iter().any(|m| m.contains("other.md")),
            "{messages:?}"
        );
        let has_anchor =
            |id: &str, anchor: &str| (id == "rsc-service").then(|| anchor == "oil-change");
        let found = links_findings(&checked.manual_links, &has_anchor);
        let found: Vec<&str> = found.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("no section #nowhere"));
        assert!(found[1].contains("no manual \"ghost\""));
    }

    #[test]
    fn what_pages_cannot_show_is_said_and_site_links_are_kept() {
        let text = format!(
            "{CLEAN}\n![The E-204 screen](e204.png)\n\nSpO<sub>2</sub> stays above 92%.\n\n<table>\n<tr><td>a</td></tr>\n</table>\n\nScan [the pump's code](/c/tJ6bpUpB) or ask [support](/support).\n\n`<b>` in code is fine.\n"
        );
        let checked = check(&text);
        let messages: Vec<&str> = checked
            .findings
            .iter()
            .map(|f| f.message.as_str())
            .collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("image e204.png") && m.contains("\"The E-204 screen\"")),
            "{messages:?}"
        );
        let html: Vec<&&str> = messages.iter().filter(|m| m.starts_with("HTML ")).collect();
        assert_eq!(
            html.len(),
            2,
            "one for <sub>, one for the table: {messages:?}"
        );
        assert!(html[0].contains("<sub>"), "{html:?}");
        assert_eq!(messages.len(), 3, "site links are kept: {messages:?}");
        // An image without alt text is that finding only.
        let bare = check(&format!("{CLEAN}\n![](door.png)\n"));
        assert_eq!(bare.findings.len(), 1, "{:?}", bare.findings);
        assert!(bare.findings[0].message.contains("no alt text"));
    }

    #[test]
    fn broken_front_matter_is_one_finding_at_its_line_and_nothing_else() {
        let checked = check("+++\nid = \"pump\"\ntitle = \n+++\n# A\n");
        assert!(checked.manual.is_none());
        assert_eq!(checked.findings.len(), 1);
        assert_eq!(checked.findings[0].line, 3, "{:?}", checked.findings);
        assert!(
            checked.findings[0]
                .message
                .starts_with("broken front matter"),
            "the line is said once, as the finding's: {:?}",
            checked.findings
        );
        let checked = check("# no front matter\n");
        assert_eq!(checked.findings[0].line, 1);
        let checked = check_manual(
            Path::new("m.md"),
            &[0x89, b'P', b'N', b'G', 0x00],
            &models(),
        );
        assert!(checked.findings[0].message.contains("binary"));
        let checked = check_manual(Path::new("m.md"), &[0xff, 0xfe, b'#', 0x00], &models());
        assert!(checked.findings[0].message.contains("UTF-16"));
    }
}
