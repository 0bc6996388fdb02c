//! Extractive answers over a real index (the real MiniLM embedder): a sentence that leads into a list
//! brings the list, so an answer never ends on "...when any of these happen:".

mod common;

use common::{embedder, index_of};
use scanaid_assistant::extract;
use scanaid_indexer::{Mode, SearchRequest};

const PLAN: &str = r#"+++
id = "asthma-plan"
title = "Asthma action plan"
audience = ["patient"]
revision = "1"
+++
# Red zone

Your child is in the red zone when any of these happen:
- Lips or fingernails look blue or gray.
- Breathing is so hard that walking or talking is difficult.
- The reliever inhaler does not help within 15 minutes.

Call 911 right away.

# Green zone

Give the preventer inhaler every morning and evening, even on good days.
"#;

#[test]
fn a_sentence_leading_into_a_list_brings_the_list() {
    let embedder = embedder();
    let (index, _dir) = index_of(&[("plan.md", PLAN)], embedder.as_ref());
    let question = "when is my child in the red zone";
    let hits = index
        .search(
            &SearchRequest::new(question, Mode::Hybrid, 5),
            Some(embedder.as_ref()),
        )
        .unwrap();
    let answer: Vec<String> = extract(&index, question, &hits)
        .sentences
        .into_iter()
        .map(|s| s.text)
        .collect();
    let lead_in = "Your child is in the red zone when any of these happen:";
    let at = answer
        .iter()
        .position(|s| s == lead_in)
        .unwrap_or_else(|| panic!("{answer:?}"));
    assert_eq!(
        answer[at + 1..at + 4],
        [
            "- Lips or fingernails look blue or gray.",
            "- Breathing is so hard that walking or talking is difficult.",
            "- The reliever inhaler does not help within 15 minutes.",
        ],
        "{answer:?}"
    );
}
