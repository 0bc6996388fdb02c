//! Our question sets over the bundled manuals name sections by manual id and anchor. An edit that
//! renames a heading changes its anchor, and a question naming the old one would count as a miss
//! forever without saying why: every question must name a section the manuals have.

use std::collections::BTreeSet;
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
    let sections: BTreeSet<(String, String)> = manuals
        .iter()
        .flat_map(|m| {
            chunk_manual(m, ChunkingConfig::default())
                .sections
                .into_iter()
                .map(move |s| (m.meta.id.clone(), s.anchor))
        })
        .collect();
    for file in [
        "manual-questions.jsonl",
        "manual-questions-written.jsonl",
        "leaflet-crosslang.jsonl",
    ] {
        let path = repo().join("evals/data").join(file);
        let questions = load_questions(&path).unwrap();
        assert!(!questions.is_empty(), "{file} is empty");
        let mut ids = BTreeSet::new();
        for q in &questions {
            assert!(ids.insert(q.id.clone()), "{file}: id {} twice", q.id);
            assert!(
                sections.contains(&(q.manual.clone(), q.anchor.clone())),
                "{file}: {} names {}#{}, which the bundled manuals do not have",
                q.id,
                q.manual,
                q.anchor
            );
        }
    }
}
