//! Our question sets over the bundled manuals name sections by manual id and anchor. An edit that
//! renames a heading changes its anchor, and a question naming the old one would count as a miss
//! forever without saying why: every question must name a section the manuals have. A question
//! that says who asks it must name a section written for that audience (`eval answerability
//! --as-served` asks it as them, and a section hidden from them can never be found). That is
//! stricter than the server, whose roles also read the audiences below theirs (biomed reads
//! technician sections): a label names the section's own reader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use scanaid_evals::manual_questions::load_questions;
use scanaid_indexer::chunking::{chunk_manual, ChunkingConfig};
use scanaid_indexer::manual::load_manuals;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_question_names_a_section_the_bundled_manuals_have() {
    let (manuals, problems) = load_manuals(&repo().join("manuals")).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // Each section with the audiences that may read it (empty: everyone).
    let sections: BTreeMap<(String, String), Vec<String>> = manuals
        .iter()
        .flat_map(|m| {
            chunk_manual(m, ChunkingConfig::default())
                .sections
                .into_iter()
                .map(move |s| ((m.meta.id.clone(), s.anchor), s.audiences))
        })
        .collect();
    for file in [
        "manual-questions.jsonl",
        "manual-questions-es.jsonl",
        "manual-questions-written.jsonl",
        "leaflet-crosslang.jsonl",
    ] {
        let path = repo().join("evals/data").join(file);
        let questions = load_questions(&path).unwrap();
        assert!(!questions.is_empty(), "{file} is empty");
        let mut ids = BTreeSet::new();
        for q in &questions {
            assert!(ids.insert(q.id.clone()), "{file}: id {} twice", q.id);
            let Some(readers) = sections.get(&(q.manual.clone(), q.anchor.clone())) else {
                panic!(
                    "{file}: {} names {}#{}, which the bundled manuals do not have",
                    q.id, q.manual, q.anchor
                );
            };
            if let Some(audience) = &q.audience {
                assert!(
                    readers.is_empty() || readers.contains(audience),
                    "{file}: {} is asked by {audience}, who cannot read {}#{} (readers: {})",
                    q.id,
                    q.manual,
                    q.anchor,
                    readers.join(", ")
                );
            }
        }
    }
}
