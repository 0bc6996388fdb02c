//! Which language to serve: `?lang=` first, then the Accept-Language header (q-values honoured), limited
//! to the languages there is content in, else English.

pub const DEFAULT_LANGUAGE: &str = "en";

/// Primary subtags in the order the client prefers them (q=0 removed, ties keep header order).
pub fn preferences(accept_language: &str) -> Vec<String> {
    let mut ranked: Vec<(f32, usize, String)> = Vec::new();
    for (i, part) in accept_language.split(',').enumerate().take(32) {
        let mut pieces = part.split(';');
        let tag = pieces.next().unwrap_or("").trim();
        let q = pieces
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
        if q <= 0.0
            || !(2..=3).contains(&primary.len())
            || !primary.chars().all(|c| c.is_ascii_alphabetic())
        {
            continue;
        }
        ranked.push((q, i, primary));
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<String> = Vec::new();
    for (_, _, tag) in ranked {
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// Picks the served language among `available` (primary subtags).
pub fn negotiate(
    query_lang: Option<&str>,
    accept_language: Option<&str>,
    available: &[String],
) -> String {
    negotiate_among(query_lang, accept_language, |lang| {
        available.iter().any(|a| a == lang)
    })
}

/// `negotiate` with the available languages as a test, so a caller need not build their list.
pub fn negotiate_among(
    query_lang: Option<&str>,
    accept_language: Option<&str>,
    is_available: impl Fn(&str) -> bool,
) -> String {
    let wanted = query_lang
        .map(|l| vec![l.split('-').next().unwrap_or("").to_ascii_lowercase()])
        .into_iter()
        .flatten()
        .chain(accept_language.map(preferences).unwrap_or_default());
    for lang in wanted {
        if is_available(&lang) {
            return lang;
        }
    }
    DEFAULT_LANGUAGE.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn q_values_order_the_preferences() {
        assert_eq!(
            preferences("fr;q=0.5, es-MX, en;q=0.8, de;q=0"),
            langs(&["es", "en", "fr"])
        );
        assert_eq!(preferences(""), Vec::<String>::new());
        assert_eq!(preferences("*;q=0.1, ,;;q=, x-1"), Vec::<String>::new());
    }

    #[test]
    fn query_parameter_wins_then_header_then_english() {
        let available = langs(&["en", "es"]);
        assert_eq!(negotiate(Some("es"), Some("en"), &available), "es");
        assert_eq!(negotiate(None, Some("es-ES,es;q=0.9"), &available), "es");
        assert_eq!(
            negotiate(Some("zz"), Some("de, es;q=0.5"), &available),
            "es"
        );
        assert_eq!(negotiate(None, Some("de"), &available), "en");
        assert_eq!(negotiate(None, None, &available), "en");
    }
}
