//! Identifiers in text: part numbers, error codes and model numbers such as `E-204`, `PN 4471-B` or
//! `AX-200`. They are matched exactly (after normalising case and separators), not stemmed, so that
//! `e204`, `E-204` and `E 204` find the same row of a fault table.

/// Identifier-like tokens of `text`, normalised: upper case, separators (`-`, `.`, `/`, `_`) removed.
/// A token counts when it mixes letters and digits, or is a run of 3+ digits, or joins parts by a
/// separator with a digit somewhere (`4471-B`). A letter prefix of one or two letters followed by a
/// space and digits (`E 204`) is joined as the writer meant it.
pub fn identifiers(text: &str) -> Vec<String> {
    let raw: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '/' | '_')))
        .map(|t| t.trim_matches(|c: char| matches!(c, '-' | '.' | '/' | '_')))
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let token = raw[i];
        if is_identifier(token) {
            out.push(normalise(token));
        } else if token.len() <= 2
            && token
                .chars()
                .all(|c| c.is_ascii_alphabetic() && c.is_ascii_uppercase())
            && raw.get(i + 1).is_some_and(|next| {
                next.chars().next().is_some_and(|c| c.is_ascii_digit()) && is_identifier(next)
            })
        {
            // "E 204" and "PN 4471-B": keep both the joined form and the bare number.
            out.push(normalise(&format!("{token}{}", raw[i + 1])));
        }
        i += 1;
    }
    out
}

fn is_identifier(token: &str) -> bool {
    let digits = token.chars().filter(|c| c.is_ascii_digit()).count();
    let letters = token.chars().filter(|c| c.is_alphabetic()).count();
    let separators = token
        .chars()
        .filter(|c| matches!(c, '-' | '.' | '/' | '_'))
        .count();
    if digits == 0 || token.chars().count() > 32 {
        return false;
    }
    // Decimal numbers ("2.5", "0.75") are quantities, not identifiers.
    if letters == 0 && token.contains('.') && !token.contains('-') {
        return false;
    }
    (letters > 0) || digits >= 3 || separators > 0
}

/// Upper case, separators removed: the exact form stored in and looked up from the identifier field.
pub fn normalise(token: &str) -> String {
    token
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(|c| c.to_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &[&str]) {
        assert_eq!(identifiers(text), expect, "for {text:?}");
    }

    #[test]
    fn finds_codes_part_numbers_and_models() {
        check("Error E-204 means occlusion", &["E204"]);
        check("error e204", &["E204"]);
        check("Code E 204 appears", &["E204", "204"]);
        check("Order PN 4471-B today", &["PN4471B", "4471B"]);
        check("fits the AX-200 and AX-200S.", &["AX200", "AX200S"]);
        check("set 2.5 bar for 10 minutes", &[]);
        check("firmware v3.2.1 on port 8080", &["V321", "8080"]);
        check("plain words only", &[]);
    }
}
