//! Numbered cross-references in a manual's text ("see section 11.2", "sections 4.3 and 4.4", "as in
//! section 11.5, steps 1 to 3"): which section numbers and steps the text names, which numbers its
//! headings carry and how many steps each numbered section has, so the checker can say when a
//! reference points at a section or step the manual does not have (renumbered, removed, or never
//! written).

/// Words that introduce section numbers, lowercased: English, Spanish and French.
const SECTION_WORDS: &[&str] = &["section", "sections", "sección", "secciones", "seccion"];

/// Words that introduce step numbers after a section number ("section 11.5, steps 1 to 3").
const STEP_WORDS: &[&str] = &["step", "steps", "paso", "pasos", "étape", "étapes"];

/// Words that continue a list of numbers ("11.1, 11.2 and 11.9", "3 to 5"); the numbers after them
/// are references too.
const LIST_WORDS: &[&str] = &["and", "or", "to", "y", "o", "a", "et", "ou", "&"];

/// The number a heading starts with: "11.2 Replacing the battery" -> "11.2", "3. Safety" -> "3";
/// `None` for an unnumbered heading.
pub fn heading_number(heading: &str) -> Option<&str> {
    let end = heading
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(heading.len());
    let number = heading[..end].trim_end_matches('.');
    let followed_by_words = heading[end..].starts_with(char::is_whitespace);
    (number.starts_with(|c: char| c.is_ascii_digit()) && followed_by_words).then_some(number)
}

/// One section the text refers to, with the steps of it the text names (often none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub section: String,
    pub steps: Vec<u32>,
}

/// Section numbers `text` refers to, in order: every number after "section(s)" and the numbers
/// listed after it ("Sections 11.1, 11.2 and 11.9" gives all three); steps named right after a
/// section number belong to it ("section 11.5, steps 1 to 3" gives 11.5 with steps 1 and 3).
pub fn section_references(text: &str) -> Vec<Reference> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let token = |i: usize| words[i].trim_end_matches([',', ';', ':', ')', ']', '.']);
    let is_list_word = |t: &str| LIST_WORDS.contains(&t.to_lowercase().as_str());
    let mut out: Vec<Reference> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i].trim_start_matches(['(', '[']).to_lowercase();
        i += 1;
        if !SECTION_WORDS.contains(&word.as_str()) {
            continue;
        }
        let mut listed = false;
        while i < words.len() {
            if let Some(number) = as_section_number(token(i)) {
                // "11.1," continues the list; in "11.5, steps" the step numbers follow.
                out.push(Reference {
                    section: number.to_string(),
                    steps: Vec::new(),
                });
                listed = true;
                i += 1;
            } else if listed && STEP_WORDS.contains(&token(i).to_lowercase().as_str()) {
                i += 1;
                while i < words.len() {
                    if let Ok(step) = token(i).parse::<u32>() {
                        if let Some(last) = out.last_mut() {
                            last.steps.push(step);
                        }
                    } else if !is_list_word(token(i)) {
                        break;
                    }
                    i += 1;
                }
                break;
            } else if listed && is_list_word(token(i)) {
                i += 1;
            } else {
                break;
            }
        }
    }
    out
}

/// The number of the last top-level numbered step ("12. Record the date") in `lines`, the lines of
/// one section; 0 when it has none.
pub fn last_step(lines: &[&str]) -> u32 {
    lines
        .iter()
        .filter_map(|line| {
            let (number, _) = line.split_once(". ")?;
            number.parse::<u32>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// "11.2" or "4": digits separated by single dots.
fn as_section_number(token: &str) -> Option<&str> {
    let valid = !token.is_empty()
        && token
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
    valid.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_numbers() {
        assert_eq!(heading_number("11.2 Replacing the battery"), Some("11.2"));
        assert_eq!(heading_number("3. Safety"), Some("3"));
        assert_eq!(heading_number("Safety"), None);
        assert_eq!(heading_number("2026"), None);
        assert_eq!(heading_number("E-204 Occlusion"), None);
    }

    fn sections(text: &str) -> Vec<String> {
        section_references(text)
            .into_iter()
            .map(|r| r.section)
            .collect()
    }

    fn steps(text: &str) -> Vec<(String, Vec<u32>)> {
        section_references(text)
            .into_iter()
            .map(|r| (r.section, r.steps))
            .collect()
    }

    #[test]
    fn references_and_lists() {
        assert_eq!(
            sections("run the test in section 11.2, and record it"),
            ["11.2"]
        );
        assert_eq!(
            sections("| Biomed | Sections 11.1, 11.2 and 11.9 |"),
            ["11.1", "11.2", "11.9"]
        );
        assert_eq!(
            sections("Replace battery PN 300-4120 (section 11.2)"),
            ["11.2"]
        );
        assert_eq!(sections("see sections 3 to 5."), ["3", "5"]);
        assert_eq!(sections("véase la sección 4.1 y 4.2"), ["4.1", "4.2"]);
        assert!(sections("this section explains the pump").is_empty());
        assert!(sections("section A of the form").is_empty());
    }

    #[test]
    fn steps_belong_to_the_section_just_named() {
        assert_eq!(
            steps("Open the housing as in section 11.5, steps 1 to 3."),
            [("11.5".to_string(), vec![1, 3])]
        );
        assert_eq!(
            steps("(section 11.2, steps 2 to 4). Then see section 9.2, step 10 and 13, and refit"),
            [
                ("11.2".to_string(), vec![2, 4]),
                ("9.2".to_string(), vec![10, 13])
            ]
        );
        assert_eq!(
            steps("refit them as in section 11.5, step 9, and connect AC power"),
            [("11.5".to_string(), vec![9])]
        );
        assert_eq!(
            steps("como en la sección 4.1, pasos 2 a 3"),
            [("4.1".to_string(), vec![2, 3])]
        );
        assert_eq!(steps("section 3 steps"), [("3".to_string(), vec![])]);
    }

    #[test]
    fn last_steps() {
        assert_eq!(
            last_step(&[
                "Tools: none.",
                "",
                "1. Drain.",
                "2. Open.",
                "   3. nested",
                "10. Close."
            ]),
            10
        );
        assert_eq!(last_step(&["No steps here. At all."]), 0);
    }
}
