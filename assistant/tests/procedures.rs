//! A procedure longer than a chunk comes back whole (over a real index, the real MiniLM embedder):
//! the chunker packs its steps into several chunks of one section, and an answer that took only the
//! best step's chunk started at step 5 of a lockout.

mod common;

use common::{embedder, index_of};
use scanaid_assistant::extract;
use scanaid_indexer::{Mode, SearchRequest};

/// Twelve long steps of one lockout, then a second, unrelated procedure in the same section that
/// numbers from 1 again, then another section.
fn manual() -> String {
    manual_written(|i| format!("{}.", i + 1), " ")
}

/// The same manual with each lockout step's marker made by `marker` (from the step's index), and
/// `wrap` between the step's two halves (a space, or a line break and indentation).
fn manual_written(marker: impl Fn(usize) -> String, wrap: &str) -> String {
    let things = [
        "the wash pump",
        "the booster heater",
        "the rinse pump",
        "the drain valve",
        "the door switch",
        "the main isolator",
        "the water inlet",
        "the detergent pump",
        "the control board",
        "the terminal block",
        "the tank heater",
        "the panels",
    ];
    let mut text = String::from(
        "+++\nid = \"hood-dw\"\ntitle = \"Hood dishwasher service\"\naudience = [\"technician\"]\nrevision = \"1\"\n+++\n# Lockout before service\n\n",
    );
    for (i, thing) in things.iter().enumerate() {
        text.push_str(&format!(
            "{} Isolate {thing} following the site lockout rules, check that {thing} cannot start,{wrap}and record {thing} on the lockout card with the time before going on.\n",
            marker(i)
        ));
    }
    text.push_str("\nAfter the work, restore the machine:\n\n");
    for (i, thing) in [
        "Refit the guards.",
        "Remove your padlock.",
        "Run a test cycle.",
    ]
    .iter()
    .enumerate()
    {
        text.push_str(&format!("{}. {thing}\n", i + 1));
    }
    text.push_str("\n# Cleaning\n\nWipe the hood with a damp cloth every day.\n");
    text
}

/// The extract for `question` from its top 5 hybrid hits.
fn answer_to(
    index: &scanaid_indexer::SearchIndex,
    embedder: &dyn scanaid_models::Embedder,
    question: &str,
) -> scanaid_assistant::Extract {
    let hits = index
        .search(
            &SearchRequest::new(question, Mode::Hybrid, 5),
            Some(embedder),
        )
        .unwrap();
    extract(index, question, &hits)
}

#[test]
fn a_procedure_split_over_chunks_comes_back_whole_and_in_order() {
    let embedder = embedder();
    let (index, _dir) = index_of(&[("hood.md", &manual())], embedder.as_ref());
    let lockout_chunks = index
        .chunks()
        .iter()
        .filter(|c| c.anchor == "lockout-before-service")
        .count();
    assert!(
        lockout_chunks >= 3,
        "the procedure spans chunks: {lockout_chunks}"
    );

    // Words only step 9 has: the best piece is in a chunk that starts mid-procedure.
    let answer = answer_to(
        &index,
        embedder.as_ref(),
        "how do I isolate the control board",
    );
    let numbers: Vec<u32> = answer
        .sentences
        .iter()
        .map(|s| s.text.split('.').next().unwrap().parse().unwrap_or(0))
        .collect();
    assert_eq!(
        numbers,
        (1..=12).collect::<Vec<_>>(),
        "{:#?}",
        answer.sentences
    );
    assert!(
        answer.sentences.iter().all(|s| s.text.contains("Isolate")),
        "the restore steps are another procedure"
    );
    // Every step is cited to the chunk it is copied from.
    for s in &answer.sentences {
        let cited = &answer.citations[s.citation - 1];
        assert!(
            cited.ords.contains(&s.ord) && index.chunk(s.ord).text.contains(&s.text),
            "{s:?} not in its cited chunk"
        );
        assert_eq!(cited.anchor, "lockout-before-service");
    }
    // One section, one number: the chunks the procedure runs over are cited together.
    assert_eq!(answer.citations.len(), 1, "{:#?}", answer.citations);
    assert!(
        answer.citations[0].ords.len() >= 2,
        "{:#?}",
        answer.citations
    );
    assert!(answer.sentences.iter().all(|s| s.citation == 1));
}

/// Written as many manuals are: every step numbered `1.` (markdown numbers them) and hard-wrapped
/// over two lines. The answer is still the whole lockout, each step whole.
#[test]
fn a_wrapped_procedure_numbered_with_ones_comes_back_whole() {
    let embedder = embedder();
    let text = manual_written(|_| "1.".to_string(), "\n   ");
    let (index, _dir) = index_of(&[("hood.md", &text)], embedder.as_ref());
    let answer = answer_to(
        &index,
        embedder.as_ref(),
        "how do I isolate the control board",
    );
    assert_eq!(answer.sentences.len(), 12, "{:#?}", answer.sentences);
    for s in &answer.sentences {
        assert!(
            s.text.starts_with("1. Isolate") && s.text.ends_with("before going on."),
            "a step cut at its line break: {s:?}"
        );
        assert!(index.chunk(s.ord).text.contains(&s.text));
    }
    assert!(answer.sentences[0].text.contains("the wash pump"));
    assert!(answer.sentences[11].text.contains("the panels"));
}
