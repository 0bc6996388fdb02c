//! Numbered cross-references in a manual's text ("see section 11.2", "sections 4.3 and 4.4"): which
//! section numbers the text names, and which numbers its headings carry, so the checker can say when
//! a reference points at a section the manual does not have (renumbered, removed, or never written).

/// Words that introduce section numbers, lowercased: English, Spanish and French.
const SECTION_WORDS: &[&str] = &["section", "sections", "sección", "secciones", "seccion"];

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

/// Section numbers `text` refers to, in order: every number after "section(s)" and the numbers
/// listed after it ("Sections 11.1, 11.2 and 11.9" gives all three; "section 11.5, steps 1 to 3"
/// gives 11.5 only, because "steps" ends the list).
pub fn section_references(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i].trim_start_matches(['(', '[']).to_lowercase();
        i += 1;
        if !SECTION_WORDS.contains(&word.as_str()) {
            continue;
        }
        let mut listed = false;
        while i < words.len() {
            let token = words[i].trim_end_matches([',', ';', ':', ')', ']', '.']);
            if let Some(number) = as_section_number(token) {
                // "11.1," continues the list; in "11.5, steps" the next word ends it.
                out.push(number.to_string());
                listed = true;
                i += 1;
            } else if listed && LIST_WORDS.contains(&token.to_lowercase().as_str()) {
                i += 1;
            } else {
                break;
            }
        }
    }
    out
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

    #[test]
    fn references_and_lists() {
        assert_eq!(
            section_references("run the test in section 11.2, and record it"),
            ["11.2"]
        );
        assert_eq!(
            section_references("| Biomed | Sections 11.1, 11.2 and 11.9 |"),
            ["11.1", "11.2", "11.9"]
        );
        assert_eq!(
            section_references("Open the housing as in section 11.5, steps 1 to 3."),
            ["11.5"]
        );
        assert_eq!(
            section_references("Replace battery PN 300-4120 (section 11.2)"),
            ["11.2"]
        );
        assert_eq!(section_references("see sections 3 to 5."), ["3", "5"]);
        assert_eq!(
            section_references("véase la sección 4.1 y 4.2"),
            ["4.1", "4.2"]
        );
        assert!(section_references("this section explains the pump").is_empty());
        assert!(section_references("section A of the form").is_empty());
    }
}
